"""Where a TencentPretrain run is: the step and sample count to resume at, and the log line (per-group
loss comes from :mod:`chatflow_plugin.data.metrics`).

The host's trainer restarts its step counter at 1 on ``--resume_from_checkpoint`` and its stock
dataloader keeps no position. The plugin records, next to every checkpoint it saves, the run state
(``chatflow_state.json``, :mod:`chatflow_plugin.data.runstate`: the step, the global samples consumed, the
layout, the mixture history); on resume it reads the checkpoint DeepSpeed loads (the tag in ``<dir>/latest``,
which the host names after the step) and continues at that sample. A checkpoint without the record (saved by
the stock trainer) falls back to ``step = int(tag)`` and ``samples = step * samples per step``.

The run state is written last, after every rank's DeepSpeed files (``save_checkpoint`` ends in a barrier), so
it also marks a checkpoint complete: when ``latest`` names a tag a kill or a full disk cut short (or
``latest`` itself is empty), :func:`resume_tag` picks the newest complete tag before it, with a warning, and
the launcher makes DeepSpeed load that one. A tag must name a folder inside the checkpoint folder.

The state also carries the run's settings that change its meaning (objective, learning-rate schedule, data:
:data:`MEANING_KEYS`), the host's counterpart of the HF trainers' run record: a resumed run that changes one of
them is refused unless ``--allow_change`` names it, and the change is then appended to the history that every
later checkpoint carries (:func:`settings_changes`), with the mixture's and the layout's changes.
"""
from __future__ import annotations

import json
import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from ...checkpoints.tensor_io import check_tag
from ...data.revisions import change
from ...data.runstate import STATE_FILE, STATE_SUFFIX, read_state, write_state
from ...errors import ChatflowError
from ..zero import deepspeed_settings, refuse_world_change

ADVICE = "delete it and pass --start_step"
# what a resumed run may change only with --allow_change (recorded in the history); total_steps may change
# (a run continued for longer: the schedule spans the new length) and is recorded without asking
MEANING_KEYS = ("target", "response_only_loss", "learning_rate", "scheduler", "warmup", "warmup_steps", "dataset")


@dataclass(frozen=True)
class RunPosition:
    steps_done: int          # host steps (micro-batches per rank) already trained
    samples_done: int        # global samples already consumed
    origin: str              # where the numbers come from, for the log
    state: dict | None = None    # the checkpoint's run state, if it has one


def deepspeed_tag(checkpoint_dir: str | os.PathLike, universal: bool = False) -> str:
    """The tag DeepSpeed loads from ``checkpoint_dir`` when none is given: the ``latest`` file (``latest_universal``
    when the DeepSpeed config loads universal checkpoints)."""
    name = "latest_universal" if universal else "latest"
    latest = Path(checkpoint_dir) / name
    if not latest.is_file():
        raise ChatflowError(f"{checkpoint_dir}: no '{name}' file, so the step to resume at is unknown "
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


def _state_of_tag(checkpoint_dir: str | os.PathLike, universal: bool) -> tuple[Path, dict | None]:
    """The run state of the checkpoint DeepSpeed will load; a universal conversion (DeepSpeed's ds_to_universal
    copies only its own files) has the state of the checkpoint ``latest`` names, the one converted."""
    path = Path(checkpoint_dir) / deepspeed_tag(checkpoint_dir, universal) / STATE_FILE
    state = read_state(path, ADVICE)
    if state is None and universal and (Path(checkpoint_dir) / "latest").is_file():
        path = Path(checkpoint_dir) / deepspeed_tag(checkpoint_dir) / STATE_FILE
        state = read_state(path, ADVICE)
    return path, state


def check_deepspeed_world(checkpoint_dir: str, config_path: str | None, world: int) -> None:
    """Refuse, before the host builds the model, a DeepSpeed ZeRO checkpoint on another number of data-parallel
    ranks than it was saved with (DeepSpeed cannot repartition its optimizer state), saying how to convert it."""
    universal = deepspeed_settings(config_path)[1]
    if universal and (Path(checkpoint_dir) / "latest_universal").is_file():
        # DeepSpeed's conversion copies only its own files: the converted tag gets the state of the checkpoint it
        # was made from (the one 'latest' names when it is first loaded), so that it keeps it when 'latest' moves
        converted = Path(checkpoint_dir) / deepspeed_tag(checkpoint_dir, True) / STATE_FILE
        _, newest = _state_of_tag(checkpoint_dir, False) if (Path(checkpoint_dir) / "latest").is_file() else (None, None)
        state = read_state(converted, ADVICE)
        if state is None and newest is not None and converted.parent.is_dir():
            write_state(converted, **newest)
        elif state is not None and newest is not None and int(newest["step"]) > int(state["step"]):
            raise ChatflowError(f"{checkpoint_dir}: 'latest_universal' names a conversion of step {state['step']} but "
                                f"'latest' is at step {newest['step']}: drop \"load_universal\" from {config_path} (it "
                                f"was for the first resume on the new number of ranks)")
    if not (Path(checkpoint_dir) / "latest").is_file():
        return
    path, state = _state_of_tag(checkpoint_dir, False)
    if state is not None:
        refuse_world_change(path.parent, int(state.get("world_size", world)), world, config_path,
                            int(state["samples_done"]))


def resume_position(global_batch: int, resume_from_checkpoint: str | None = None, start_step: int | None = None,
                    pretrained_model_path: str | None = None, universal: bool = False) -> RunPosition:
    """Steps and samples already done when this run starts (``global_batch``: samples per host step, for a
    checkpoint without a run state).

    ``start_step`` (explicit) wins; otherwise a DeepSpeed ``resume_from_checkpoint`` tells; otherwise 0.
    """
    if start_step is not None and start_step > 0:
        path = f"{pretrained_model_path}{STATE_SUFFIX}"
        state = read_state(path, ADVICE) if pretrained_model_path else None
        if state is not None and int(state["step"]) == start_step:
            return RunPosition(start_step, int(state["samples_done"]), path, state)
        return RunPosition(start_step, start_step * global_batch, "--start_step")
    if resume_from_checkpoint:
        if universal:          # DeepSpeed reads 'latest_universal'
            tag = deepspeed_tag(resume_from_checkpoint, True)
            state_path, state = _state_of_tag(resume_from_checkpoint, True)
        else:
            tag = resume_tag(resume_from_checkpoint, warn=False)    # the launcher warned already
            state_path = Path(resume_from_checkpoint) / tag / STATE_FILE
            state = read_state(state_path, ADVICE)
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
    """This run's changes of ``settings`` against the resumed state's, made at ``step`` (each of
    :data:`MEANING_KEYS` only when ``allowed``, else refused; ``total_steps`` always), as history entries."""
    old = (state or {}).get("settings")
    if not isinstance(old, dict):
        return []      # a state without settings (the stock trainer's checkpoint): nothing to compare
    changed = {k: old[k] for k in tuple(MEANING_KEYS) + ("total_steps",)
               if k in old and json.dumps(old[k]) != json.dumps(settings.get(k))}
    refused = [k for k in changed if k in MEANING_KEYS and k not in allowed]
    if refused:
        shown = ", ".join(f"{k}: {changed[k]!r} -> {settings.get(k)!r}" for k in refused)
        raise ChatflowError(f"{where}: resuming would change the run's meaning ({shown}); pass --allow_change "
                            f"{' '.join(refused)} to change it from step {step + 1} on (recorded in the history "
                            f"every later checkpoint's run state carries), or start a new run")
    return [change(step, k, changed[k], settings.get(k)) for k in changed]


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
