"""Where a TencentPretrain run is: the step and sample count to resume at, and the log line (per-group
loss comes from :mod:`chatflow_plugin.data.metrics`).

The host's trainer restarts its step counter at 1 on ``--resume_from_checkpoint`` and its stock
dataloader keeps no position. The plugin records, next to every checkpoint it saves, the step and
the number of global samples consumed (``chatflow_state.json``); on resume it reads the checkpoint
DeepSpeed loads (the tag in ``<dir>/latest``, which the host names after the step) and continues
at that sample. A checkpoint without the record (saved by the stock trainer) falls back to
``step = int(tag)`` and ``samples = step * global batch``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ...files import atomic_file
from ...errors import ChatflowError

STATE_FILE = "chatflow_state.json"
STATE_SUFFIX = ".chatflow.json"      # beside a non-DeepSpeed checkpoint file O-<step>


@dataclass(frozen=True)
class RunPosition:
    steps_done: int          # host steps (micro-batches per rank) already trained
    samples_done: int        # global samples already consumed
    origin: str              # where the numbers come from, for the log


def write_state(path: str | os.PathLike, step: int, samples_done: int, micro_batch_size: int,
                world_size: int, dataset: str) -> None:
    state = {"step": int(step), "samples_done": int(samples_done), "micro_batch_size": int(micro_batch_size),
             "world_size": int(world_size), "dataset": str(dataset)}
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
    """The tag DeepSpeed loads from ``checkpoint_dir`` when none is given: the ``latest`` file."""
    latest = Path(checkpoint_dir) / "latest"
    if not latest.is_file():
        raise ChatflowError(f"{checkpoint_dir}: no 'latest' file, so the step to resume at is unknown "
                            f"(is this a DeepSpeed checkpoint directory?)")
    return latest.read_text(encoding="utf-8").strip()


def resume_position(global_batch: int, resume_from_checkpoint: str | None = None, start_step: int | None = None,
                    pretrained_model_path: str | None = None) -> RunPosition:
    """Steps and samples already done when this run starts.

    ``start_step`` (explicit) wins; otherwise a DeepSpeed ``resume_from_checkpoint`` tells; otherwise 0.
    """
    if start_step is not None and start_step > 0:
        state = read_state(f"{pretrained_model_path}{STATE_SUFFIX}") if pretrained_model_path else None
        if state is not None and int(state["step"]) == start_step:
            return RunPosition(start_step, int(state["samples_done"]), f"{pretrained_model_path}{STATE_SUFFIX}")
        return RunPosition(start_step, start_step * global_batch, "--start_step")
    if resume_from_checkpoint:
        tag = deepspeed_tag(resume_from_checkpoint)
        state_path = Path(resume_from_checkpoint) / tag / STATE_FILE
        state = read_state(state_path)
        if state is not None:
            return RunPosition(int(state["step"]), int(state["samples_done"]), str(state_path))
        try:
            step = int(tag)
        except ValueError:
            raise ChatflowError(f"{resume_from_checkpoint}: checkpoint tag {tag!r} is not a step number and "
                                f"has no {STATE_FILE}; pass --start_step") from None
        return RunPosition(step, step * global_batch, f"{resume_from_checkpoint}/latest (tag {tag})")
    return RunPosition(0, 0, "start")


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
