"""What an HF run prints: one readable line per logging step above the Trainer's progress bar (with its ETA), and
nothing from DeepSpeed unless DeepSpeed is used.

A line is made from the record ``log.jsonl`` gets (the console is one more sink of the run's log, as the experiment
trackers are: :mod:`chatflow_plugin.hosts.trackers`), numbers as numbers::

    step 40/200 | loss 3.4120 | lr 2.87e-04 | 0.41 s/step 10,240 tok/s | en_corpus 3.1000 (p 0.52, 0.12 ep) ...
    step 40/200 | held-out en_corpus 3.2100 zh_corpus 3.7000 ...
    step 40/200 | change mixture: ...

per group: the group's training loss since the last line, its probability p_k(t) at the step's last sample and the
epochs of its data read so far (the sampler's count of its samples over its windows). The Trainer's own
printing of the log dictionaries (numbers as quoted strings, its ``epoch``, which is not the data's) is turned
off.

``accelerate`` imports DeepSpeed whenever it is installed (to recognise a DeepSpeed engine when it unwraps a
model), and DeepSpeed prints a warning as it loads; :func:`deepspeed_only_if_used` keeps it out of runs that do
not use it.
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from typing import Any, Callable, Iterator, Mapping

SKIP = {"kind", "step", "epoch"}


def number(key: str, value: Any) -> str:
    """A value as a person reads it: integers with thousands separators, learning rates in e-notation, losses
    with four decimals, shares with three."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "nan"
    if isinstance(value, int) or (float(value).is_integer() and key in ("samples", "tokens")):
        return f"{int(value):,}"
    if "learning_rate" in key or key == "lr":
        return f"{value:.2e}"
    if key.startswith(("p_", "mix_", "share")):
        return f"{value:.3f}"
    if key.startswith("epochs_"):
        return f"{value:.2f}"
    return f"{value:.4f}" if abs(value) < 1e4 else f"{value:,.1f}"


class Console:
    """A log sink printing each record as one line (``write``: the Trainer's bar's ``write``, which keeps the bar
    below the lines). ``groups``: the mixture's groups, shown in that order (None: no groups)."""

    def __init__(self, total_steps: int, groups: list[str] | None = None, write: Callable[[str], None] | None = None):
        self.total = int(total_steps)
        self.groups = list(groups or [])
        self.write = write or _tqdm_write
        self.last: tuple[float, int, float | None] | None = None     # (time, step, tokens) of the previous line

    def start(self, step: int, tokens: float | None = None) -> None:
        """Where timing starts: the run's first step (a resumed run's checkpoint step)."""
        self.last = (time.time(), int(step), tokens)

    def log(self, record: Mapping[str, Any]) -> None:
        kind = record.get("kind") or "train"
        line = getattr(self, f"_{kind}", self._other)(record)
        if line:
            self.write(line)

    def _head(self, record: Mapping[str, Any]) -> str:
        return f"step {record.get('step')}/{self.total}"

    def _train(self, record: Mapping[str, Any]) -> str:
        parts = [self._head(record)]
        if "loss" in record:
            parts.append(f"loss {number('loss', record['loss'])}")
        if record.get("learning_rate") is not None:
            parts.append(f"lr {number('learning_rate', record['learning_rate'])}")
        parts.append(self._speed(record))
        shown = set(SKIP) | {"loss", "learning_rate", "samples", "tokens", "grad_norm"}
        if self.groups:
            cells = []
            for g in self.groups:
                extra = ", ".join(f"{label} {number(key, record[key])}" for label, key in
                                  (("p", f"p_{g}"), ("ep", f"epochs_{g}")) if key in record)
                cells.append(f"{g} {number('loss', record.get(f'loss_{g}'))}" + (f" ({extra})" if extra else ""))
                shown |= {f"loss_{g}", f"p_{g}", f"epochs_{g}", f"mix_{g}"}
            parts.append(" ".join(cells))
        rest = [f"{k} {number(k, v)}" for k, v in record.items() if k not in shown]
        if rest:
            parts.append(" ".join(rest))
        return " | ".join(p for p in parts if p)

    def _speed(self, record: Mapping[str, Any]) -> str:
        now, step, tokens = time.time(), record.get("step"), record.get("tokens")
        text = ""
        if self.last is not None and isinstance(step, int) and step > self.last[1]:
            seconds = now - self.last[0]
            text = f"{seconds / (step - self.last[1]):.2f} s/step"
            if tokens is not None and self.last[2] is not None and seconds > 0:
                text += f" {number('tokens', int((tokens - self.last[2]) / seconds))} tok/s"
        if isinstance(step, int):
            self.last = (now, step, tokens)
        return text

    def _heldout(self, record: Mapping[str, Any]) -> str:
        cells = [f"{k[len('heldout_'):]} {number('loss', v)}" for k, v in record.items() if k.startswith("heldout_")]
        return f"{self._head(record)} | held-out " + " ".join(cells)

    def _change(self, record: Mapping[str, Any]) -> str:
        detail = {k: v for k, v in record.items() if k not in ("kind", "step", "what", "time")}
        return f"{self._head(record)} | change {record.get('what')}: " + json.dumps(detail, default=str)[:300]

    def _summary(self, record: Mapping[str, Any]) -> str:
        return ""        # the command prints its summary itself

    def _other(self, record: Mapping[str, Any]) -> str:
        cells = [f"{k} {number(k, v)}" for k, v in record.items() if k not in SKIP]
        return f"{self._head(record)} | " + " ".join(cells)


def _tqdm_write(line: str) -> None:
    from tqdm import tqdm

    tqdm.write(line)


def progress_bar_callback():
    """The Trainer's progress bar (with its ETA) without its printing of the log dictionaries."""
    from transformers import ProgressCallback

    class BarOnly(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            pass

    return BarOnly


def show_progress(trainer, console: Console | None) -> None:
    """Replace the Trainer's printing callbacks: its bar without the dictionaries (``console`` prints the lines),
    or nothing at all when ``console`` is None (--quiet)."""
    from transformers import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if console is not None:
        trainer.add_callback(progress_bar_callback())


@contextlib.contextmanager
def deepspeed_only_if_used(used: bool) -> Iterator[None]:
    """While active, ``accelerate`` does not import DeepSpeed (and DeepSpeed prints nothing) unless ``used``."""
    if used:
        yield
        return
    try:
        from accelerate.utils import other
    except ImportError:
        yield
        return
    original = other.is_deepspeed_available
    other.is_deepspeed_available = lambda: False
    try:
        yield
    finally:
        other.is_deepspeed_available = original
