"""Run plumbing shared by the HuggingFace trainers (``chatflow train`` and ``chatflow clo-train``).

A run lives in one output directory: a run record (the settings, written by rank 0), a JSONL log
(plus CSV views), Trainer checkpoints (``checkpoint-N/``) and the final model, which appears only
complete. This module owns what both trainers do with it:

* which process writes (:func:`world`: rank 0 of ``RANK``/``WORLD_SIZE`` as set by torchrun);
* ``--resume auto|no|PATH`` (:func:`start_run`): continue from the newest *complete* checkpoint (a newer
  one that a kill or a full disk cut short is skipped with a warning: :func:`checkpoint_problem`), refuse to
  start over a run, or continue from a given checkpoint; a run that has finished is reported as such
  (each trainer decides what a re-run of it means);
* what a resumed run may change (:class:`RunRecord`, the keys are per trainer): settings that fix which
  samples a step reads never; settings that change the run's meaning (its objective, learning-rate schedule,
  data) only when ``--allow_change NAME`` says so, and then each change is appended to the record's
  ``history``: ``{"step", "what", "old", "new", "time"}`` (:func:`chatflow_plugin.data.revisions.change`), one
  list for every kind of change (a trainer that keeps the history itself, as ``chatflow train`` does with the
  mixture's and the layout's changes, passes it in the record);
  :func:`chatflow_plugin.hosts.resume.apply_resumed_settings` makes an allowed learning-rate change take
  effect over the checkpoint's optimizer and scheduler states, which would otherwise restore the old rate;
* the run's lock and marker (:func:`run_directory`): one process writes a run directory at a time, and it is
  marked as chatflow's (:mod:`chatflow_plugin.outputs`);
* the log (:class:`RunLog`), cut back to the resumed step so that it holds one history;
* ``--quiet`` (:func:`quiet_libraries`): the libraries' progress bars and logging silenced; a resumed run still
  says which checkpoint it continues from (:func:`start_run`, on stderr);
* the tokenizer files written into every checkpoint and the final model, before the weights
  (:class:`TokenizerFiles`, :class:`SavesTokenizerFiles`), and the final model saved under a temporary
  name and renamed into place (:func:`save_final_model`).

A ``transformers.Trainer`` checkpoint holds tokenizer files only when the Trainer was given a
``processing_class``, whose ``save_pretrained`` then writes what that object makes of itself (no
``tokenizer.model`` for a fast tokenizer), after the weights. Here the exact files of the final model
(the HF files that :func:`~chatflow_plugin.checkpoints.convert.write_hf_tokenizer_files` makes from a
sentencepiece model, or the start model's own files) are read once into memory and written into every
directory the Trainer saves to, before the weights and each one atomically: a checkpoint that has its
``config.json`` has its tokenizer, so a save killed half-way never leaves a folder that looks loadable
without one. Only the process that saves (``args.should_save``: rank 0) writes.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from ...checkpoints import tensor_io as cio
from ...data.runstate import STATE_FILE, check_change_names, describe_change, write_state
from ...errors import ChatflowError
from ...files import append_csv_row, atomic_file, csv_columns, read_jsonl, write_csv
from ...outputs import OutputKind, output_folder, replace_directory
from ...tokenizer import TokenizerFiles



def resume_help(finished: str = "a finished run is left as it is") -> str:
    """The help of ``--resume``, the same in every command that trains (``finished``: what a re-run of a
    finished run does)."""
    return (f"auto: continue from the newest checkpoint in --output_dir if there is one ({finished}); no: start "
            f"fresh (--output_dir must hold no checkpoint and no final model); or the path of a checkpoint to "
            f"continue from")


def world() -> tuple[int, int]:
    """(rank, world size) of this process, as torchrun (or deepspeed, accelerate) sets them."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def is_main_process() -> bool:
    return world()[0] == 0


