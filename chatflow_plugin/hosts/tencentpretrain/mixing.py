"""Where a TencentPretrain run is and which mixture it follows: the resume plan, held-out losses, adaptive updates.

The host's step is one micro-batch per rank; ``--accumulation_steps`` of them make an optimizer step, whose
global batch is ``--batch_size`` x data-parallel ranks x ``--accumulation_steps`` samples. A checkpoint's run
state (``chatflow_state.json``, :mod:`chatflow_plugin.data.runstate`) records the samples consumed, the layout,
the run's mixture history and the adaptive policy's state, so that a resumed run:

* continues at the exact sample, on any layout: with another batch size or number of ranks the host's step
  count is converted (optimizer steps done x the new accumulation), which needs a checkpoint saved at an
  optimizer step; another global batch needs ``--allow_change global_batch``;
* follows the checkpoint's mixture history, and with ``--allow_change mixture`` a new ``--mixture_config``
  from the checkpoint's sample on;
* replays the adaptive policy from its recorded state (``--heldout_dataset_path`` gives the held-out windows).

Every change is an entry of the state's ``history`` list (the host's counterpart of the HF run record's), and
a log line. Nothing here imports the host: :mod:`.classes` calls it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ...data.batches import MixtureDataset
from ...data.heldout import HeldOutSet
from ...data.revisions import ADAPTIVE, adaptive_update
from ...data.runstate import check_allowed, first_mixture, layout_changes, resume_mixture
from ...errors import ChatflowError
from .progress import MEANING_KEYS


@dataclass
class HostRun:
    """The run's mixture bookkeeping on one rank (``log``: the first rank's logger, else None)."""

    dataset: MixtureDataset
    layout: dict                          # micro_batch_size, gradient_accumulation_steps, world_size
    dataset_path: str
    log: Callable[[str], None] | None = None
    first: dict = field(default_factory=dict)
    changes: list[dict] = field(default_factory=list)
    adaptive: dict | None = None
    heldout: HeldOutSet | None = None
    settings: dict = field(default_factory=dict)   # what --allow_change guards (progress.MEANING_KEYS), its length
    tracker: Any = None                   # the first rank's experiment trackers (--tensorboard_dir), or None

    @property
    def global_batch(self) -> int:
        return self.layout["micro_batch_size"] * self.layout["world_size"] * self.layout["gradient_accumulation_steps"]

    def resume(self, steps_done: int, state: dict | None, allowed: list[str], mixture_config: str | None,
               catch_up: float, where: str) -> int:
        """Apply a checkpoint's run state (None: a fresh run, or a checkpoint without one); returns the host steps
        done in this run's layout. The dataset becomes the one the resumed run reads."""
        check_allowed(allowed, also=MEANING_KEYS)
        self.first = first_mixture(self.dataset.history)
        if state is None or state.get("mixture") is None:     # fresh, or a state from before histories were kept
            return steps_done
        state = dict(state, step=int(state["step"]))
        old_micro = state.get("micro_batch_size", self.layout["micro_batch_size"])
        old_world = state.get("world_size", self.layout["world_size"])
        old_accumulation = int(state.get("gradient_accumulation_steps", self.layout["gradient_accumulation_steps"]))
        new = layout_changes(state, self.layout, where, allowed)
        if old_micro * old_world != self.layout["micro_batch_size"] * self.layout["world_size"]:
            if steps_done % old_accumulation:
                raise ChatflowError(f"{where}: saved at step {steps_done}, inside an accumulation of {old_accumulation} "
                                    f"micro-batches; resume with the same --batch_size and number of ranks")
            steps_done = steps_done // old_accumulation * self.layout["gradient_accumulation_steps"]
        self.dataset, revised = resume_mixture(state, self.dataset, where, allowed,
                                               by=mixture_config or "the dataset's mixture", catch_up=catch_up,
                                               where=where)
        self.first = state["mixture"]
        self.changes = list(state.get("history", []))
        self.adaptive = state.get("adaptive")
        for entry in new + revised:
            self.record(entry)
        return steps_done

    def record(self, entry: dict) -> None:
        self.changes.append(entry)
        if self.tracker is not None:
            self.tracker.log({"kind": "change", **entry})
        if self.log is not None:
            old, new = entry["old"], entry["new"]
            if entry["what"] == "mixture" and entry.get("by") != ADAPTIVE:
                old, new = old.get("name"), new.get("name")
            self.log(f"chatflow: {entry['what']} changed at step {entry['step']} (sample {entry.get('sample')}): "
                     f"{old} -> {new}" + (f" by {entry['by']}" if entry.get("by") else ""))

    def state(self, step: int, samples_done: int) -> dict:
        """The run state a checkpoint at ``step`` records."""
        return {"step": int(step), "samples_done": int(samples_done), "global_batch": self.global_batch, **self.layout,
                "dataset": self.dataset_path, "mixture": self.first, "history": self.changes,
                "adaptive": self.adaptive, "settings": self.settings}

    # -- held-out losses and the adaptive policy ----------------------------------------------------
    def needs_heldout(self) -> bool:
        return self.dataset.history.designed.adaptive is not None

    def adaptive_due(self, samples_before: int, samples_after: int) -> bool:
        policy = self.dataset.history.designed.adaptive
        return policy is not None and policy.due(samples_before, samples_after)

    def adapt(self, step: int, samples: int, losses: dict[str, float], decide: Callable[[Any], Any]) -> None:
        """The policy's update after ``samples`` (host step ``step``) from held-out ``losses``: a revision from
        sample ``samples`` on when the factors change; ``step`` 0 only remembers the losses. ``decide`` makes the
        first rank's result everyone's."""
        if self.dataset.history.designed.adaptive is None:
            return
        self.adaptive, revision, entry = adaptive_update(self.dataset.history, self.adaptive, losses, samples, step,
                                                         decide)
        if revision is not None:
            self.dataset.revise(revision)
            self.record(entry)


@torch.no_grad()
def heldout_losses(model: torch.nn.Module, heldout: HeldOutSet, batch_size: int,
                   device: torch.device | None = None) -> dict[str, float]:
    """Mean token loss of the host's model on each group's held-out windows: ``model(src, tgt, seg)`` with
    ``seg`` the windows' loss mask, as in training (the stock ``lm`` target's batch mean weighted by its tokens,
    or the plugin target's row sums)."""
    was_training = model.training
    model.eval()
    out: dict[str, float] = {}
    try:
        for group, windows in heldout.windows.items():
            total, count = 0.0, 0
            for lo in range(0, len(windows), batch_size):
                tokens = torch.from_numpy(windows[lo:lo + batch_size])
                seg = torch.from_numpy(heldout.carries[group][lo:lo + batch_size].astype("int64"))
                src, tgt = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
                if device is not None:
                    src, tgt, seg = src.to(device), tgt.to(device), seg.to(device)
                result = model(src, tgt, seg)
                if isinstance(result, tuple):
                    total += float(result[1].sum())
                    count += int(result[2].sum())
                else:
                    tokens_here = int((seg > 0).sum())
                    total += float(result) * tokens_here
                    count += tokens_here
            out[group] = total / count if count else float("nan")
    finally:
        model.train(was_training)
    return out
