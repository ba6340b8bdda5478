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

from ...files import read_jsonl


def rank_sample_indices(samples_before: int, step: int, micro_batch_size: int, rank: int,
                        world_size: int) -> np.ndarray:
    """Global sample indices a data-parallel rank reads at the ``step``-th micro-batch of this run.

    The run starts after ``samples_before`` samples (0, or what a resumed checkpoint had consumed);
    each step consumes ``micro_batch_size * world_size`` samples, rank r the r-th contiguous slice.
    Counting in samples, not steps, keeps a resume exact even if the world size changes.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside a world of {world_size}")
    if samples_before < 0 or step < 0 or micro_batch_size <= 0:
        raise ValueError("samples_before and step must be >= 0 and micro_batch_size > 0")
    start = samples_before + (step * world_size + rank) * micro_batch_size
    return np.arange(start, start + micro_batch_size, dtype=np.int64)


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
