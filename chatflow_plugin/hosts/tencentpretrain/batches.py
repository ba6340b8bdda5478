"""Mixture batches in TencentPretrain's ``(src, tgt, seg)`` form, and which samples a rank reads.

The host's LM batches are ``src = window[:-1]``, ``tgt = window[1:]`` and ``seg`` = 1 where the
target carries loss, 0 elsewhere (its causal mask ignores ``seg``; its ``lm`` target keeps positions
with ``seg > 0``). The plugin adds a fourth tensor, each row's mixture group, for per-group loss.
"""
from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np
import torch

from ...data.sampler import rank_indices
from ...files import read_jsonl



class RankStream:
    """This data-parallel rank's micro-batches in the sampler's global order, as host batches.

    A run starts after ``samples_before`` global samples (0, or what a resumed checkpoint had
    consumed); its ``step``-th micro-batch on rank r is the core's
    :func:`~chatflow_plugin.data.sampler.rank_indices` of that step shifted by ``samples_before``:
    each step consumes ``micro_batch_size * world_size`` samples, rank r the r-th contiguous slice.
    Counting the offset in samples, not steps, keeps a resume exact even if the world size changes.
    """

    def __init__(self, dataset, micro_batch_size: int, rank: int, world_size: int, samples_before: int = 0):
        if micro_batch_size <= 0:
            raise ValueError(f"micro_batch_size must be positive, got {micro_batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside a world of {world_size}")
        self.dataset = dataset            # a MixtureDataset (``batch(indices)``)
        self.micro_batch_size = int(micro_batch_size)
        self.rank, self.world_size = int(rank), int(world_size)
        self.samples_before = int(samples_before)
        self.step = 0                     # micro-batches yielded since samples_before
        self.last_indices: np.ndarray | None = None

    @property
    def samples_done(self) -> int:
        """Global samples consumed by all ranks up to the last yielded micro-batch."""
        return self.samples_before + self.step * self.micro_batch_size * self.world_size

    def indices(self, step: int) -> np.ndarray:
        """Global sample indices this rank reads at the ``step``-th micro-batch of the run."""
        if self.samples_before < 0 or step < 0:
            raise ValueError(f"samples_before ({self.samples_before}) and step ({step}) must be >= 0")
        return self.samples_before + rank_indices(step, self.micro_batch_size, self.rank, self.world_size)

    def __iter__(self):
        while True:
            indices = self.indices(self.step)
            batch = self.dataset.batch(indices)
            self.step += 1
            self.last_indices = indices
            yield host_batch(batch)


def host_batch(batch: dict[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``MixtureDataset.batch`` output -> (src, tgt, seg, group) LongTensors of shapes (B, L) x3, (B,)."""
    tokens = torch.from_numpy(np.ascontiguousarray(batch["tokens"], dtype=np.int64))
    seg = torch.from_numpy(np.ascontiguousarray(batch["loss_mask"], dtype=np.int64))
    group = torch.from_numpy(np.ascontiguousarray(batch["group"], dtype=np.int64))
    return tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous(), seg, group


class SampleLog:
    """Appends one JSON line per step: which global samples this rank trained on (for audits).

    One file per rank (``PATH.rank<r>`` when the world has more than one rank). Lines are flushed
    as written so that an interrupted run still shows what it consumed.
    """

    def __init__(self, path: str | os.PathLike, rank: int, world_size: int):
        path = str(path)
        self.path = f"{path}.rank{rank}" if world_size > 1 else path
        parent = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(parent, exist_ok=True)
        self._handle = open(self.path, "a", encoding="utf-8")

    def write(self, step: int, indices: Sequence[int], groups: Sequence[int]) -> None:
        record = {"step": int(step), "samples": [int(i) for i in indices], "groups": [int(g) for g in groups]}
        self._handle.write(json.dumps(record) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def read_sample_log(path: str | os.PathLike) -> dict[int, list[int]]:
    """step -> sample indices, the last record of a step winning (a resumed run rewrites steps)."""
    out: dict[int, list[int]] = {}
    for _, record in read_jsonl(path):
        out[record["step"]] = record["samples"]
    return out
