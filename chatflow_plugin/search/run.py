"""``chatflow search``: the command. Proxy runs of sampled schedules, a fitted model, the chosen schedule, its check.

Stages, each reusing what the folder already holds (a finished run is never trained twice):

1. **Proxies.** The reference schedule (``--mixture``, read at the proxies' scale), its static time-average and
   ``--proxies`` - 2 schedules of the space's design, each trained by ``chatflow train`` on ``--dataset_dir`` and
   scored on the validation split (``--heldout_dir``); all with one seed (common random numbers: schedules differ,
   nothing else).
2. **Model and choice.** The model (:mod:`.model`) fitted on the proxies' validation losses, its cross-validated
   quality; the best schedule under ``--objective`` and ``--constraint`` (:mod:`.optimize`), written as
   ``chosen_mixture.json`` (for the run of ``--run_samples`` samples, in the reference's unit: the file the
   trainers and ``scripts/chatflow_full_run.sh`` read) and ``mixtures/chosen.json`` (at the proxies' scale).
3. **Check** (:mod:`.check`). ``--seeds`` re-runs of the chosen, reference and static schedules, for
   ``--final_train_steps``, scored on the test split (``--test_dir``), which the search never saw; ``--ladder K``: the best and worst K proxies again at a larger
   size (``--ladder_model_config``/``--ladder_model_path``, ``--ladder_train_steps``).
4. **Report** (:mod:`.report`).

``--print_commands`` prints (and writes to ``commands.txt``) the ``chatflow train`` line of every unfinished run of
the next stage instead of training: a scheduler runs them; the next ``chatflow search`` with the same options
collects the finished folders (``--collect_only`` never trains, it fails naming what is missing).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ..data.mixture import load_mixture
from ..errors import ChatflowError
from ..files import atomic_file, write_csv
from ..outputs import output_lock, read_marker, write_marker
from .datasets import identity
from .check import final_results, final_runs, ladder_results, ladder_runs
from .folder import SEARCH_KIND, Search, SearchOptions, check_options, resolve_names, say
from .model import fit_model, rmse, schedule_features
from .optimize import optimize
from .proxies import result
from .report import write_report
from .space import SearchSpace, mixture_json

__all__ = ["SearchOptions", "run_search"]

CHOSEN = "chosen_mixture.json"
DIGITS = 4          # the chosen parameters, rounded: a readable mixture file, the same bytes on every re-run


def _features(path: Path, run_samples: float) -> dict[str, np.ndarray]:
    return schedule_features(load_mixture(path).schedule(), run_samples)


# ---------------------------------------------------------------------------------------------
# The command


def run_search(options: SearchOptions) -> dict:
    """Choose a mixture's schedule from small proxy runs: sample schedules of a search space (seeded,
    space-filling), train each as an ordinary `chatflow train` run, fit a model from each schedule's group exposures
    to each group's validation loss (cross-validated), search it for the best schedule under an objective written
    in the mixture's group names, write it as chosen_mixture.json, re-run the chosen, reference and static schedules
    with several seeds on the test split, and report (report/report.md). Re-running on the same folder trains
    nothing new and writes the same mixture file."""
    options = resolve_names(options)
    check_options(options)
    search = Search(options)
    root = search.root
    with output_lock(root):         # a search refused before its first result leaves no folder behind
        root.mkdir(exist_ok=True)
        marker = read_marker(root)
        if marker is None:
            if any(p.name != ".chatflow-output.json" for p in root.iterdir()):
                raise ChatflowError(f"{root} is not empty and not a search's folder: give another --output_dir")
            write_marker(root, SEARCH_KIND, SEARCH_KIND.entries())
        elif marker["kind"] != SEARCH_KIND.name:
            raise ChatflowError(f"{root} holds a chatflow {marker['kind']}, not a search: give another --output_dir")
        search.check_record()
        return _search(search)


def _search(search: Search) -> dict:
    options, root = search.options, search.root
    groups = search.reference.group_names
    proxies = search.proxy_mixtures()
    runs = [search.run(name, f"proxies/{name}", path, options.seed, options.heldout_dir)
            for name, _, _, path in proxies]
    if not search.train(runs, "proxy"):
        return {"printed": "proxies"}

    # -- fit and choose ------------------------------------------------------------------------
    say("fitting the model and searching it")
    rows, table = [], []
    measured = np.array([[search.losses(r)[g] for g in groups] for r in runs])
    for (name, kind, values, path), run, losses in zip(proxies, runs, measured):
        rows.append(_features(path, search.proxy_samples))
        table.append({"name": name, "kind": kind, "losses": dict(zip(groups, losses.tolist())),
                      "parameters": values, "exposure": dict(zip(groups, rows[-1]["exposure"].tolist())),
                      "seconds": (result(run) or {}).get("seconds")})
    reference_measured = table[0]["losses"]
    for row in table:
        row["objective"] = search.objective.value(row["losses"])
        row["constraint_excess"] = [c.excess(row["losses"], reference_measured) for c in search.constraints]
    model = fit_model(rows, measured, groups, lambda r: search.objective.value(dict(zip(groups, r))))
    for row, loo in zip(table, model.loo):
        row["loo_objective"] = search.objective.value(dict(zip(groups, loo)))
    reference_predicted = dict(zip(groups, model.predict([rows[0]])[0].tolist()))
    margins = [options.constraint_safety * _expression_rmse(c.expression, model.loo, measured, groups)
               for c in search.constraints]
    choice = optimize(search.space, model, search.proxy_samples, search.objective, search.constraints,
                      reference_predicted, options.seed, candidates=options.candidates,
                      design=search.space.design(options.proxies - 2, options.seed), margins=margins)
    chosen_values = {k: round(v, DIGITS) for k, v in choice.values.items()}
    description = (f"chosen by chatflow search from {len(runs)} proxy runs of {search.proxy_samples} samples: "
                   f"minimise {search.objective.text}" + "".join(f"; {c.text}" for c in search.constraints))
    chosen_proxy = search.write(mixture_json(search.reference, search.space, chosen_values, search.proxy_samples,
                                             f"{search.reference.name}_searched", description), "mixtures/chosen.json")
    chosen = search.write(mixture_json(search.reference, search.space, chosen_values, search.run_samples,
                                       f"{search.reference.name}_searched", description,
                                       unit=search.reference.schedule_unit), CHOSEN)
    chosen_features = _features(chosen_proxy, search.proxy_samples)
    chosen_predicted = dict(zip(groups, model.predict([chosen_features])[0].tolist()))
    write_csv(root / "proxies.csv", [_csv_row(r, groups, search.space) for r in table])
    with atomic_file(root / "model.json") as handle:
        json.dump(model.to_json(), handle, indent=2)
        handle.write("\n")
    skill = model.quality["objective"]["skill"]
    if not skill > 0:
        say(f"warning: the fitted model predicts {search.objective.text} no better than the proxies' mean "
            f"(cross-validated skill {skill:.2f}): the choice is not supported by it (report/report.md)")
    say(f"chosen schedule written to {chosen} (predicted {search.objective.text} = "
         f"{search.objective.value(chosen_predicted):.4f}; reference {search.objective.value(reference_predicted):.4f})")

    # -- check: final re-runs on the test split and the ladder ----------------------------------
    finals = final_runs(search, chosen_values, description)
    ladder = ladder_runs(search, table, proxies)
    if not search.train(finals + ladder, "check"):
        return {"printed": "check", "chosen_mixture": str(chosen)}
    results = {
        "search": {"output_dir": str(root), "proxies": len(runs), "proxy_samples": search.proxy_samples,
                   "run_samples": search.run_samples, "seed": options.seed, "objective": search.objective.text,
                   "constraints": [c.text for c in search.constraints],
                   "constraint_safety": options.constraint_safety, "space": search.space.to_json(),
                   "reference": search.reference.name, "groups": groups,
                   "datasets": {flag: identity(shards) for flag, shards in search.datasets.items()}},
        "proxies": table, "model": model.to_json(),
        "choice": dict(choice.to_json(), parameters=chosen_values, predicted_validation_loss=chosen_predicted,
                       predicted_objective=search.objective.value(chosen_predicted),
                       reference_predicted_validation_loss=reference_predicted,
                       reference_predicted_objective=search.objective.value(reference_predicted),
                       best_measured_proxy=_best_measured(table)),
        "chosen_mixture": CHOSEN, "final": final_results(search, finals), "ladder": ladder_results(search, table,
                                                                                                     ladder),
    }
    report = write_report(root / "report", results, search, chosen_proxy, root / "mixtures" / "p000.json")
    say(f"report: {report}")
    # with --print_commands, stdout holds only command lines (none: nothing is left to train) for a scheduler
    print(json.dumps({"chosen_mixture": str(chosen), "report": str(report),
                      "cv_objective_spearman": model.quality["objective"]["spearman"]}, indent=2),
          file=sys.stderr if options.print_commands else sys.stdout)
    return results


def _csv_row(row: dict, groups: list[str], space: SearchSpace) -> dict:
    out = {"name": row["name"], "kind": row["kind"], "objective": row["objective"],
           "loo_objective": row["loo_objective"]}
    out.update({f"valid_{g}": row["losses"][g] for g in groups})
    out.update({f"exposure_{g}": row["exposure"][g] for g in groups})
    out.update({name: (row["parameters"] or {}).get(name) for name in space.names})
    return out


def _expression_rmse(expression, predicted: np.ndarray, measured: np.ndarray, groups: list[str]) -> float:
    """The model's cross-validated error (RMSE over the proxies, nested leave-one-out) of an expression."""
    values = [[expression.value(dict(zip(groups, row))) for row in rows] for rows in (predicted, measured)]
    return rmse(values[0], values[1])


def _best_measured(table: list[dict]) -> str | None:
    """The proxy of lowest measured objective among those meeting every constraint."""
    feasible = [r for r in table if all(e <= 0 for e in r["constraint_excess"])]
    return min(feasible, key=lambda r: r["objective"])["name"] if feasible else None
