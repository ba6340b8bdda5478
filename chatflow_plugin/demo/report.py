"""The ablation report of the miniature: held-out loss per group and language over training tokens.

Input: run folders named ``<kind>_s<seed>`` (kinds dynamic / static / two_stage / piecewise / adaptive), each
with the ``log.jsonl`` and ``train_summary.json`` that ``chatflow train`` writes. Output folder:

- ``heldout.csv``   run, kind, seed, step, tokens, group, loss (every evaluation)
- ``training.csv``  run, kind, seed, step, tokens, loss and per-group training loss (every log line)
- ``final.csv``     kind, group, mean and sample standard deviation over seeds, per-seed values
- ``heldout_per_group.png``, ``heldout_per_language.png``, ``training_loss.png`` (Figure 1 analogue)
- ``report.md``     the numbers, paired dynamic-vs-baseline differences with their seed spread, tokens per
  group of every run, what the piecewise and adaptive runs change, and what the comparison can and cannot
  support.

Only held-out losses on identical windows are compared across runs; training loss is plotted because the
paper does (Figure 1) and is labelled as not comparable.
"""
from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .groups import SOURCE_LANGUAGE, base_mixture, group_languages, groups_in, target_language
from ..data.mixture import MixtureSpec
from ..errors import ChatflowError
from ..evaluation.figures import DPI
from ..evaluation.uncertainty import t95
from ..files import atomic_file, pyplot, read_json, read_jsonl, resolve_from_file, save_figure, write_csv
from ..options import option
from ..languages import get_language

KIND_ORDER = ("dynamic", "static", "two_stage", "piecewise", "adaptive")
BASELINES = KIND_ORDER[1:]          # every kind is compared with the dynamic sampler
COLORS = {"dynamic": "tab:red", "static": "tab:blue", "two_stage": "tab:green", "piecewise": "tab:purple",
          "adaptive": "tab:orange"}
RUN_NAME = re.compile(r"^(?P<kind>[a-z_]+)_s(?P<seed>\d+)$")


def load_runs(runs: dict[str, Path]) -> tuple[list[dict], list[dict], dict[str, dict], dict[str, list[dict]]]:
    """(held-out rows, training rows, summaries, mixture changes) from run folders."""
    held, trained, summaries, changes = [], [], {}, {}
    for name, folder in sorted(runs.items()):
        match = RUN_NAME.match(name)
        if not match:
            raise ChatflowError(f"run name {name!r} is not <kind>_s<seed>")
        kind, seed = match["kind"], int(match["seed"])
        log = Path(folder) / "log.jsonl"
        if not log.is_file():
            raise ChatflowError(f"{log}: missing (did the run finish?)")
        for _, r in read_jsonl(log):
            base = {"run": name, "kind": kind, "seed": seed, "step": r["step"], "tokens": r.get("tokens")}
            if r["kind"] == "heldout":
                for key, value in r.items():
                    if key.startswith("heldout_"):
                        held.append(dict(base, group=key[len("heldout_"):], loss=value))
            elif r["kind"] == "train":
                trained.append(dict(base, loss=r["loss"], **{k: v for k, v in r.items() if k.startswith("loss_")}))
            elif r["kind"] == "change" and r.get("what") == "mixture":
                changes.setdefault(name, []).append(r)
        summary_path = Path(folder) / "train_summary.json"
        summaries[name] = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    if not held:
        raise ChatflowError("no held-out evaluations in the runs' logs (train with --heldout_dir)")
    return held, trained, summaries, changes


def curves(held: list[dict]) -> dict[tuple[str, str], dict[int, dict[int, float]]]:
    """(kind, group) -> seed -> tokens -> held-out loss."""
    out: dict = defaultdict(lambda: defaultdict(dict))
    for r in held:
        if r["loss"] is not None:
            out[(r["kind"], r["group"])][r["seed"]][r["tokens"]] = r["loss"]
    return out


