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
3. **Check.** ``--seeds`` re-runs of the chosen, reference and static schedules scored on the test split
   (``--test_dir``), which the search never saw; ``--ladder K``: the best and worst K proxies again at a larger
   size (``--ladder_model_config``/``--ladder_model_path``, ``--ladder_train_steps``).
4. **Report** (:mod:`.report`).

``--print_commands`` prints (and writes to ``commands.txt``) the ``chatflow train`` line of every unfinished run of
the next stage instead of training: a scheduler runs them; the next ``chatflow search`` with the same options
collects the finished folders (``--collect_only`` never trains, it fails naming what is missing).
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from ..data.baselines import static_mixture
from ..data.mixture import MixtureSpec, load_mixture, parse_mixture, write_mixture
from ..errors import ChatflowError
from ..files import atomic_file, write_csv
from ..options import option
from ..outputs import output_lock, read_marker, write_marker
from .model import fit_model, schedule_features, spearman
from .objective import Constraint, Expression, parse_constraint, parse_objective
from .optimize import optimize
from .proxies import Run, TrainSettings, command_line, result, run_all
from .report import write_report
from .space import SearchSpace, at_scale, load_space, mixture_json, reference_values

SEARCH_KIND = "search"
SEARCH_OWNS = ("search.json", "mixtures", "proxies", "ladder", "final", "logs", "commands.txt", "proxies.csv",
               "model.json", "chosen_mixture.json", "report", ".*.tmp", ".*.lock")
RECORD = "search.json"
CHOSEN = "chosen_mixture.json"
DIGITS = 4          # the chosen parameters, rounded: a readable mixture file, the same bytes on every re-run


@dataclass
class SearchOptions:
    output_dir: str = option(help="the search's folder: proxy runs, mixtures, model, chosen_mixture.json, report/")
    dataset_dir: str = option(help="training shard directory (chatflow preprocess) every run trains on")
    heldout_dir: str = option(help="validation shard directory: the proxies' held-out loss per group, which the "
                                   "search fits and optimises")
    objective: str = option(help="what to minimise, in the mixture's group names: e.g. 'mean(zh_corpus, zh_inst)' "
                                 "or '0.7 * zh_corpus + 0.3 * zh_inst' (validation loss per group)")
    constraint: list = option(default_factory=list, repeatable=True, type=str,
                              help="an upper bound on group losses: 'en_corpus <= reference + 0.02' (the reference "
                                   "schedule's loss plus a margin) or 'mean(en_corpus, en_inst) <= 5.5'")
    test_dir: str = option("", help="test shard directory (held out from the search): the final re-runs of the "
                                    "chosen, reference and static schedules are scored on it (needed with --seeds)")
    mixture: str = option("", help="the reference mixture: groups and sources (the space's skeleton) and the "
                                   "schedule to beat (default: the one recorded in --dataset_dir)")
    space: str = option("", help="search space file (JSON: bounds or fixed values per group's alpha/beta or "
                                 "piecewise weights, T_grow or knots as fractions of the run; docs/search.md); "
                                 "default: every alpha and beta in [0, 1], T_grow in [0.1, 1.0]")
    run_samples: int = option(0, help="length in samples of the run the reference mixture is written for and the "
                                      "chosen one is for (its times are read as fractions of it); default: the "
                                      "proxy run's length")
    proxies: int = option(48, help="proxy runs: the reference, the static mixture and this many minus 2 sampled "
                                   "schedules (raising it later keeps the runs made)")
    seed: int = option(0, help="seed of the design, and of every proxy's sampler and initialisation")
    model_config: str = option("", help="proxy model config to train from scratch (an HF config JSON)")
    model_path: str = option("", help="proxy start model (an HF model directory), e.g. the expanded foundation")
    tokenizer: str = option("", help="the dataset's tokenizer, saved with each run (see chatflow train)")
    train_steps: int = option(100, help="optimizer steps of each proxy (and final) run")
    micro_batch_size: int = option(8, help="sequences per forward pass")
    gradient_accumulation_steps: int = option(1, help="micro-batches per optimizer step")
    learning_rate: float = option(3e-4, help="peak learning rate")
    lr_scheduler: str = option("cosine", choices=["cosine", "linear", "constant_with_warmup", "cosine_with_min_lr"],
                               help="learning-rate schedule after warm-up")
    warmup_steps: int = option(0, help="linear warm-up, optimizer steps")
    heldout_windows: int = option(64, help="held-out windows per group (validation and test)")
    bf16: bool = option(False, help="bf16 autocast")
    threads: int = option(1, help="torch threads per run")
    train_args: str = option("", help="further `chatflow train` options for every run, as one string "
                                      "(e.g. '--save_every 50 --max_grad_norm 0.5')")
    workers: int = option(1, help="runs trained at once here (each with --threads threads)")
    seeds: int = option(3, help="seeds of the final re-runs of the chosen, reference and static schedules on "
                                "--test_dir (0: none)")
    ladder: int = option(0, help="re-run the best and the worst this many proxies at a larger size and report "
                                 "whether their order holds (0: no ladder)")
    ladder_model_config: str = option("", help="the ladder's larger model config (from scratch)")
    ladder_model_path: str = option("", help="the ladder's larger start model")
    ladder_train_steps: int = option(0, help="the ladder runs' optimizer steps (0: --train_steps)")
    candidates: int = option(4096, help="points the optimiser scans on the fitted model before refining")
    print_commands: bool = option(False, help="train nothing: print the `chatflow train` line of every unfinished "
                                              "run of the next stage (also written to commands.txt) for a scheduler")
    collect_only: bool = option(False, help="train nothing: use the finished run folders (trained elsewhere); fail "
                                            "naming the missing ones")


