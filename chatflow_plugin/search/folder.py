"""The search's folder and its options: what fixes its runs (``search.json``), the mixture files it writes, the
runs it knows, and how they are trained here, printed for a scheduler or collected.

Layout: ``search.json``, ``mixtures/``, ``proxies/pNNN/``, ``final/<steps>steps/<kind>_s<seed>/``,
``ladder/<size>/pNNN/`` (each a ``chatflow train`` run folder), ``logs/``, ``commands.txt``, ``proxies.csv``,
``model.json``, ``chosen_mixture.json``, ``report/`` (docs/search.md).
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..data.baselines import static_mixture
from ..data.mixture import MixtureSpec, load_mixture, parse_mixture, write_mixture
from ..errors import ChatflowError
from ..files import atomic_file
from ..outputs import OutputKind
from ..data.shards import MANIFEST
from ..options import option
from ..outputs import reused
from ..resources import local_model, named, not_found_hint
from .datasets import ROLES, check_datasets, identity, open_dataset
from .objective import Constraint, Expression, parse_constraint, parse_objective
from .proxies import FINISHED, Run, TrainSettings, command_line, result, run_all
from .space import at_scale, load_space, mixture_json, reference_values

# the search folder's kind (chatflow_plugin.outputs): the entries a search writes, each a file or a folder
SEARCH_KIND = OutputKind("search", files=("search.json", "commands.txt", "proxies.csv", "model.json",
                                          "chosen_mixture.json", ".*.tmp", ".*.lock"),
                         folders=("mixtures", "proxies", "ladder", "final", "logs", "report"))
RECORD = "search.json"


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
    warmup_steps: float = option(0, help="linear warm-up in optimizer steps (a value below 1: a fraction of each run)")
    heldout_windows: int = option(64, help="held-out windows per group (validation and test)")
    bf16: bool = option(False, help="bf16 autocast")
    threads: int = option(1, help="torch threads per run")
    train_args: str = option("", help="further `chatflow train` options for every run, as one string "
                                      "(e.g. '--save_every 50 --max_grad_norm 0.5')")
    workers: int = option(1, help="runs trained at once here (each with --threads threads)")
    seeds: int = option(3, help="seeds of the final re-runs of the chosen, reference and static schedules on "
                                "--test_dir (0: none)")
    final_train_steps: int = option(0, help="optimizer steps of the final re-runs, whose mixtures are written for "
                                            "that length (0: --train_steps): e.g. the run the proxies stand for")
    ladder: int = option(0, help="re-run the best and the worst this many proxies at a larger size and report "
                                 "whether their order holds (0: no ladder)")
    ladder_model_config: str = option("", help="the ladder's larger model config (from scratch)")
    ladder_model_path: str = option("", help="the ladder's larger start model")
    ladder_train_steps: int = option(0, help="the ladder runs' optimizer steps (0: --train_steps)")
    constraint_safety: float = option(1.0, help="keep each constraint's predicted value this many times the "
                                                "model's cross-validated error (RMSE) of its expression inside its "
                                                "bound, so that the model's error does not carry the choice across it "
                                                "(0: up to the bound)")
    candidates: int = option(4096, help="points the optimiser scans on the fitted model before refining")
    print_commands: bool = option(False, help="train nothing: print the `chatflow train` line of every unfinished "
                                              "run of the next stage (also written to commands.txt) for a scheduler")
    collect_only: bool = option(False, help="train nothing: use the finished run folders (trained elsewhere); fail "
                                            "naming the missing ones")


def say(message: str) -> None:
    print(f"[chatflow search {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def resolve_names(options: SearchOptions) -> SearchOptions:
    """Packaged files by name (``--mixture tiny_corpora``, ``--model_config tiny``) and models by Hugging Face Hub
    id, as ``chatflow train`` reads them: the files they stand for (the printed commands name these)."""
    changes = {flag: str(named(kind, getattr(options, flag))) for flag, kind in
               (("mixture", "mixture"), ("model_config", "model_config"), ("ladder_model_config", "model_config"))
               if getattr(options, flag)}
    changes.update({flag: str(local_model(getattr(options, flag), f"--{flag}"))
                    for flag in ("model_path", "ladder_model_path", "tokenizer") if getattr(options, flag)})
    return replace(options, **changes)


def check_options(options: SearchOptions) -> None:
    if bool(options.model_config) == bool(options.model_path):
        raise ChatflowError("give exactly one of --model_config (proxies from scratch) or --model_path")
    for name in ("train_steps", "micro_batch_size", "gradient_accumulation_steps", "heldout_windows", "workers",
                 "threads", "candidates"):
        if getattr(options, name) <= 0:
            raise ChatflowError(f"--{name} must be positive, got {getattr(options, name)}")
    for name in ("seeds", "ladder", "run_samples", "ladder_train_steps", "warmup_steps", "final_train_steps",
                 "constraint_safety"):
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
    kinds = {"model_config": "model_config", "ladder_model_config": "model_config", "mixture": "mixture"}
    for flag in ("model_config", "model_path", "tokenizer", "ladder_model_config", "ladder_model_path", "space",
                 "mixture"):
        value = getattr(options, flag)
        if value and not Path(value).exists():
            hint = f" {not_found_hint(kinds[flag])}" if flag in kinds else ""
            raise ChatflowError(f"--{flag} {value}: not found{hint}")


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
    manifest = Path(options.dataset_dir) / MANIFEST
    return parse_mixture(json.loads(manifest.read_text(encoding="utf-8"))["mixture"], where=str(manifest))


# ---------------------------------------------------------------------------------------------
# The search's folder


class Search:
    """Everything one search knows: its options, folder, reference, space, objective and its runs."""

    def __init__(self, options: SearchOptions):
        self.options = options
        self.root = Path(options.output_dir)
        self.settings = _settings(options)
        self.datasets = {flag: open_dataset(flag, getattr(options, flag)) for flag in ROLES
                         if getattr(options, flag)}
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
        """What fixes the proxies and the scores: a folder holding runs of other settings or scored on other data
        (a shard set's identity: its path, content checksum and split part) is refused, not mixed in."""
        settings = asdict(self.settings)
        settings.pop("threads")
        sets = {flag: identity(self.datasets[flag]) if flag in self.datasets else None for flag in ROLES}
        return {"reference": self.reference.to_json(), "space": self.space.to_json(), "seed": self.options.seed,
                "run_samples": self.run_samples, "proxy": settings, **sets}

    def check_record(self) -> None:
        """Refuse a folder whose runs were made with other settings or on other data; check the shard sets
        (:func:`.datasets.check_datasets`: tokenizer, groups, no document shared between any two) whenever the
        record changes, i.e. on the first call and when a test set is given for the first time (the final
        re-runs scored on it are named by length, kind and seed, not by the test set)."""
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
        check_datasets(self.datasets, {g.name: [s.name for s in g.sources] for g in self.reference.groups})
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
        for run in runs:
            if run not in pending:
                say(reused(f"{stage} run {run.name}", run.folder, run.folder / FINISHED, "delete the folder"))
        if not pending:
            return True
        if self.options.print_commands:
            lines = [command_line(r) for r in pending]
            with atomic_file(self.root / "commands.txt") as handle:
                handle.write("".join(line + "\n" for line in lines))
            print("\n".join(lines), flush=True)
            say(f"{len(lines)} {stage} run(s) to train: one command per line above (also in "
                f"{self.root / 'commands.txt'}); run them, then this command again (with --print_commands: the next "
                f"stage's commands; with --collect_only: the report)")
            return False
        if self.options.collect_only:
            names = ", ".join(r.name for r in pending[:5]) + (" ..." if len(pending) > 5 else "")
            raise ChatflowError(f"--collect_only: {len(pending)} {stage} run(s) are not finished in {self.root} "
                                f"({names}); train them (--print_commands lists their commands)")
        say(f"{stage}: training {len(pending)} run(s), {self.options.workers} at a time "
            f"({len(runs) - len(pending)} already finished)")
        run_all(runs, self.options.workers, self.root / "logs", say)
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
