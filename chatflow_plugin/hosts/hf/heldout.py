"""Held-out loss per group of an HF model, on the fixed windows of :class:`~chatflow_plugin.data.heldout.HeldOutSet`."""
from __future__ import annotations

import math

import torch

from ...data.heldout import HeldOutSet


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
