"""The mixture as torch data for the HuggingFace Trainer, in the sampler's order, rank-aware, resumable.

The Trainer normally shuffles, re-shards (``accelerator.prepare``) and, on resume, skips batches by
iterating over them. None of that is wanted here: the sampler already fixes global sample t, and
micro-batch i of rank r is :func:`~chatflow_plugin.data.sampler.rank_indices`. So the batch sampler below
yields those index lists directly, starting at the sample the checkpoint's run state says was consumed
(read after the Trainer has loaded its checkpoint): resume is exact and O(1), on any layout, and ranks never
overlap.
"""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import torch

from ...data.batches import MixtureDataset
from ...data.sampler import rank_indices


class MixtureTorchDataset(torch.utils.data.Dataset):
    """Map-style view of a :class:`MixtureDataset`: item t is global sample t.

    ``__getitems__`` (used by torch's DataLoader for a whole micro-batch) reads the batch in one
    vectorised sampler call instead of one call per sample.
    """

    def __init__(self, mixture: MixtureDataset, total_samples: int):
        self.mixture = mixture
        self.total_samples = int(total_samples)

    def __len__(self) -> int:
        return self.total_samples

    def __getitem__(self, t: int) -> dict[str, np.ndarray]:
        return self.mixture[int(t)]

    def __getitems__(self, indices: list[int]) -> list[dict[str, np.ndarray]]:
        batch = self.mixture.batch(np.asarray(indices, dtype=np.int64))
        return [{k: v[i] for k, v in batch.items()} for i in range(len(indices))]


def collate_windows(samples: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Stack samples into model inputs: ``input_ids`` = tokens[:-1], ``targets`` = tokens[1:],
    ``loss_mask`` per target position, ``group`` and global index ``t`` per row."""
    tokens = torch.from_numpy(np.stack([s["tokens"] for s in samples]).astype(np.int64))
    return {
        "input_ids": tokens[:, :-1].contiguous(),
        "targets": tokens[:, 1:].contiguous(),
        "loss_mask": torch.from_numpy(np.stack([s["loss_mask"] for s in samples])),
        "group": torch.from_numpy(np.asarray([s["group"] for s in samples], dtype=np.int64)),
        "t": torch.from_numpy(np.asarray([s["t"] for s in samples], dtype=np.int64)),
    }


class RankBatchSampler(torch.utils.data.Sampler):
    """Yields this rank's micro-batches for i in [start, total): ``first + rank_indices(i - start, B, rank, W)``.

    ``start_micro_batch`` and ``first_sample`` (the global sample micro-batch ``start`` begins at; default
    ``start * B * W``) are called at the start of every iteration, so a Trainer that has just restored
    ``global_step`` from a checkpoint resumes at exactly the next unseen sample, whatever the layout (world size,
    micro-batch) the checkpoint was written with. ``len()`` is the whole run, so the Trainer sees one epoch.
    """

    def __init__(self, micro_batch_size: int, total_micro_batches: int, rank: int = 0, world_size: int = 1,
                 start_micro_batch: Callable[[], int] | None = None, first_sample: Callable[[], int] | None = None):
        if micro_batch_size <= 0 or total_micro_batches <= 0:
            raise ValueError("micro_batch_size and total_micro_batches must be positive")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world of {world_size}")
        self.micro_batch_size = int(micro_batch_size)
        self.total = int(total_micro_batches)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.start_micro_batch = start_micro_batch or (lambda: 0)
        self.first_sample = first_sample

    def __len__(self) -> int:
        return self.total

    def __iter__(self) -> Iterator[list[int]]:
        start = int(self.start_micro_batch())
        first = int(self.first_sample()) if self.first_sample is not None else \
            start * self.micro_batch_size * self.world_size
        for i in range(start, self.total):
            yield (first + rank_indices(i - start, self.micro_batch_size, self.rank, self.world_size)).tolist()
