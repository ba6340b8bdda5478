"""The check of a choice: the chosen, reference and static schedules re-run with several seeds and scored on the
test split (paired per-seed differences with 95 % t intervals), and the ladder (the best and worst proxies re-run
at a larger size, and whether their order holds)."""
from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..data.baselines import static_mixture
from ..data.mixture import load_mixture
from ..evaluation.uncertainty import paired_t_interval
from .datasets import identity
from .folder import Search
from .model import spearman
from .proxies import Run, TrainSettings
from .space import at_scale, mixture_json

def _short_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:8]


def final_settings(search: Search) -> TrainSettings:
    """The final re-runs' training options: the proxies', for ``--final_train_steps`` (default: as many)."""
    return replace(search.settings, train_steps=search.options.final_train_steps or search.options.train_steps)


def final_runs(search: Search, chosen_values: dict[str, float], description: str) -> list[Run]:
    """The chosen, reference and static schedules, written for the final runs' length (the reference read at that
    scale, the static mixture its time-average over it), each re-run with every seed on the test split. The chosen
    one's folder is named by its mixture's hash, so another choice is another run."""
    options = search.options
    if not options.seeds:
        return []
    settings = final_settings(search)
    n = settings.run_samples
    tag = f"{settings.train_steps}steps"
    reference = at_scale(search.reference, n / search.run_samples)
    data = dict(reference.to_json(), name=f"{search.reference.name}_reference",
                description=f"{search.reference.name} for a run of {n} samples")
    data.pop("adaptive", None)
    files = {"reference": search.write(data, f"mixtures/final/{tag}/reference.json"),
             "static": search.write(dict(static_mixture(reference, n), name=f"{search.reference.name}_static"),
                                    f"mixtures/final/{tag}/static.json"),
             "chosen": search.write(mixture_json(search.reference, search.space, chosen_values, n,
                                                 f"{search.reference.name}_searched", description),
                                    f"mixtures/final/{tag}/chosen.json")}
    labels = {"chosen": f"chosen-{_short_hash(files['chosen'])}", "reference": "reference", "static": "static"}
    return [search.run(f"final/{tag}/{labels[kind]}_s{seed}", f"final/{tag}/{labels[kind]}_s{seed}", files[kind],
                       seed, options.test_dir, settings)
            for seed in range(options.seed, options.seed + options.seeds) for kind in ("chosen", "reference", "static")]


def final_results(search: Search, finals: list[Run]) -> dict | None:
    if not finals:
        return None
    groups = search.reference.group_names
    per_run = {}
    for run in finals:
        kind, seed = run.name.rsplit("/", 1)[1].rsplit("_s", 1)
        kind = "chosen" if kind.startswith("chosen-") else kind
        losses = search.losses(run)
        per_run.setdefault(kind, {})[seed] = {"losses": losses, "objective": search.objective.value(losses)}
    seeds = sorted(per_run["chosen"], key=int)       # JSON keys: the seeds as strings
    out = {"split": "test", "train_steps": final_settings(search).train_steps,
           "test_set": identity(search.datasets["test_dir"]), "seeds": seeds, "runs": per_run, "paired": {}}
    for baseline in ("reference", "static"):
        diffs = {"objective": paired_t_interval(per_run["chosen"][s]["objective"] - per_run[baseline][s]["objective"]
                                                for s in seeds)}
        for g in groups:
            diffs[g] = paired_t_interval(per_run["chosen"][s]["losses"][g] - per_run[baseline][s]["losses"][g]
                                         for s in seeds)
        out["paired"][f"chosen - {baseline}"] = diffs
    out["constraints"] = [{"constraint": c.text, "per_seed_excess": [
        c.excess(per_run["chosen"][s]["losses"], per_run["reference"][s]["losses"]) for s in seeds]}
        for c in search.constraints]
    return out


def _ladder_settings(search: Search) -> TrainSettings:
    o = search.options
    return replace(search.settings, model_config=o.ladder_model_config, model_path=o.ladder_model_path,
                   train_steps=o.ladder_train_steps or o.train_steps)


def _ladder_picks(table: list[dict], k: int) -> list[int]:
    order = sorted(range(len(table)), key=lambda i: (table[i]["objective"], i))
    k = min(k, len(order) // 2)
    return sorted(order[:k] + order[-k:])


def ladder_runs(search: Search, table: list[dict], proxies: list) -> list[Run]:
    options = search.options
    if not options.ladder:
        return []
    settings = _ladder_settings(search)
    model = Path(settings.model_config or settings.model_path)
    tag = f"{model.stem or model.name}_{settings.train_steps}steps"
    runs = []
    for i in _ladder_picks(table, options.ladder):
        name, _, _, path = proxies[i]
        spec = at_scale(load_mixture(path), settings.run_samples / search.proxy_samples)
        data = dict(spec.to_json(), name=f"{spec.name}_ladder")
        mixture = search.write(data, f"mixtures/ladder/{tag}/{name}.json")
        runs.append(search.run(f"ladder/{tag}/{name}", f"ladder/{tag}/{name}", mixture, options.seed,
                               options.heldout_dir, settings))
    return runs


def ladder_results(search: Search, table: list[dict], ladder: list[Run]) -> dict | None:
    if not ladder:
        return None
    by_name = {r["name"]: r for r in table}
    rows = []
    for run in ladder:
        name = run.name.rsplit("/", 1)[1]
        losses = search.losses(run)
        rows.append({"name": name, "proxy_objective": by_name[name]["objective"],
                     "ladder_objective": search.objective.value(losses), "ladder_losses": losses})
    small = [r["proxy_objective"] for r in rows]
    large = [r["ladder_objective"] for r in rows]
    settings = _ladder_settings(search)
    ordered = [r["ladder_objective"] for r in sorted(rows, key=lambda r: r["proxy_objective"])]
    half = len(ordered) // 2
    return {"runs": rows, "spearman": spearman(small, large),
            "size": {"model": settings.model_config or settings.model_path, "train_steps": settings.train_steps},
            "best_mean": float(np.mean(ordered[:half])), "worst_mean": float(np.mean(ordered[half:])),
            "best_stay_better": bool(np.mean(ordered[:half]) < np.mean(ordered[half:]))}