def leave_process_group() -> None:
    """Wait for every rank, then take down the process group the Trainer opened (torchrun runs).

    A gloo process that exits with its group still up can abort in the C++ destructors of the group's
    threads (``terminate called without an active exception``, exit code -6) while its peer is still
    saving; ``torchrun`` then reports the whole run as failed although every step finished.
    """
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


# ---------------------------------------------------------------------------------------------
# Where a run starts


def checkpoint_step(checkpoint: str | os.PathLike) -> int:
    """The optimizer step a Trainer checkpoint was saved at."""
    path = Path(checkpoint, "trainer_state.json")
    try:
        return int(json.loads(path.read_text(encoding="utf-8"))["global_step"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ChatflowError(f"{path}: unreadable Trainer state ({exc})") from None


CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_problem(checkpoint: str | os.PathLike) -> str | None:
    """Why a Trainer checkpoint cannot be resumed from (None: it is complete).

    The Trainer writes the model (config, weights), then the optimizer, scheduler and RNG states, and
    ``trainer_state.json`` last; a save cut short by a kill or a full disk lacks the last files or holds a
    truncated one. Complete means: ``trainer_state.json`` readable with its step, ``config.json``, weights
    whose safetensors headers fit their files (every shard an index names), and the optimizer state
    (``optimizer.pt`` or DeepSpeed's ``global_step*/``).
    """
    folder = Path(checkpoint)
    try:
        checkpoint_step(folder)
    except ChatflowError:
        return "no readable trainer_state.json"
    if not (folder / "config.json").is_file():
        return "no config.json"
    weights = _weight_files(folder)
    if weights is None:
        return "no model weights (or an index naming missing shards)"
    for path in weights:
        problem = _truncated(path)
        if problem:
            return f"{path.name} {problem}"
    if not (folder / "optimizer.pt").is_file() and not any(folder.glob("global_step*")):
        return "no optimizer state"
    return None


def _weight_files(folder: Path) -> list[Path] | None:
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (folder / index).is_file():
            try:
                shards = set(json.loads((folder / index).read_text(encoding="utf-8"))["weight_map"].values())
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                return None
            paths = [folder / name for name in sorted(shards)]
            return paths if all(p.is_file() for p in paths) else None
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return [folder / name]
    return [] if any(folder.glob("global_step*")) else None   # DeepSpeed keeps the weights there


def _truncated(path: Path) -> str | None:
    """Why a safetensors file is cut short (None: its header's tensors fit the file; other formats: None)."""
    if path.suffix != ".safetensors":
        return None
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            if length <= 0 or length > size - 8:
                return "has no complete header"
            header = json.loads(handle.read(length))
        end = max((info["data_offsets"][1] for key, info in header.items() if key != "__metadata__"), default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return "has an unreadable header"
    return None if 8 + length + end <= size else f"is truncated ({size} of {8 + length + end} bytes)"


def last_complete_checkpoint(checkpoints: Path) -> str | None:
    """The newest complete ``checkpoint-N`` in ``checkpoints``; newer incomplete ones are reported on stderr
    (by rank 0) and left alone: the Trainer writes that step again when the run gets there."""
    if not checkpoints.is_dir():
        return None
    found = sorted(((int(m.group(1)), entry) for entry in checkpoints.iterdir()
                    if (m := CHECKPOINT_NAME.match(entry.name)) and entry.is_dir()), reverse=True)
    skipped = []
    for _, folder in found:
        problem = checkpoint_problem(folder)
        if problem is None:
            if skipped and is_main_process():
                for name, why in skipped:
                    print(f"warning: {name} is incomplete ({why}: its save was cut short); resuming from "
                          f"{folder}", file=sys.stderr)
            return str(folder)
        skipped.append((folder, problem))
    if skipped and is_main_process():
        print(f"warning: no complete checkpoint in {checkpoints} ({skipped[0][0]}: {skipped[0][1]}); "
              f"starting from step 0", file=sys.stderr)
    return None


# files of a checkpoint the Trainer unpickles on resume (with torch.load(weights_only=True))
TORCH_FILES = ("optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state*.pth", "pytorch_model*.bin")


def unloadable_file(checkpoint: str | os.PathLike) -> str | None:
    """Why a file the Trainer will ``torch.load`` from ``checkpoint`` does not load (None: every one does): a
    pickle holding code, a damaged file. Checked as the Trainer loads them (``weights_only``, with the numpy
    types it allows in its RNG states), memory-mapped: no tensor data is read."""
    from transformers.trainer_pt_utils import safe_globals

    for pattern in TORCH_FILES:
        for path in sorted(Path(checkpoint).glob(pattern)):
            try:
                with safe_globals():
                    cio.check_torch_file(path)
            except ChatflowError as exc:
                return str(exc)
    return None


def check_loadable(checkpoint: str, checkpoints: Path) -> None:
    """Refuse to resume from a complete ``checkpoint`` holding a file the Trainer could not load safely, naming
    the file and the newest older checkpoint that can be used, if any."""
    problem = unloadable_file(checkpoint)
    if problem is None:
        return
    step = checkpoint_step(checkpoint)
    older = sorted(((int(m.group(1)), entry) for entry in checkpoints.iterdir()
                    if (m := CHECKPOINT_NAME.match(entry.name)) and entry.is_dir() and int(m.group(1)) < step),
                   reverse=True)
    usable = next((str(folder) for _, folder in older
                   if checkpoint_problem(folder) is None and unloadable_file(folder) is None), None)
    advice = (f"{usable} is complete and loads: resume from it with --resume {usable} (or move {checkpoint} away)"
              if usable else f"no older complete checkpoint in {checkpoints} loads: start again with another "
                             f"--output_dir")
    raise ChatflowError(f"{problem}; the checkpoint {checkpoint} was damaged or altered after it was saved; {advice}")


def find_checkpoint(resume: str, output_dir: Path, checkpoints: Path, final: Path,
                    advice: str = "use --resume auto or another --output_dir") -> str | None:
    """The checkpoint ``--resume`` asks to continue from (None: start at step 0).

    auto: the newest complete ``checkpoint-N`` in ``checkpoints``, if any; no: none, and ``output_dir`` must
    not already hold checkpoints or a final model (else the error ends with ``advice``); anything else:
    that checkpoint directory, which must be complete.
    """
    if resume == "auto":
        return last_complete_checkpoint(checkpoints)
    last = None
    if checkpoints.is_dir():
        found = [(int(m.group(1)), e) for e in checkpoints.iterdir() if (m := CHECKPOINT_NAME.match(e.name))]
        last = str(max(found)[1]) if found else None
    if resume == "no":
        held = []
        if final.exists():
            held.append(f"{output_dir} already exists and holds a finished run (its final model: {final})")
        if last is not None:
            held.append(f"{'and' if held else output_dir} already holds checkpoints ({last})")
        if held:
            raise ChatflowError(f"{' '.join(held)}; {advice}")
        return None
    if not Path(resume, "trainer_state.json").is_file():
        raise ChatflowError(f"--resume {resume}: not a Trainer checkpoint (no trainer_state.json); "
                            f"give auto, no or a checkpoint directory")
    problem = checkpoint_problem(resume)
    if problem is not None:
        raise ChatflowError(f"--resume {resume}: the checkpoint is incomplete ({problem}: its save was cut "
                            f"short); give an earlier one, or auto")
    return resume


HISTORY = "history"   # the record's list of changes made by resumed runs


@dataclass(frozen=True)
class RunRecord:
    """The run's settings file (JSON, written by rank 0) and the settings a resumed run must keep.

    ``invariants`` are the keys a resumed run must keep (which samples a step reads), ``why`` says so in the
    error; ``changeable`` are the keys that change the run's meaning (objective, learning-rate schedule, data),
    which a resumed run changes only when allowed by name (``--allow_change``); ``section`` is where they sit
    in the file (None: at the top level). A key the old record lacks (written by an older version) is looked
    up in its ``options``, else not compared. ``also_changeable`` are further names ``--allow_change`` takes, whose
    changes the trainer detects itself (``chatflow train``: mixture, global_batch). The record's ``history``
    lists every change a resumed run made.
    """

    path: Path
    invariants: tuple[str, ...]
    section: str | None = None
    why: str = ""
    changeable: tuple[str, ...] = ()
    also_changeable: tuple[str, ...] = ()

    def read(self) -> dict | None:
        if not self.path.is_file():
            return None
        try:
            record = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ChatflowError(f"{self.path}: unreadable run record ({exc})") from None
        if not isinstance(record, dict):
            raise ChatflowError(f"{self.path}: unreadable run record (not a JSON object)")
        return record

    def check(self, settings: Mapping[str, Any], advice: str = "use another --output_dir",
              allowed: Sequence[str] = ()) -> list[dict]:
        """Refuse to continue the recorded run when an invariant differs from ``settings``, or a changeable
        setting differs without being ``allowed``; return the allowed changes (``what``, ``old``, ``new``)."""
        self.check_names(allowed)
        changes = self.changes(settings, advice)
        self.refuse_unallowed(changes, allowed, advice)
        return changes

    def changes(self, settings: Mapping[str, Any], advice: str = "use another --output_dir") -> list[dict]:
        """The changeable settings ``settings`` change (``what``, ``old``, ``new``); an invariant that differs
        is refused."""
        record = self.read()
        if record is None:
            return []
        old = record.get(self.section, {}) if self.section else record
        fallback = record.get("options") if isinstance(record.get("options"), dict) else {}
        differing = {}
        for key in self.invariants + self.changeable:
            if key in old or key in fallback:
                before = old[key] if key in old else fallback[key]
                if not _same(before, settings.get(key)):
                    differing[key] = before
        changed = [describe_change(key, differing[key], settings.get(key)) for key in self.invariants if key in differing]
        if changed:
            why = f"; {self.why}" if self.why else ""
            raise ChatflowError(f"{self.path.parent}: cannot resume with different settings ({', '.join(changed)}"
                                f"{why}); {advice}")
        return [{"what": key, "old": differing[key], "new": settings.get(key)} for key in self.changeable
                if key in differing]

    def refuse_unallowed(self, changes: Sequence[Mapping], allowed: Sequence[str],
                         advice: str = "use another --output_dir") -> None:
        refused = [c for c in changes if c["what"] not in allowed]
        if refused:
            shown = ", ".join(describe_change(c["what"], c["old"], c["new"]) for c in refused)
            raise ChatflowError(f"{self.path.parent}: resuming would change the run's meaning ({shown}); pass "
                                f"--allow_change {' '.join(c['what'] for c in refused)} to change it from this step "
                                f"on (recorded in {self.path.name}'s {HISTORY}), or {advice}")

    def check_names(self, allowed: Sequence[str]) -> None:
        check_change_names(allowed, self.changeable + self.also_changeable)

    def history(self) -> list[dict]:
        record = self.read() or {}
        history = record.get(HISTORY)
        return list(history) if isinstance(history, list) else []

    def write(self, record: Mapping[str, Any], step: int | None = None, changes: Sequence[Mapping] = ()) -> None:
        """Write ``record``, keeping the old record's ``history`` (or the one ``record`` holds) and appending
        ``changes`` made at ``step``."""
        history = list(record[HISTORY]) if isinstance(record.get(HISTORY), list) else self.history()
        now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        history += [{"step": step, "what": c["what"], "old": c["old"], "new": c["new"], "time": now} for c in changes]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(self.path, encoding="utf-8") as handle:
            json.dump(dict(record, **{HISTORY: history}), handle, indent=2, default=str)


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON stores them (tuples and lists alike)."""
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


@dataclass(frozen=True)
class RunStart:
    """Where a run starts: the checkpoint to continue from (None: step 0) and its step, whether
    the output directory holds the finished run (only ever true under ``--resume auto``), and the
    allowed changes of meaning this session makes (for :meth:`RunRecord.write`)."""

    checkpoint: str | None
    step: int
    finished: bool
    changes: tuple = ()


def start_run(resume: str, output_dir: Path, checkpoints: Path, final: Path, finished_marker: Path,
              record: RunRecord, settings: Mapping[str, Any], elsewhere: str = "another --output_dir",
              allowed: Sequence[str] = ()) -> RunStart:
    """Apply ``--resume`` to ``output_dir``: find the checkpoint, tell whether the run has finished
    (``finished_marker``, a file of the final model, exists), and check the record (invariants, and
    changes of meaning against ``allowed``) when there is a run to continue or to leave alone. ``elsewhere``
    ends the errors: where else to train."""
    checkpoint = find_checkpoint(resume, output_dir, checkpoints, final, f"use --resume auto or {elsewhere}")
    finished = resume == "auto" and finished_marker.is_file()
    changes: list = []
    record.check_names(allowed)
    if checkpoint is not None or finished:
        changes = record.check(settings, f"use {elsewhere}", allowed)
    if checkpoint is not None and not finished:
        check_loadable(checkpoint, Path(checkpoint).parent)
    if checkpoint is not None and not finished and is_main_process():   # said even under --quiet
        print(f"{output_dir}: resuming from {checkpoint} (step {checkpoint_step(checkpoint)})", file=sys.stderr,
              flush=True)
    return RunStart(checkpoint, checkpoint_step(checkpoint) if checkpoint is not None else 0, finished,
                    tuple(changes))


def quiet_libraries() -> None:
    """``--quiet``: no progress bars and no info or warning lines from transformers, huggingface_hub and datasets
    (if imported: chatflow never imports it itself); chatflow's own warnings and the resume line stay."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    with contextlib.suppress(ImportError):
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "datasets" in sys.modules:      # never imported only for this
        sys.modules["datasets"].disable_progress_bars()
        sys.modules["datasets"].logging.set_verbosity_error()


def allow_change_help(names: Sequence[str], record_name: str) -> str:
    """The help of ``--allow_change`` (the same in every command that trains)."""
    return (f"when resuming, let these settings change the run's meaning from the checkpoint's step on: "
            f"{', '.join(names)} (each change is appended to {record_name}'s history); without it a resumed run "
            f"that changes one of them is refused")


# ---------------------------------------------------------------------------------------------
# The run directory: one writer, marked as chatflow's


@contextlib.contextmanager
def run_directory(output_dir: Path, kind: OutputKind, replace: bool = False) -> Iterator[None]:
    """Hold ``output_dir``'s lock for the block (rank 0; other ranks do nothing), with ``output_dir`` a ``kind``
    run folder of the project (:func:`chatflow_plugin.outputs.output_folder`: a folder chatflow did not write is
    used only if it holds none of the run's entries). ``replace``: delete it first (``--force``), which only a
    run directory of this kind holding only its own entries may be."""
    if not is_main_process():
        yield
        return
    with output_folder(output_dir, kind, replace=replace, advice="give the run another --output_dir"):
        yield


# ---------------------------------------------------------------------------------------------
# Log


def _clean(value: Any) -> Any:
    """JSON-safe numbers: numpy scalars as Python numbers, NaN and infinities as null."""
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class RunLog:
    """A JSONL log (every record) and, per record ``kind`` listed in ``csv_files``, a CSV view of
    that kind's records (one row each, a column per key seen). A record whose keys the CSV already has columns for
    is appended to it (a kill may cut that row short, as it may the JSONL's last line; the next
    :meth:`restart_at` rewrites both); one with a new key rewrites the CSV atomically. Rewriting on every add would
    cost time growing with the run (0.3 s per log line at 10,000 lines).

    Every record added also goes to each of ``sinks`` (the console's lines, the experiment trackers), exactly as
    written. :meth:`restart_at` drops the records after a resumed step (and any ``summary``), so the log never
    holds two histories; a line cut short by a crash is dropped with them. ``change`` records (the run's
    history of changes) are dropped from the resumed step on: the checkpoint's own history says which
    changes at that step hold, and the trainer logs them again.
    """

    def __init__(self, path: Path, csv_files: Mapping[str, Path] | None = None, sinks: Sequence = ()):
        self.path = Path(path)
        self.csv_files = dict(csv_files or {})
        self.records: list[dict] = []
        self.sinks = list(sinks)    # objects with log(record): the console, the experiment trackers
        self._columns: dict[str, list[str]] = {}     # per CSV kind: its columns as last written

    def restart_at(self, step: int) -> None:
        self.records = []
        if self.path.is_file():
            for _, record in read_jsonl(self.path, on_bad_line="yield"):   # a line cut by a crash is dropped
                if not isinstance(record, dict) or record.get("kind") == "summary":
                    continue
                if record.get("step", 0) < step or (record.get("step", 0) == step and record.get("kind") != "change"):
                    self.records.append(record)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(self.path, encoding="utf-8") as handle:
            for record in self.records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        for kind in self.csv_files:
            self._write_csv(kind)

    def add(self, record: Mapping[str, Any]) -> None:
        record = {k: _clean(v) for k, v in record.items()}
        self.records.append(record)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        kind = record.get("kind")
        if kind in self.csv_files:
            row = {k: v for k, v in record.items() if k != "kind"}
            columns = self._columns.get(kind)
            if columns is not None and set(row) <= set(columns) and self.csv_files[kind].is_file():
                append_csv_row(self.csv_files[kind], columns, row)
            else:
                self._write_csv(kind)
        for sink in self.sinks:
            sink.log(record)

    def _write_csv(self, kind: str) -> None:
        rows = [{k: v for k, v in r.items() if k != "kind"} for r in self.records if r.get("kind") == kind]
        write_csv(self.csv_files[kind], rows)
        self._columns[kind] = csv_columns(rows)


# ---------------------------------------------------------------------------------------------
# Saving


class SavesTokenizerFiles:
    """Mixin for a ``transformers.Trainer`` subclass: ``tokenizer_files`` go into every directory it saves
    a model to (each ``checkpoint-N/`` and ``save_model``'s), before the model, and so does the run state
    ``run_state()`` returns (``chatflow_state.json``, :mod:`chatflow_plugin.data.runstate`), when set."""

    tokenizer_files: TokenizerFiles | None = None
    run_state: Callable[[], dict] | None = None

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        folder = output_dir if output_dir is not None else self.args.output_dir
        if self.tokenizer_files is not None and self.args.should_save:
            self.tokenizer_files.write(folder)
        if self.run_state is not None and self.args.should_save:
            Path(folder).mkdir(parents=True, exist_ok=True)
            write_state(Path(folder) / STATE_FILE, **self.run_state())
        super().save_model(output_dir, _internal_call)


def save_final_model(trainer, final: Path, record_name: str | None = None,
                     record: Mapping[str, Any] | None = None) -> None:
    """The trained model (with the trainer's tokenizer files) as ``final``, complete or not at all.

    Every rank calls this (a sharded model is gathered for the save); the model is written under a
    temporary name, then rank 0 adds ``record`` as ``record_name`` and renames the directory into place
    (an older ``final`` is replaced only then).
    """
    partial = final.with_name(f".{final.name}.partial")
    main = trainer.is_world_process_zero()
    if main and partial.exists():
        shutil.rmtree(partial)
    trainer.save_model(str(partial))
    if not main:
        return
    if record_name is not None:
        (partial / record_name).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    replace_directory(partial, final)
