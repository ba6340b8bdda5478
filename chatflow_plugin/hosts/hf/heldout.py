"""Held-out loss per group: the one number that is comparable across differently-mixed runs.

Training loss depends on what the mixture happens to draw; loss on fixed held-out windows does not.
The windows come from a shard directory built from documents kept out of training (same tokenizer,
same mixture groups); each group's first ``max_windows`` windows, in source order, are used by every
run, so all runs are scored on identical tokens.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ...errors import ChatflowError
from ...data.shards import ShardSet


class HeldOutSet:
    """Fixed evaluation windows per group: ``windows[g]`` (N, L+1) int64, ``carries[g]`` (N, L) bool."""

    def __init__(self, shards: ShardSet, max_windows: int = 64, groups: list[str] | None = None):
        if max_windows <= 0:
            raise ChatflowError(f"held-out windows per group must be positive, got {max_windows}")
        self.path = shards.path
        self.seq_length = shards.seq_length
        self.windows: dict[str, np.ndarray] = {}
        self.carries: dict[str, np.ndarray] = {}
        wanted = groups if groups is not None else shards.group_names
        for group in wanted:
            rows, masks = [], []
            for shard in shards.sources:
                if shard.group != group:
                    continue
                for row in range(shard.windows):
                    if len(rows) >= max_windows:
                        break
                    tokens, loss = shard.window(row)
                    rows.append(tokens.astype(np.int64))
                    masks.append(loss[1:])
            if rows:
                self.windows[group] = np.stack(rows)
                self.carries[group] = np.stack(masks)
        if not self.windows:
            raise ChatflowError(f"{shards.path}: no held-out windows for groups {wanted}")


@torch.no_grad()
def heldout_losses(model: torch.nn.Module, heldout: HeldOutSet, batch_size: int = 16,
                   device: torch.device | str = "cpu", autocast_dtype: torch.dtype | None = None) -> dict[str, float]:
    """Mean next-token loss (nats per target token) on each group's held-out windows."""
    was_training = model.training
    model.eval()
    out: dict[str, float] = {}
    try:
        for group, windows in heldout.windows.items():
            carries = heldout.carries[group]
            total, count = 0.0, 0
            for lo in range(0, len(windows), batch_size):
                tokens = torch.from_numpy(windows[lo:lo + batch_size]).to(device)
                mask = torch.from_numpy(carries[lo:lo + batch_size]).to(device)
                with torch.autocast(device_type=torch.device(device).type, dtype=autocast_dtype,
                                    enabled=autocast_dtype is not None):
                    logits = model(input_ids=tokens[:, :-1]).logits
                losses = torch.nn.functional.cross_entropy(
                    logits.float().reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1), reduction="none")
                total += float((losses * mask.reshape(-1)).sum())
                count += int(mask.sum())
            out[group] = total / count if count else math.nan
    finally:
        model.train(was_training)
    return out