def language_panels(languages: dict[str, str | None]) -> dict[str, tuple[str, ...]]:
    """Panel label -> the groups of one language, from group -> language code (the groups' ``language`` in the
    mixture file): ``{"English (en_corpus, en_inst)": ("en_corpus", "en_inst"), ...}``, in group order.
    Groups of several languages (``None``: the parallel and code groups) have no panel."""
    by_language: dict[str, list[str]] = {}
    for group, code in languages.items():
        if code is not None:
            by_language.setdefault(code, []).append(group)
    return {f"{get_language(code).name} ({', '.join(groups)})": tuple(groups) for code, groups in by_language.items()}


def language_curves(by_group: dict, panels: dict[str, tuple[str, ...]]) -> dict:
    """(kind, language panel) -> seed -> tokens -> mean of the language's groups' held-out losses."""
    out: dict = defaultdict(lambda: defaultdict(dict))
    kinds = {k for k, _ in by_group}
    for kind in kinds:
        for language, groups in panels.items():
            parts = [by_group.get((kind, g)) for g in groups]
            if any(p is None for p in parts):
                continue
            for seed in parts[0]:
                common = set.intersection(*(set(p.get(seed, {})) for p in parts))
                for tokens in common:
                    out[(kind, language)][seed][tokens] = float(np.mean([p[seed][tokens] for p in parts]))
    return out


def _value_at(points: dict[int, float], fraction: float) -> tuple[int, float]:
    """The evaluation nearest to ``fraction`` of the run's last evaluated token count."""
    xs = sorted(points)
    target = fraction * xs[-1]
    x = min(xs, key=lambda v: abs(v - target))
    return x, points[x]


def paired(a: dict[int, dict[int, float]], b: dict[int, dict[int, float]], fraction: float = 1.0):
    """Per-seed differences b - a at a fraction of the run: (mean, sample sd, n)."""
    diffs = [_value_at(b[s], fraction)[1] - _value_at(a[s], fraction)[1] for s in sorted(set(a) & set(b))]
    if not diffs:
        return math.nan, math.nan, 0
    sd = float(np.std(diffs, ddof=1)) if len(diffs) > 1 else math.nan
    return float(np.mean(diffs)), sd, len(diffs)




def _verdict(mean: float, sd: float, n: int, lower_is: str) -> str:
    """Whether the 95% paired-t interval of the per-seed differences excludes zero."""
    if n < 2 or not math.isfinite(sd):
        return f"one seed only: no spread to judge by ({'baseline higher' if mean > 0 else 'baseline lower'})"
    if abs(mean) <= t95(n - 1) * sd / math.sqrt(n):
        return "within seed noise"
    return f"{lower_is} lower, beyond seed noise" if mean > 0 else "baseline lower, beyond seed noise"


