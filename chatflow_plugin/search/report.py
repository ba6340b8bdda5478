"""The search's report: how far to trust the fitted model, what it chose, and whether the choice holds on test.

Writes into ``report/``:

- ``report.md``: the settings and the three shard sets (path, content checksum, split part); the model's
  cross-validated quality (nested leave-one-out: rank correlation and error, per group and for the objective;
  every candidate); the chosen schedule next to the reference and the static mixture; the final
  re-runs on the test split (mean and sd over seeds, paired per-seed differences with 95 % t intervals, the
  constraints checked on test); the ladder's rank correlation; what the numbers can and cannot support;
- ``report.json``: every number of the report;
- ``schedule.png``: p_k(t) of the chosen schedule next to the reference's; ``cv.png``: nested leave-one-out predicted
  against measured objective over the proxy runs; ``ladder.png`` with ``--ladder``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..data.mixture import load_mixture
from ..evaluation.figures import DPI
from ..files import atomic_file, pyplot, save_figure
from .datasets import describe

GOAL_SPEARMAN = 0.8
ROLE_NAMES = {"dataset_dir": "training set", "heldout_dir": "validation set (the search's)",
              "test_dir": "test set (the final re-runs'; never seen by the search)"}


def _f(x, digits: int = 4) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def _interval(d: dict) -> str:
    if d["low"] is None:
        return f"{_f(d['mean'])} (one seed: no interval)"
    return f"{d['mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]"


def _clean(value):
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def plot_schedules(path: Path, chosen: Path, reference: Path, run_samples: int) -> None:
    """p_k(t) over the proxies' run: the reference on the left, the chosen on the right, same axes."""
    plt = pyplot()
    t = np.linspace(0, run_samples, 201)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    for ax, (title, file) in zip(axes, (("reference", reference), ("chosen", chosen))):
        spec = load_mixture(file)
        p = spec.schedule().probabilities(t)
        for k, name in enumerate(spec.group_names):
            ax.plot(t / run_samples, p[:, k], label=name, color=f"C{k}")
        ax.set_title(f"{title}: {spec.name}")
        ax.set_xlabel("fraction of the run (samples)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("p_k(t)")
    axes[1].legend(fontsize=8, loc="best")
    fig.tight_layout()
    save_figure(fig, path, dpi=DPI)


def plot_cv(path: Path, table: list[dict], objective: str) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    measured = [r["objective"] for r in table]
    predicted = [r["loo_objective"] for r in table]
    colors = {"reference": "tab:red", "static": "tab:blue", "design": "tab:gray"}
    for kind, color in colors.items():
        rows = [i for i, r in enumerate(table) if r["kind"] == kind]
        ax.scatter([measured[i] for i in rows], [predicted[i] for i in rows], s=18, color=color, label=kind)
    lo, hi = min(measured + predicted), max(measured + predicted)
    ax.plot([lo, hi], [lo, hi], color="black", lw=0.8)
    ax.set_xlabel(f"measured {objective}")
    ax.set_ylabel("predicted (nested leave-one-out)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=DPI)


def plot_ladder(path: Path, ladder: dict) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    for r in ladder["runs"]:
        ax.scatter(r["proxy_objective"], r["ladder_objective"], color="tab:purple", s=18)
        ax.annotate(r["name"], (r["proxy_objective"], r["ladder_objective"]), fontsize=7)
    ax.set_xlabel("objective at the proxy size")
    ax.set_ylabel("objective at the ladder size")
    ax.set_title(f"Spearman {_f(ladder['spearman'], 2)}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=DPI)


def _parameters_table(results: dict, reference_values: dict | None) -> list[str]:
    chosen = results["choice"]["parameters"]
    lines = ["| parameter | reference | chosen |", "|---|---|---|"]
    for name, value in chosen.items():
        ref = (reference_values or {}).get(name)
        label = f"{name} (fraction of the run)" if name == "T_grow" or name.startswith("knot.") else name
        lines.append(f"| {label} | {_f(ref)} | {_f(value)} |")
    return lines


def markdown(results: dict) -> str:
    s, model, choice = results["search"], results["model"], results["choice"]
    groups = s["groups"]
    q = model["quality"]
    rho = q["objective"]["spearman"]
    lines = [f"# chatflow search: {s['reference']}", "",
             f"- objective (minimised, validation loss): `{s['objective']}`",
             *[f"- constraint: `{c}`" for c in s["constraints"]],
             f"- proxies: {s['proxies']} runs of {s['proxy_samples']:,} samples (the reference, its static "
             f"time-average and {s['proxies'] - 2} sampled schedules; seed {s['seed']}); the chosen mixture "
             f"(`{results['chosen_mixture']}`) is written for a run of {s['run_samples']:,} samples",
             *[f"- {ROLE_NAMES[flag]}: {describe(s['datasets'].get(flag))}" for flag in ROLE_NAMES],
             "", "## How well the fitted model predicts (nested leave-one-out over the proxy runs)", "",
             f"Model: ridge regression on `{model['feature_set']}` features, penalty {model['penalty']:g}, one per "
             f"group. Each proxy run is predicted by a model chosen among the candidates below and fitted without it "
             f"(nested leave-one-out: the choice of features and penalty does not flatter the figures). Objective: "
             f"Spearman {_f(rho, 3)} (goal >= {GOAL_SPEARMAN}: "
             f"{'met' if rho is not None and math.isfinite(rho) and rho >= GOAL_SPEARMAN else 'NOT met'}), RMSE "
             f"{_f(q['objective']['rmse'])} nats against a spread (sd) of {_f(q['objective']['spread'])} over the "
             f"proxies (skill over predicting their mean {_f(q['objective']['skill'], 2)}). `cv.png` plots the "
             f"predictions. Candidates picked without each run: "
             f"{', '.join(f'{name} ({n})' for name, n in q['picked_without_each_run'].items())}.", ""]
    if not (q["objective"]["skill"] is not None and q["objective"]["skill"] > 0):
        lines += [f"**The model predicts the objective no better than the proxies' mean (skill "
                  f"{_f(q['objective']['skill'], 2)}): the chosen schedule is not supported by it.** More proxies, "
                  f"longer proxies (a larger difference between schedules than the noise of one run) or a narrower "
                  f"space would be needed; the best measured proxy is named below.", ""]
    lines += ["| group | Spearman | RMSE | sd over proxies | skill |", "|---|---|---|---|---|"]
    for g in groups:
        r = q["groups"][g]
        lines.append(f"| {g} | {_f(r['spearman'], 3)} | {_f(r['rmse'])} | {_f(r['spread'])} | {_f(r['skill'], 2)} |")
    lines += ["", "Every candidate, by plain leave-one-out over all runs (the kept one has the lowest mean relative "
                  "error; its figures here are slightly optimistic, since the choice was made on them):", "",
              "| features | penalty | mean LOO error / variance | objective Spearman | objective RMSE |",
              "|---|---|---|---|---|"]
    for c in model["candidates"]:
        lines.append(f"| {c['feature_set']} | {c['penalty']:g} | {_f(c['relative_error'])} | "
                     f"{_f(c['objective_spearman'], 3)} | {_f(c['objective_rmse'])} |")
    feasibility = ("every constraint holds on the predictions with its safety margin, within the exposures the "
                   "proxies covered" if choice["feasible"] else "NO point of the space meets every constraint with "
                   "its safety margin on the predictions within the exposures the proxies covered: the least "
                   "violating one was chosen")
    lines += ["", "## The chosen schedule", "",
              f"Predicted {s['objective']}: chosen {_f(choice['predicted_objective'])}, reference "
              f"{_f(choice['reference_predicted_objective'])} (model predictions at the proxies' scale; "
              f"{feasibility}). The best measured proxy meeting the constraints: "
              f"{choice['best_measured_proxy'] or 'none'}. `schedule.png` draws the chosen schedule next to the "
              f"reference.", ""]
    for text, excess, margin in zip(s["constraints"], choice["constraint_excess"], choice["constraint_margins"]):
        lines.append(f"- `{text}`: predicted {_f(excess)} nats from the bound; safety margin {_f(margin)} nats "
                     f"({_f(s['constraint_safety'], 2)} x the model's nested-LOO RMSE of the expression)")
    if s["constraints"]:
        lines.append("")
    lines += _parameters_table(results, results.get("reference_values"))
    lines += ["", "| group | predicted reference | predicted chosen |", "|---|---|---|"]
    for g in groups:
        lines.append(f"| {g} | {_f(choice['reference_predicted_validation_loss'][g])} | "
                     f"{_f(choice['predicted_validation_loss'][g])} |")
    lines += _final_markdown(results.get("final"), groups, s["objective"])
    lines += _ladder_markdown(results.get("ladder"))
    lines += ["", "## What this can and cannot support", "",
              "- The model and the choice are fitted on the validation split; the final comparison is scored on the "
              "test split, which no choice looked at.",
              "- Proxies share one seed (only the schedule differs between them); the seed-to-seed noise of one "
              "schedule is what the final re-runs measure. A predicted gain smaller than the objective's LOO RMSE "
              "is within the model's error.",
              "- The proxies are small: whether the order of schedules holds at a larger size is what the ladder "
              "measures (run with `--ladder K`)."]
    return "\n".join(lines) + "\n"


def _final_markdown(final: dict | None, groups: list[str], objective: str) -> list[str]:
    if not final:
        return ["", "## Test split", "", "No final re-runs (`--seeds 0`)."]
    seeds = final["seeds"]
    lines = ["", f"## Chosen vs reference vs static on the test split ({len(seeds)} seed(s): {', '.join(seeds)}; "
                 f"{final['train_steps']} steps per run)", "",
             "Held-out loss on the test split at the end of each run (mean ± sd over seeds):", "",
             "| | " + " | ".join(["objective"] + groups) + " |", "|---" * (len(groups) + 2) + "|"]
    for kind in ("chosen", "reference", "static"):
        runs = final["runs"][kind]
        cells = []
        for key in ["objective"] + groups:
            values = [runs[s]["objective"] if key == "objective" else runs[s]["losses"][key] for s in seeds]
            sd = float(np.std(values, ddof=1)) if len(values) > 1 else None
            cells.append(_f(float(np.mean(values))) + (f" ± {sd:.4f}" if sd is not None else ""))
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    lines += ["", "Paired per-seed differences (negative: the chosen schedule is lower), mean [95 % t interval]:", "",
              "| | " + " | ".join(["objective"] + groups) + " |", "|---" * (len(groups) + 2) + "|"]
    for name, diffs in final["paired"].items():
        lines.append(f"| {name} | " + " | ".join(_interval(diffs[k]) for k in ["objective"] + groups) + " |")
    verdict = final["paired"]["chosen - reference"]["objective"]
    if verdict["low"] is None:
        said = "one seed only: no interval to judge by"
    elif verdict["high"] < 0:
        said = "the chosen schedule beats the reference: the interval excludes zero"
    elif verdict["low"] > 0:
        said = "the chosen schedule is WORSE than the reference: the interval excludes zero"
    else:
        said = "no difference beyond seed noise: the interval includes zero"
    lines += ["", f"On `{objective}`, chosen - reference: {said}."]
    for c in final["constraints"]:
        excess = c["per_seed_excess"]
        lines.append(f"Constraint `{c['constraint']}` on test, chosen against the reference of the same seed: "
                     f"excess per seed {', '.join(f'{e:+.4f}' for e in excess)} "
                     f"({'held on every seed' if all(e <= 0 for e in excess) else 'NOT held on every seed'}).")
    return lines


def _ladder_markdown(ladder: dict | None) -> list[str]:
    if not ladder:
        return []
    lines = ["", f"## Transfer to a larger size (the ladder: {ladder['size']['model']}, "
                 f"{ladder['size']['train_steps']} steps)", "",
             f"The best and worst {len(ladder['runs']) // 2} proxies re-run at the larger size: Spearman between the "
             f"two sizes' objectives {_f(ladder['spearman'], 3)}; the best proxies' mean objective at the larger size "
             f"{_f(ladder['best_mean'])} against the worst's {_f(ladder['worst_mean'])} "
             f"({'the order holds' if ladder['best_stay_better'] else 'the order does NOT hold'}).", "",
             "| proxy | objective (proxy size) | objective (ladder size) |", "|---|---|---|"]
    for r in sorted(ladder["runs"], key=lambda r: r["proxy_objective"]):
        lines.append(f"| {r['name']} | {_f(r['proxy_objective'])} | {_f(r['ladder_objective'])} |")
    return lines


def write_report(folder: Path, results: dict, search, chosen_proxy: Path, reference_proxy: Path) -> Path:
    """report.md, report.json and the plots (see the module docstring); returns report.md's path."""
    folder.mkdir(parents=True, exist_ok=True)
    results = _clean(dict(results, reference_values=search.proxy_reference_values()))
    plot_schedules(folder / "schedule.png", chosen_proxy, reference_proxy, search.proxy_samples)
    plot_cv(folder / "cv.png", results["proxies"], results["search"]["objective"])
    if results.get("ladder"):
        plot_ladder(folder / "ladder.png", results["ladder"])
    with atomic_file(folder / "report.json") as handle:
        json.dump(results, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    path = folder / "report.md"
    with atomic_file(path) as handle:
        handle.write(markdown(results))
    return path
