"""Where a TencentPretrain run is: the step and sample count to resume at, and the log line (per-group
loss comes from :mod:`chatflow_plugin.data.metrics`).

The host's trainer restarts its step counter at 1 on ``--resume_from_checkpoint`` and its stock
dataloader keeps no position. The plugin records, next to every checkpoint it saves, the step and
the number of global samples consumed (``chatflow_state.json``); on resume it reads the checkpoint
DeepSpeed loads (the tag in ``<dir>/latest``, which the host names after the step) and continues
at that sample. A checkpoint without the record (saved by the stock trainer) falls back to
``step = int(tag)`` and ``samples = step * global batch``.

The record is written last, after every rank's DeepSpeed files (``save_checkpoint`` ends in a barrier), so
it also marks a checkpoint complete: when ``latest`` names a tag a kill or a full disk cut short (or
``latest`` itself is empty), :func:`resume_tag` picks the newest complete tag before it, with a warning, and
the launcher makes DeepSpeed load that one. A tag must name a folder inside the checkpoint folder.

The record also carries the run's settings that change its meaning (objective, learning-rate schedule, data:
:data:`MEANING_KEYS`) and the run's ``history``, the host's counterpart of the HF trainers' run record: a
resumed run that changes one of them is refused unless ``--allow_change`` names it, and the change is then
appended to the history that every later checkpoint carries (:func:`settings_changes`).
"""
from __future__ import annotations

import json
import os
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ...checkpoints.tensor_io import check_tag
from ...files import atomic_file
from ...errors import ChatflowError

STATE_FILE = "chatflow_state.json"
STATE_SUFFIX = ".chatflow.json"      # beside a non-DeepSpeed checkpoint file O-<step>
# what a resumed run may change only with --allow_change (recorded in the history); total_steps may change
# (a run continued for longer: the schedule spans the new length) and is recorded without asking
MEANING_KEYS = ("target", "response_only_loss", "learning_rate", "scheduler", "warmup", "dataset")


@dataclass(frozen=True)
class RunPosition:
    steps_done: int          # host steps (micro-batches per rank) already trained
    samples_done: int        # global samples already consumed
    origin: str              # where the numbers come from, for the log
    state: dict | None = field(default=None, compare=False)   # the record resumed from, if any


def write_state(path: str | os.PathLike, step: int, samples_done: int, micro_batch_size: int,
                world_size: int, dataset: str, settings: Mapping[str, Any] | None = None,
                history: Sequence[Mapping] | None = None) -> None:
    state = {"step": int(step), "samples_done": int(samples_done), "micro_batch_size": int(micro_batch_size),
             "world_size": int(world_size), "dataset": str(dataset)}
    if settings is not None:
        state["settings"] = dict(settings)
    if history is not None:
        state["history"] = list(history)
    with atomic_file(path, mode="w") as handle:
        handle.write(json.dumps(state, indent=2) + "\n")