def _fmt(x: float, digits: int = 3) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def plot_curves(path: Path, series: dict, panels: list[str], title: str, ylabel: str) -> None:
    plt = pyplot()

    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        for kind in KIND_ORDER:
            seeds = series.get((kind, panel))
            if not seeds:
                continue
            xs = sorted(set.intersection(*(set(v) for v in seeds.values())))
            ys = np.array([[seeds[s][x] for x in xs] for s in sorted(seeds)])
            mean = ys.mean(axis=0)
            ax.plot(np.array(xs) / 1e6, mean, color=COLORS[kind], label=f"{kind} (n={len(ys)})")
            if len(ys) > 1:
                ax.fill_between(np.array(xs) / 1e6, ys.min(axis=0), ys.max(axis=0), color=COLORS[kind], alpha=0.15)
        ax.set_title(panel, fontsize=10)
        ax.set_xlabel("training tokens (M)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if axes.flat[0].get_legend_handles_labels()[0]:
        axes.flat[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    save_figure(fig, path, dpi=DPI)


class _Results:
    """The numbers every section of the report reads, computed once from the runs."""

    def __init__(self, runs: dict[str, Path], languages: dict[str, str | None], base: MixtureSpec):
        self.foundation = groups_in(SOURCE_LANGUAGE, ("corpus",), base)   # the English corpus groups
        self.target = get_language(target_language(base))
        self.held, self.trained, self.summaries, self.changes = load_runs(runs)
        self.by_group = curves(self.held)
        self.panels = language_panels(languages)
        self.by_language = language_curves(self.by_group, self.panels)
        order = [r["group"] for r in self.held]
        self.groups = sorted({g for _, g in self.by_group}, key=order.index)
        self.kinds = [k for k in KIND_ORDER if any(k == kk for kk, _ in self.by_group)]
        self.final_rows = []
        for (kind, group), seeds in sorted(self.by_group.items()):
            values = [_value_at(seeds[s], 1.0)[1] for s in sorted(seeds)]
            self.final_rows.append({"kind": kind, "group": group, "mean": float(np.mean(values)),
                                    "sd": float(np.std(values, ddof=1)) if len(values) > 1 else None,
                                    "n": len(values), "per_seed": " ".join(f"{v:.4f}" for v in values)})
        self.finals = {(r["kind"], r["group"]): r for r in self.final_rows}
        self.start = {}   # held-out loss at the first evaluation (the expanded foundation), mean over seeds
        for group in self.groups:
            seeds = self.by_group.get(("dynamic", group)) or \
                next(v for (_, g), v in self.by_group.items() if g == group)
            self.start[group] = float(np.mean([seeds[s][min(seeds[s])] for s in seeds]))


def write_report(out_dir: str | Path, runs: dict[str, Path], context: dict | None = None,
                 languages: dict[str, str | None] | None = None, base: MixtureSpec | None = None) -> Path:
    """Write the CSVs, plots and ``report.md`` for ``runs``; returns the report's path.

    ``base`` is the demo's base mixture (default: the packaged Chinese one): its English corpus groups are the
    foundation's, its other language the target. ``languages`` maps each group to its language code (None:
    several languages) for the per-language curves; default: the ``language`` of ``base``'s groups.
    """
    context = context or {}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = base or base_mixture()
    results = _Results(runs, group_languages(base) if languages is None else languages, base)
    write_csv(out / "heldout.csv", results.held)
    write_csv(out / "training.csv", results.trained)
    write_csv(out / "final.csv", results.final_rows)
    _plots(out, results)
    lines = ["# ChatFlow miniature: the dynamic sampler vs a static mixture, two stages, three phases and adaptive "
             "mixing", ""]
    for section in (_setting(context), _final_table(results), _change_table(results), _paired_table(results),
                    _findings(results), _beyond(results), _samples_table(results), _generations(context),
                    limits(SOURCE_LANGUAGE, results.target.code)):
        lines += section
    files = ", ".join(f"`{p}`" for p in ("heldout.csv", "training.csv", "final.csv", "heldout_per_group.png",
                                        "heldout_per_language.png", "training_loss.png"))
    lines += [f"Files: {files}.", ""]
    if context:
        (out / "context.json").write_text(json.dumps(context, indent=2, ensure_ascii=False, default=str) + "\n",
                                          encoding="utf-8")
    report = out / "report.md"
    with atomic_file(report) as handle:
        handle.write("\n".join(lines))
    return report


def _plots(out: Path, r: _Results) -> None:
    plot_curves(out / "heldout_per_group.png", r.by_group, r.groups,
                "Held-out loss per group (same windows for every run; band = min..max over seeds)", "nats/token")
    plot_curves(out / "heldout_per_language.png", r.by_language, list(r.panels),
                "Held-out loss per language (mean of the language's corpus and instruction groups)", "nats/token")
    panel = "training loss (all groups; NOT comparable across mixtures)"
    train_series: dict = defaultdict(lambda: defaultdict(dict))
    for row in r.trained:
        if row["loss"] is not None:
            train_series[(row["kind"], panel)][row["seed"]][row["tokens"]] = row["loss"]
    plot_curves(out / "training_loss.png", train_series, [panel], "Figure 1 analogue: training loss vs tokens",
                "nats/token")


def _setting(context: dict) -> list[str]:
    if not context:
        return []
    t = context.get("timings_seconds", {})
    s = context.get("profile_settings", {})
    tokenizer = context.get("tokenizer", {})
    return [f"Profile **{context.get('profile')}**, data `{context.get('data_dir')}`; total run time "
            f"{_fmt(t.get('total', math.nan), 0)} s on this machine"
            f"{' (bf16 autocast)' if context.get('bf16') else ''}.",
            f"Model `{s.get('model_config')}`; sequence length {s.get('seq_length')}; English tokenizer "
            f"{tokenizer.get('english_pieces')} pieces, expanded to {tokenizer.get('expanded_pieces')}; English "
            f"foundation {s.get('foundation_steps')} steps; each continued run {s.get('train_steps')} steps x "
            f"{s.get('micro_batch_size')} sequences = {context.get('run_samples')} samples; "
            f"T_grow = {_fmt(context.get('t_grow_samples', math.nan), 0)} samples; seeds {list(s.get('seeds', []))}.",
            ""]


def _final_table(r: _Results) -> list[str]:
    lines = ["## Final held-out loss (nats/token; mean ± sd over seeds)", "",
             "| group | " + " | ".join(r.kinds) + " |", "|---|" + "---|" * len(r.kinds)]
    for group in r.groups:
        cells = []
        for kind in r.kinds:
            row = r.finals.get((kind, group))
            cells.append("" if row is None else f"{row['mean']:.3f}" +
                         (f" ± {row['sd']:.3f}" if row["sd"] is not None else ""))
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    return lines + [""]


def _change_table(r: _Results) -> list[str]:
    lines = ["## Change from the expanded English foundation (step 0) to the end", "",
             "| group | at step 0 | " + " | ".join(f"{k} end (change)" for k in r.kinds) + " |",
             "|---|---|" + "---|" * len(r.kinds)]
    for group in r.groups:
        cells = []
        for kind in r.kinds:
            row = r.finals.get((kind, group))
            cells.append("" if row is None else f"{row['mean']:.3f} ({row['mean'] - r.start[group]:+.3f})")
        lines.append(f"| {group} | {r.start[group]:.3f} | " + " | ".join(cells) + " |")
    return lines + [""]


def _paired_table(r: _Results) -> list[str]:
    lines = ["## Dynamic vs baselines: paired per-seed differences (baseline − dynamic; > 0: dynamic lower)", "",
             "| series | baseline | at 1/3 of the run | at 2/3 | at the end | verdict at the end |",
             "|---|---|---|---|---|---|"]
    for series, panels in ((r.by_group, r.groups), (r.by_language, list(r.panels))):
        for panel in panels:
            for baseline in BASELINES:
                a, b = series.get(("dynamic", panel)), series.get((baseline, panel))
                if not a or not b:
                    continue
                cells = []
                for fraction in (1 / 3, 2 / 3, 1.0):
                    mean, sd, n = paired(a, b, fraction)
                    cells.append(f"{mean:+.3f}" + (f" (sd {sd:.3f}, n={n})" if n > 1 else f" (n={n})"))
                mean, sd, n = paired(a, b, 1.0)
                lines.append(f"| {panel} | {baseline} | " + " | ".join(cells) +
                             f" | {_verdict(mean, sd, n, 'dynamic')} |")
    return lines + ["", "Verdict rule: beyond seed noise when the 95% paired-t interval of the per-seed differences "
                    "excludes zero (|mean| > t(0.975, n-1) sd/sqrt(n); n >= 2 seeds).", ""]


def _findings(r: _Results) -> list[str]:
    lines = ["## Findings at this scale (generated from the numbers above)", ""]
    foundation = [g for g in r.foundation if g in r.start]
    name = get_language(SOURCE_LANGUAGE).name
    for group in foundation:
        label = f"{name} corpus" if len(foundation) == 1 else f"{name} corpus {group}"
        for kind in r.kinds:
            row = r.finals.get((kind, group))
            if row is not None:
                change = row["mean"] - r.start[group]
                lines.append(f"- {label}, {kind}: held-out loss {'rises' if change > 0 else 'falls'} by "
                             f"{abs(change):.3f} from the expanded foundation "
                             f"({'forgetting' if change > 0 else 'no forgetting at this foundation strength'}).")
    for language in r.panels:
        for baseline in ("static", "two_stage"):
            a, b = r.by_language.get(("dynamic", language)), r.by_language.get((baseline, language))
            if not a or not b:
                continue
            parts = []
            for label, fraction in (("at 1/3 of the run", 1 / 3), ("at the end", 1.0)):
                mean, sd, n = paired(a, b, fraction)
                parts.append(f"{label} dynamic is {'lower' if mean > 0 else 'higher'} by {abs(mean):.3f} "
                             f"({_verdict(mean, sd, n, 'dynamic')})")
            lines.append(f"- {language} vs {baseline}: " + "; ".join(parts) + ".")
    return lines + [""]


def _samples_table(r: _Results) -> list[str]:
    lines = ["## Samples per group of each run (the comparison is fair only if these match)", "",
             "| run | " + " | ".join(r.groups) + " | total |", "|---|" + "---|" * (len(r.groups) + 1)]
    for name, summary in sorted(r.summaries.items()):
        counts = summary.get("group_samples", {})
        if counts:
            lines.append(f"| {name} | " + " | ".join(str(counts.get(g, "")) for g in r.groups) +
                         f" | {sum(counts.values())} |")
    return lines + ["", "Static, two-stage and three-phase (piecewise) runs use the dynamic schedule's time-average over "
                    "the run, so their samples per group equal the dynamic run's up to rounding; the two-stage run puts "
                    "all instruction samples in its second stage (its own warm-up and cosine decay), so it differs in "
                    "order and in learning-rate schedule, not in data amount. The adaptive run's samples per group are "
                    "its own by design: the policy moves them.", ""]


def _beyond(r: _Results) -> list[str]:
    """What the runs beyond the paper (piecewise phases, adaptive mixing) change, from the numbers."""
    kinds = [k for k in ("piecewise", "adaptive") if k in r.kinds]
    if not kinds or "dynamic" not in r.kinds:
        return []
    lines = ["## Beyond the paper's line: what three phases and adaptive mixing change here", ""]
    for kind in kinds:
        verdicts = []
        for panel, series in [(p, r.by_language) for p in r.panels] + [(g, r.by_group) for g in r.groups]:
            a, b = series.get(("dynamic", panel)), series.get((kind, panel))
            if a and b:
                mean, sd, n = paired(a, b, 1.0)
                verdicts.append((panel, mean, _verdict(mean, sd, n, "dynamic")))
        beyond = [v for v in verdicts if "beyond" in v[2]]
        if not verdicts:
            continue
        if beyond:
            text = "; ".join(f"{panel}: {'dynamic' if mean > 0 else kind} lower by {abs(mean):.3f}"
                             for panel, mean, _ in beyond)
            lines.append(f"- **{kind}** vs dynamic at the end, beyond seed noise: {text}; every other series within "
                         f"noise or judged on one seed.")
        else:
            spread = max(abs(m) for _, m, _ in verdicts)
            lines.append(f"- **{kind}** vs dynamic at the end: no series differs beyond seed noise (largest gap "
                         f"{spread:.3f} nats{', one seed only' if all('one seed' in v for _, _, v in verdicts) else ''})"
                         f": at this scale it changes nothing measurable.")
    adaptive = {name: c for name, c in r.changes.items() if name.startswith("adaptive_")}
    for name, changes in sorted(adaptive.items()):
        summary = r.summaries.get(name, {})
        # an update at the run's last step applies to no sample of it (only to a continuation)
        changes = [c for c in changes if c.get("sample", 0) < summary.get("samples", float("inf"))] or changes
        last = changes[-1]["new"].get("factors", {})
        counts, base = summary.get("group_samples", {}), \
            r.summaries.get(name.replace("adaptive_", "dynamic_"), {}).get("group_samples", {})
        moved = ", ".join(f"{g} {counts[g] - base[g]:+d}" for g in counts if g in base and counts[g] != base[g])
        lines.append(f"- {name}: {len(changes)} update(s) during the run; the last factors on the dynamic weights "
                     + ", ".join(f"{g} {f:.2f}" for g, f in last.items())
                     + (f"; samples per group vs dynamic: {moved}" if moved else "") + ".")
    return lines + ["", "Three phases keep the dynamic run's samples per group, so a gap is the order's; adaptive "
                    "mixing moves samples between groups (the table below), so it trades one group's loss for "
                    "another's by design.", ""]


def _generations(context: dict) -> list[str]:
    if not context.get("generations"):
        return []
    lines = ["## Generation with transformers from the released HF directory", "",
             f"Released model: `{context.get('release_dir')}` (safetensors + tokenizer.model + "
             "tokenizer_config.json; AutoTokenizer ids checked against sentencepiece). Greedy decoding.", ""]
    for lang, g in context["generations"].items():
        lines += [f"- **{lang}** instruction: {g['instruction']}", f"  - answer: {g['answer']!r}"]
    return lines + [""]


def limits(source: str, target: str) -> list[str]:
    """What the miniature can and cannot show, for a foundation in ``source`` adapted to ``target`` (codes)."""
    from ..evaluation.registry import BENCHMARKS, benchmarks_of_language

    src, tgt = get_language(source).name, get_language(target).name
    names = [BENCHMARKS[n].display for code in (source, target) for n in benchmarks_of_language(code)]
    return [
        "## What this miniature can and cannot show", "",
        "- It compares the three data orders on identical held-out windows with the same expected samples per "
        "group, so differences come from the order of the data (and, for two stages, the restarted learning-rate "
        "schedule), not from its amount.",
        "- 'Faster convergence' in the paper is read from training loss (Figure 1); training loss depends on the "
        f"mix drawn at each moment (a run that draws more {src} early looks better early) and is plotted only for "
        "reference (`training_loss.png`). Held-out loss is the comparable measure.",
        f"- '{src} retained': the {src} rows of the step-0 table show whether {src} held-out loss rises "
        "(forgetting) or keeps falling (foundation too weak for retention to mean much).",
        f"- '{tgt} acquired': the {tgt} rows show how far each run brings {tgt} loss down from the expanded "
        "foundation (new rows initialised by the sub-token mean).",
        "- At this scale (a few million parameters, well under a million tokens per run) gaps are hundredths of a "
        "nat; only differences beyond the seed spread above are evidence, and even those say nothing about "
        f"benchmark accuracy{' (' + ', '.join(names) + ')' if names else ''}, which needs the full-scale run.", ""]


# ---------------------------------------------------------------------------------------------
# `chatflow demo-report`: the report again, from run folders


@dataclass
class ReportOptions:
    runs_dir: str = option(help="folder holding dynamic_s0/, static_s0/, ... run folders")
    output_dir: str = option(help="where report.md, the CSVs and the plots go")
    context: str = option("", help="context.json of a demo report (profile, timings, generations)")


def rewrite_report(options: ReportOptions) -> Path:
    """Write the held-out report (CSVs, plots, report.md) over run folders named <kind>_s<seed>."""
    runs_dir = Path(options.runs_dir)
    if not runs_dir.is_dir():
        raise ChatflowError(f"--runs_dir {runs_dir}: not a folder")
    runs = {p.name: p for p in sorted(runs_dir.iterdir()) if p.is_dir() and RUN_NAME.match(p.name)}
    if not runs:
        raise ChatflowError(f"{runs_dir}: no run folders named <kind>_s<seed>")
    context = read_json(options.context, "demo report context") if options.context else None
    base = None
    if context and context.get("base_mixture"):   # written by the demo relative to context.json
        base = base_mixture(resolve_from_file(context["base_mixture"], options.context))
    report = write_report(options.output_dir, runs, context, base=base)
    print(report)
    return report
