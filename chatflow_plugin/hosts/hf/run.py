"""Run plumbing shared by the HuggingFace trainers (``chatflow train`` and ``chatflow clo-train``).

A run lives in one output directory: a run record (the settings, written by rank 0), a JSONL log
(plus CSV views), Trainer checkpoints (``checkpoint-N/``) and the final model, which appears only
complete. This module owns what both trainers do with it:

* which process writes (:func:`world`: rank 0 of ``RANK``/``WORLD_SIZE`` as set by torchrun);
* ``--resume auto|no|PATH`` (:func:`start_run`): continue from the newest checkpoint, refuse to
  start over a run, or continue from a given checkpoint; a run that has finished is reported as such
  (each trainer decides what a re-run of it means); settings that decide what the continued run
  computes must equal the record's (:class:`RunRecord`, the keys are per trainer), unless ``--allow_change``
  names them: then the change is recorded in the record's ``history`` list (entries
  ``{"step", "what", "old", "new", "time"}``, :func:`chatflow_plugin.data.revisions.change`);
* the log (:class:`RunLog`), cut back to the resumed step so that it holds one history;
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

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from ...data.runstate import STATE_FILE, refuse_changes, write_state
from ...errors import ChatflowError
from ...files import atomic_file, read_jsonl, replace_directory, write_csv
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


# ---------------------------------------------------------------------------------------------
# Where a run starts


def checkpoint_step(checkpoint: str | os.PathLike) -> int:
    """The optimizer step a Trainer checkpoint was saved at."""
    path = Path(checkpoint, "trainer_state.json")
    try:
        return int(json.loads(path.read_text(encoding="utf-8"))["global_step"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ChatflowError(f"{path}: unreadable Trainer state ({exc})") from None


def find_checkpoint(resume: str, output_dir: Path, checkpoints: Path, final: Path,
                    advice: str = "use --resume auto or another --output_dir") -> str | None:
    """The checkpoint ``--resume`` asks to continue from (None: start at step 0).

    auto: the newest ``checkpoint-N`` in ``checkpoints``, if any; no: none, and ``output_dir`` must not
    already hold checkpoints or a final model (else the error ends with ``advice``); anything else:
    that checkpoint directory.
    """
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    if resume == "auto":
        return last
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
    return resume


@dataclass(frozen=True)
class RunRecord:
    """The run's settings file (JSON, written by rank 0) and the settings a resumed run must keep.

    ``invariants`` are the keys that decide what the continued run computes (which samples a step
    reads, what the loss is), ``why`` says so in the error; ``section`` is where they sit in the file
    (None: at the top level). The file's ``history`` list records the changes a resumed run was allowed.
    """

    path: Path
    invariants: tuple[str, ...]
    section: str | None = None
    why: str = ""

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

    def check(self, settings: Mapping[str, Any], advice: str = "use another --output_dir") -> None:
        """Refuse to continue the recorded run when an invariant differs from ``settings``."""
        record = self.read()
        if record is None:
            return
        old = record.get(self.section, {}) if self.section else record
        changed = [(key, old.get(key), settings.get(key)) for key in self.invariants if old.get(key) != settings.get(key)]
        refuse_changes(self.path.parent, changed, why=self.why, advice=advice)

    def write(self, record: Mapping[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(self.path, encoding="utf-8") as handle:
            json.dump(record, handle, indent=2, default=str)


@dataclass(frozen=True)
class RunStart:
    """Where a run starts: the checkpoint to continue from (None: step 0) and its step, and whether
    the output directory holds the finished run (only ever true under ``--resume auto``)."""

    checkpoint: str | None
    step: int
    finished: bool


def start_run(resume: str, output_dir: Path, checkpoints: Path, final: Path, finished_marker: Path,
              record: RunRecord, settings: Mapping[str, Any], elsewhere: str = "another --output_dir") -> RunStart:
    """Apply ``--resume`` to ``output_dir``: find the checkpoint, tell whether the run has finished
    (``finished_marker``, a file of the final model, exists), and check the record's invariants when
    there is a run to continue or to leave alone. ``elsewhere`` ends the errors: where else to train."""
    checkpoint = find_checkpoint(resume, output_dir, checkpoints, final, f"use --resume auto or {elsewhere}")
    finished = resume == "auto" and finished_marker.is_file()
    if checkpoint is not None or finished:
        record.check(settings, f"use {elsewhere}")
    return RunStart(checkpoint, checkpoint_step(checkpoint) if checkpoint is not None else 0, finished)


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
    that kind's records (one row each, a column per key seen, rewritten atomically on every add).

    :meth:`restart_at` drops the records after a resumed step (and any ``summary``), so the log never
    holds two histories; a line cut short by a crash is dropped with them. ``change`` records (the run's
    history of changes) are dropped from the resumed step on: the checkpoint's own history says which
    changes at that step hold, and the trainer logs them again.
    """

    def __init__(self, path: Path, csv_files: Mapping[str, Path] | None = None):
        self.path = Path(path)
        self.csv_files = dict(csv_files or {})
        self.records: list[dict] = []

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
        if record.get("kind") in self.csv_files:
            self._write_csv(record["kind"])

    def _write_csv(self, kind: str) -> None:
        write_csv(self.csv_files[kind], [{k: v for k, v in r.items() if k != "kind"}
                                         for r in self.records if r.get("kind") == kind])


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