def _say(message: str) -> None:
    print(f"[chatflow search {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _check(options: SearchOptions) -> None:
    if bool(options.model_config) == bool(options.model_path):
        raise ChatflowError("give exactly one of --model_config (proxies from scratch) or --model_path")
    for name in ("train_steps", "micro_batch_size", "gradient_accumulation_steps", "heldout_windows", "workers",
                 "threads", "candidates"):
        if getattr(options, name) <= 0:
            raise ChatflowError(f"--{name} must be positive, got {getattr(options, name)}")
    for name in ("seeds", "ladder", "run_samples", "ladder_train_steps", "warmup_steps"):
        if getattr(options, name) < 0:
            raise ChatflowError(f"--{name} must be 0 or more, got {getattr(options, name)}")
    if options.proxies < 7:
        raise ChatflowError(f"--proxies must be at least 7 (the reference, the static mixture and 5 sampled "
                            f"schedules), got {options.proxies}")
    if options.seeds and not options.test_dir:
        raise ChatflowError("--seeds re-runs are scored on a test split the search never saw: give --test_dir "
                            "(or --seeds 0)")
    if options.ladder and not (options.ladder_model_config or options.ladder_model_path):
        raise ChatflowError("--ladder needs the larger size: --ladder_model_config or --ladder_model_path")
    if options.ladder_model_config and options.ladder_model_path:
        raise ChatflowError("give one of --ladder_model_config and --ladder_model_path")
    if options.print_commands and options.collect_only:
        raise ChatflowError("--print_commands and --collect_only exclude each other")
    if not math.isfinite(options.learning_rate) or options.learning_rate <= 0:
        raise ChatflowError(f"--learning_rate must be positive, got {options.learning_rate}")
    for flag in ("dataset_dir", "heldout_dir", "test_dir"):
        value = getattr(options, flag)
        if value and not Path(value, "manifest.json").is_file():
            raise ChatflowError(f"--{flag} {value}: not a shard directory (no manifest.json)")
    for flag in ("model_config", "model_path", "tokenizer", "ladder_model_config", "ladder_model_path", "space",
                 "mixture"):
        value = getattr(options, flag)
        if value and not Path(value).exists():
            raise ChatflowError(f"--{flag} {value}: not found")


def _settings(options: SearchOptions) -> TrainSettings:
    return TrainSettings(
        dataset_dir=options.dataset_dir, model_config=options.model_config, model_path=options.model_path,
        tokenizer=options.tokenizer, train_steps=options.train_steps, micro_batch_size=options.micro_batch_size,
        gradient_accumulation_steps=options.gradient_accumulation_steps, learning_rate=options.learning_rate,
        lr_scheduler=options.lr_scheduler, warmup_steps=options.warmup_steps, heldout_windows=options.heldout_windows,
        bf16=options.bf16, threads=options.threads, train_args=options.train_args)


def _reference(options: SearchOptions) -> MixtureSpec:
    if options.mixture:
        return load_mixture(options.mixture)
    manifest = Path(options.dataset_dir) / "manifest.json"
    return parse_mixture(json.loads(manifest.read_text(encoding="utf-8"))["mixture"], where=str(manifest))


# ---------------------------------------------------------------------------------------------
# The search's folder


class Search:
    """Everything one search knows: its options, folder, reference, space, objective and its runs."""

    def __init__(self, options: SearchOptions):
        self.options = options
        self.root = Path(options.output_dir)
        self.settings = _settings(options)
        self.reference = _reference(options)
        groups = self.reference.group_names
        self.space = load_space(options.space, self.reference)
        self.objective: Expression = parse_objective(options.objective, groups)
        self.constraints: list[Constraint] = [parse_constraint(c, groups) for c in options.constraint]
        self.proxy_samples = self.settings.run_samples
        self.run_samples = options.run_samples or self.proxy_samples
        self.scale = self.proxy_samples / self.run_samples     # the full run's times -> the proxies'

    # -- record --------------------------------------------------------------------------------
    def record(self) -> dict:
        """What fixes the proxies: a folder holding proxies of other settings is refused, not mixed in."""
        settings = asdict(self.settings)
        settings.pop("threads")
        test = str(Path(self.options.test_dir).resolve()) if self.options.test_dir else None
        return {"reference": self.reference.to_json(), "space": self.space.to_json(), "seed": self.options.seed,
                "run_samples": self.run_samples, "proxy": settings,
                "heldout_dir": str(Path(self.options.heldout_dir).resolve()), "test_dir": test}

    def check_record(self) -> None:
        """Refuse a folder whose runs were made with other settings; a test split given for the first time is
        recorded (the final re-runs, scored on it, are named by kind and seed only)."""
        path = self.root / RECORD
        current = json.loads(json.dumps(self.record()))
        if path.is_file():
            recorded = json.loads(path.read_text(encoding="utf-8"))
            changed = sorted(k for k in set(current) | set(recorded) if current.get(k) != recorded.get(k)
                             and not (k == "test_dir" and None in (current.get(k), recorded.get(k))))
            if changed:
                raise ChatflowError(f"{self.root} holds a search with other {', '.join(changed)} ({path}); its "
                                    f"runs do not answer this search: give another --output_dir")
            if recorded.get("test_dir") is not None or current["test_dir"] is None:
                return
        with atomic_file(path) as handle:
            json.dump(current, handle, indent=2, ensure_ascii=False)
            handle.write("\n")

    # -- mixtures and runs ---------------------------------------------------------------------
    def write(self, data: dict, relative: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        parse_mixture(data, where=str(path))            # a generated mixture is checked like any other
        return write_mixture(data, path, tree=self.root)    # atomically: the same bytes for the same schedule

    def reference_at_proxies(self) -> MixtureSpec:
        return at_scale(self.reference, self.scale)

    def proxy_reference_values(self) -> dict[str, float] | None:
        """The reference as the space's parameters (None: of another shape)."""
        return reference_values(self.space, self.reference_at_proxies(), self.proxy_samples)

    def proxy_mixtures(self) -> list[tuple[str, str, dict | None, Path]]:
        """(name, kind, parameters or None, mixture file) of every proxy: reference, static, the design."""
        ref = self.reference_at_proxies()
        data = ref.to_json()
        data.pop("adaptive", None)
        data.update(name=f"{self.reference.name}_reference",
                    description=f"{self.reference.name} at the proxies' scale ({self.proxy_samples} samples)")
        out = [("p000", "reference", self.proxy_reference_values(),
                self.write(data, "mixtures/p000.json")),
               ("p001", "static", None, self.write(dict(static_mixture(ref, self.proxy_samples),
                                                        name=f"{self.reference.name}_static"), "mixtures/p001.json"))]
        for i, u in enumerate(self.space.design(self.options.proxies - 2, self.options.seed)):
            name = f"p{i + 2:03d}"
            values = {k: round(v, 6) for k, v in self.space.values(u).items()}
            data = mixture_json(self.reference, self.space, values, self.proxy_samples, f"{self.reference.name}_{name}",
                                f"chatflow search design point {i} (seed {self.options.seed})")
            out.append((name, "design", values, self.write(data, f"mixtures/{name}.json")))
        return out

    def run(self, name: str, folder: str, mixture: Path, seed: int, heldout: str,
            settings: TrainSettings | None = None) -> Run:
        return Run(name=name, folder=self.root / folder, mixture=mixture, seed=seed, heldout_dir=heldout,
                   settings=settings or self.settings)

    # -- training ------------------------------------------------------------------------------
    def train(self, runs: list[Run], stage: str) -> bool:
        """Train (or print) the unfinished ``runs``; False when the commands were printed instead."""
        pending = [r for r in runs if not r.finished]
        if not pending:
            return True
        if self.options.print_commands:
            lines = [command_line(r) for r in pending]
            with atomic_file(self.root / "commands.txt") as handle:
                handle.write("".join(line + "\n" for line in lines))
            print("\n".join(lines), flush=True)
            _say(f"{len(lines)} {stage} run(s) to train: one command per line above (also in "
                 f"{self.root / 'commands.txt'}); run them, then this command again without --print_commands")
            return False
        if self.options.collect_only:
            names = ", ".join(r.name for r in pending[:5]) + (" ..." if len(pending) > 5 else "")
            raise ChatflowError(f"--collect_only: {len(pending)} {stage} run(s) are not finished in {self.root} "
                                f"({names}); train them (--print_commands lists their commands)")
        _say(f"{stage}: training {len(pending)} run(s), {self.options.workers} at a time "
             f"({len(runs) - len(pending)} already finished)")
        run_all(runs, self.options.workers, self.root / "logs", _say)
        return True

    def losses(self, run: Run) -> dict[str, float]:
        found = result(run)
        if found is None:
            raise ChatflowError(f"{run.folder}: not finished")
        missing = [g for g in self.reference.group_names if found["losses"].get(g) is None]
        if missing:
            raise ChatflowError(f"{run.folder}: no held-out loss for group(s) {missing}: the held-out set "
                                f"({run.heldout_dir}) must hold every group of the mixture")
        return {g: float(found["losses"][g]) for g in self.reference.group_names}


def _features(path: Path, run_samples: float) -> dict[str, np.ndarray]:
    return schedule_features(load_mixture(path).schedule(), run_samples)


def _short_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:8]


# ---------------------------------------------------------------------------------------------
# The command


def run_search(options: SearchOptions) -> dict:
    """Choose a mixture's schedule from small proxy runs: sample schedules of a search space (seeded,
    space-filling), train each as an ordinary `chatflow train` run, fit a model from each schedule's group exposures
    to each group's validation loss (cross-validated), search it for the best schedule under an objective written
    in the mixture's group names, write it as chosen_mixture.json, re-run the chosen, reference and static schedules
    with several seeds on the test split, and report (report/report.md). Re-running on the same folder trains
    nothing new and writes the same mixture file."""
    _check(options)
    search = Search(options)
    root = search.root
    root.mkdir(parents=True, exist_ok=True)
    with output_lock(root):
        marker = read_marker(root)
        if marker is None:
            if any(p.name != ".chatflow-output.json" for p in root.iterdir()):
                raise ChatflowError(f"{root} is not empty and not a search's folder: give another --output_dir")
            write_marker(root, SEARCH_KIND, SEARCH_OWNS)
        elif marker["kind"] != SEARCH_KIND:
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
    _say("fitting the model and searching it")
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
    choice = optimize(search.space, model, search.proxy_samples, search.objective, search.constraints,
                      reference_predicted, options.seed, candidates=options.candidates,
                      design=search.space.design(options.proxies - 2, options.seed))
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
    _say(f"chosen schedule written to {chosen} (predicted {search.objective.text} = "
         f"{search.objective.value(chosen_predicted):.4f}; reference {search.objective.value(reference_predicted):.4f})")

    # -- check: final re-runs on the test split and the ladder ----------------------------------
    finals = _final_runs(search, chosen_proxy, proxies)
    ladder = _ladder_runs(search, table, proxies)
    if not search.train(finals + ladder, "check"):
        return {"printed": "check", "chosen_mixture": str(chosen)}
    results = {
        "search": {"output_dir": str(root), "proxies": len(runs), "proxy_samples": search.proxy_samples,
                   "run_samples": search.run_samples, "seed": options.seed, "objective": search.objective.text,
                   "constraints": [c.text for c in search.constraints], "space": search.space.to_json(),
                   "reference": search.reference.name, "groups": groups},
        "proxies": table, "model": model.to_json(),
        "choice": dict(choice.to_json(), parameters=chosen_values, predicted_validation_loss=chosen_predicted,
                       predicted_objective=search.objective.value(chosen_predicted),
                       reference_predicted_validation_loss=reference_predicted,
                       reference_predicted_objective=search.objective.value(reference_predicted),
                       best_measured_proxy=_best_measured(table)),
        "chosen_mixture": CHOSEN, "final": _final_results(search, finals), "ladder": _ladder_results(search, table,
                                                                                                     ladder),
    }
    report = write_report(root / "report", results, search, chosen_proxy, root / "mixtures" / "p000.json")
    _say(f"report: {report}")
    print(json.dumps({"chosen_mixture": str(chosen), "report": str(report),
                      "cv_objective_spearman": model.quality["objective"]["spearman"]}, indent=2))
    return results


def _csv_row(row: dict, groups: list[str], space: SearchSpace) -> dict:
    out = {"name": row["name"], "kind": row["kind"], "objective": row["objective"],
           "loo_objective": row["loo_objective"]}
    out.update({f"valid_{g}": row["losses"][g] for g in groups})
    out.update({f"exposure_{g}": row["exposure"][g] for g in groups})
    out.update({name: (row["parameters"] or {}).get(name) for name in space.names})
    return out


def _final_runs(search: Search, chosen_proxy: Path, proxies: list) -> list[Run]:
    options = search.options
    if not options.seeds:
        return []
    label = f"chosen-{_short_hash(chosen_proxy)}"
    designs = [(label, chosen_proxy), ("reference", proxies[0][3]), ("static", proxies[1][3])]
    return [search.run(f"final/{kind}_s{seed}", f"final/{kind}_s{seed}", path, seed, options.test_dir)
            for seed in range(options.seed, options.seed + options.seeds) for kind, path in designs]


def _final_results(search: Search, finals: list[Run]) -> dict | None:
    if not finals:
        return None
    from ..evaluation.uncertainty import paired_t_interval

    groups = search.reference.group_names
    per_run = {}
    for run in finals:
        kind, seed = run.name.split("/")[1].rsplit("_s", 1)
        kind = "chosen" if kind.startswith("chosen-") else kind
        losses = search.losses(run)
        per_run.setdefault(kind, {})[seed] = {"losses": losses, "objective": search.objective.value(losses)}
    seeds = sorted(per_run["chosen"], key=int)       # JSON keys: the seeds as strings
    out = {"split": "test", "test_dir": str(Path(search.options.test_dir).resolve()), "seeds": seeds, "runs": per_run,
           "paired": {}}
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


def _ladder_runs(search: Search, table: list[dict], proxies: list) -> list[Run]:
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


def _ladder_results(search: Search, table: list[dict], ladder: list[Run]) -> dict | None:
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


def _best_measured(table: list[dict]) -> str | None:
    """The proxy of lowest measured objective among those meeting every constraint."""
    feasible = [r for r in table if all(e <= 0 for e in r["constraint_excess"])]
    return min(feasible, key=lambda r: r["objective"])["name"] if feasible else None