def read_state(path: str | os.PathLike) -> dict | None:
    path = Path(path)
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        int(state["step"]), int(state["samples_done"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ChatflowError(f"{path}: unreadable chatflow run state ({exc}); delete it and pass --start_step") from None
    return state


def deepspeed_tag(checkpoint_dir: str | os.PathLike) -> str:
    """The tag DeepSpeed's ``latest`` file in ``checkpoint_dir`` names (checked to lie inside it)."""
    latest = Path(checkpoint_dir) / "latest"
    if not latest.is_file():
        raise ChatflowError(f"{checkpoint_dir}: no 'latest' file, so the step to resume at is unknown "
                            f"(is this a DeepSpeed checkpoint directory?)")
    tag = latest.read_text(encoding="utf-8").strip()
    if tag:
        check_tag(tag, Path(checkpoint_dir), latest)
    return tag


def tag_complete(folder: Path) -> bool:
    """A DeepSpeed tag folder holds a whole checkpoint: the plugin's record (written after every rank's files),
    or, saved by the stock trainer, a readable model-states file."""
    if (folder / STATE_FILE).is_file():
        return True
    states = sorted(folder.glob("*model_states.pt"))
    return bool(states) and all(zipfile.is_zipfile(p) for p in states)


def resume_tag(checkpoint_dir: str | os.PathLike, warn: bool = True) -> str:
    """The tag to resume from: ``latest``'s when it is complete, else the newest complete tag before it (by
    step number), said on stderr when ``warn``; none complete is an error."""
    folder = Path(checkpoint_dir)
    tag = deepspeed_tag(folder)
    if tag and (folder / tag).is_dir() and tag_complete(folder / tag):
        return tag
    limit = int(tag) if tag.isdigit() else None
    steps = sorted((int(e.name) for e in folder.iterdir() if e.name.isdigit() and e.is_dir()
                    and (limit is None or int(e.name) < limit) and tag_complete(e)), reverse=True)
    why = ("'latest' is empty (its save was cut short)" if not tag else
           f"tag {tag} is {'missing' if not (folder / tag).is_dir() else 'incomplete (its save was cut short)'}")
    if not steps:
        raise ChatflowError(f"{checkpoint_dir}: {why}, and no complete earlier checkpoint is there to resume from")
    if warn:
        print(f"warning: {checkpoint_dir}: {why}; resuming from the complete checkpoint {steps[0]} instead",
              file=sys.stderr)
    return str(steps[0])


def resume_position(global_batch: int, resume_from_checkpoint: str | None = None, start_step: int | None = None,
                    pretrained_model_path: str | None = None) -> RunPosition:
    """Steps and samples already done when this run starts.

    ``start_step`` (explicit) wins; otherwise a DeepSpeed ``resume_from_checkpoint`` tells; otherwise 0.
    """
    if start_step is not None and start_step > 0:
        state = read_state(f"{pretrained_model_path}{STATE_SUFFIX}") if pretrained_model_path else None
        if state is not None and int(state["step"]) == start_step:
            return RunPosition(start_step, int(state["samples_done"]), f"{pretrained_model_path}{STATE_SUFFIX}",
                               state)
        return RunPosition(start_step, start_step * global_batch, "--start_step")
    if resume_from_checkpoint:
        tag = resume_tag(resume_from_checkpoint, warn=False)    # the launcher warned already
        state_path = Path(resume_from_checkpoint) / tag / STATE_FILE
        state = read_state(state_path)
        if state is not None:
            return RunPosition(int(state["step"]), int(state["samples_done"]), str(state_path), state)
        try:
            step = int(tag)
        except ValueError:
            raise ChatflowError(f"{resume_from_checkpoint}: checkpoint tag {tag!r} is not a step number and "
                                f"has no {STATE_FILE}; pass --start_step") from None
        return RunPosition(step, step * global_batch, f"{resume_from_checkpoint}/latest (tag {tag})")
    return RunPosition(0, 0, "start")


def settings_changes(state: Mapping | None, settings: Mapping[str, Any], allowed: Sequence[str],
                     step: int, where: str) -> list[dict]:
    """The history a resumed run carries on: the resumed record's, plus this run's changes of ``settings``
    made at ``step`` (each of :data:`MEANING_KEYS` only when ``allowed``; ``total_steps`` always)."""
    unknown = sorted(set(allowed) - set(MEANING_KEYS))
    if unknown:
        raise ChatflowError(f"--allow_change {' '.join(unknown)}: not a setting a resumed run may change (those "
                            f"are: {', '.join(MEANING_KEYS)})")
    history = list((state or {}).get("history") or [])
    old = (state or {}).get("settings")
    if not isinstance(old, dict):
        return history      # a record without settings (an older plugin, the stock trainer): nothing to compare
    changed = {k: old[k] for k in tuple(MEANING_KEYS) + ("total_steps",)
               if k in old and json.dumps(old[k]) != json.dumps(settings.get(k))}
    refused = [k for k in changed if k in MEANING_KEYS and k not in allowed]
    if refused:
        shown = ", ".join(f"{k}: {changed[k]!r} -> {settings.get(k)!r}" for k in refused)
        raise ChatflowError(f"{where}: resuming would change the run's meaning ({shown}); pass --allow_change "
                            f"{' '.join(refused)} to change it from step {step + 1} on (recorded in the history "
                            f"every later checkpoint's run state carries), or start a new run")
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return history + [{"step": step, "what": k, "old": changed[k], "new": settings.get(k), "time": now}
                      for k in changed]


def format_report(step: int, total_steps: int, tokens_per_second: float, loss: float,
                  group_names: Sequence[str], group_losses: Sequence[float | None] | None,
                  probabilities: Sequence[float]) -> str:
    """The host's LM log line, then per-group loss and the current mixture weights."""
    line = f"| {step:8d}/{total_steps:8d} steps| {tokens_per_second:8.2f} tokens/s| loss {loss:7.2f}"
    if group_losses is not None:
        parts = [f"{name} {'-' if value is None else f'{value:.3f}'}" for name, value in zip(group_names, group_losses)]
        line += "| group loss: " + " ".join(parts)
    line += "| p: " + " ".join(f"{name} {p:.3f}" for name, p in zip(group_names, probabilities))
    return line
