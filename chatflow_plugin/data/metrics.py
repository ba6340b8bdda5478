"""Per-group training loss: what each mixture group's samples cost the model since the last log line.

Every host (the HF Trainer, the TencentPretrain adapter) feeds the same meter, once per micro-batch,
with each row's summed token loss and its number of loss-bearing tokens; at a log step every
data-parallel rank calls :meth:`GroupLossMeter.reduce_and_reset` (the sums are added over the group
in one collective), and a group's loss is its token-weighted mean over all ranks and micro-batches
of the interval, the same quantity as the overall loss restricted to that group's rows.

torch is imported only when a meter is used, so the data package stays importable without it.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

AllReduce = Callable[[Any], None]   # sums a tensor in place over the data-parallel group


class GroupLossMeter:
    """Sums of token losses and token counts per mixture group, kept (float64) on the training device."""

    def __init__(self, group_names: Sequence[str]):
        self.group_names = list(group_names)
        self._sums = None              # (2, groups): loss sum, tokens; allocated on the first add

    def add(self, group, row_loss, row_tokens) -> None:
        """One micro-batch: ``group`` (B,) group index, ``row_loss`` (B,) summed token loss and
        ``row_tokens`` (B,) loss-bearing tokens of each row (torch tensors)."""
        import torch

        device = row_loss.device
        if self._sums is None or self._sums.device != device:
            self._sums = torch.zeros(2, len(self.group_names), dtype=torch.float64, device=device)
        rows = torch.stack([row_loss.detach().to(torch.float64), row_tokens.detach().to(device, torch.float64)])
        self._sums.index_add_(1, group.to(device), rows)

    def reduce_and_reset(self, all_reduce: AllReduce | None = None) -> tuple[list[float | None], list[int]]:
        """(mean loss per group, None for a group without tokens; tokens per group) since the last
        call, summed over ranks by ``all_reduce`` (every rank must call it, with or without tokens)."""
        import torch

        n = len(self.group_names)
        packed = torch.zeros(2 * n, dtype=torch.float64) if self._sums is None else self._sums.reshape(-1).clone()
        if all_reduce is not None:
            all_reduce(packed)
        loss, tokens = packed[:n].tolist(), packed[n:].tolist()
        self._sums = None
        return [l / t if t > 0 else None for l, t in zip(loss, tokens)], [int(t) for t in tokens]


def data_parallel_sum(group=None, world_size: int | None = None) -> AllReduce | None:
    """An in-place sum over the data-parallel process ``group`` (None: the default group), moving the
    tensor to the device the backend needs (CUDA for NCCL, else CPU); None when there is nothing to
    reduce over (no initialised process group, or a world of one)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return None
    if (world_size if world_size is not None else dist.get_world_size(group)) <= 1:
        return None

    def reduce(tensor) -> None:
        moved = tensor.to(_backend_device(group))
        dist.all_reduce(moved, group=group)
        tensor.copy_(moved)

    return reduce


def _backend_device(group=None):
    import torch
    import torch.distributed as dist

    if dist.get_backend(group) == "nccl" and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def first_rank_value(value: Any) -> Any:
    """The first rank's ``value`` on every rank (a decision taken from numbers each rank computed, such as the
    adaptive mixture's, must be one decision); ``value`` itself outside a distributed run."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
