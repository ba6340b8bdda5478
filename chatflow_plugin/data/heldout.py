"""Held-out windows per group: the one measure that is comparable across differently-mixed runs.

Training loss depends on what the mixture happens to draw; loss on fixed held-out windows does not.
The windows come from a shard directory built from documents kept out of training (same tokenizer,
same mixture groups); each group's first ``max_windows`` windows, in source order, are used by every
run, so all runs are scored on identical tokens. Each backend computes the losses with its own model
(``hosts/hf/heldout.py``, the TencentPretrain adapter's trainer); an adaptive mixture (:mod:`.adaptive`)
reads them.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..errors import ChatflowError
from .shards import ShardSet


class HeldOutSet:
    """Fixed evaluation windows per group: ``windows[g]`` (N, L+1) int64, ``carries[g]`` (N, L) bool.

    ``groups``: the group names to evaluate (their sources: the held-out dataset's sources of that group), or
    a mapping group -> source names (a training mixture's grouping; a group none of whose sources the held-out
    dataset has falls back to the dataset's own group of that name); None: every group of the dataset.
    """

    def __init__(self, shards: ShardSet, max_windows: int = 64,
                 groups: Sequence[str] | Mapping[str, Sequence[str]] | None = None):
        if max_windows <= 0:
            raise ChatflowError(f"held-out windows per group must be positive, got {max_windows}")
        self.path = shards.path
        self.seq_length = shards.seq_length
        self.windows: dict[str, np.ndarray] = {}
        self.carries: dict[str, np.ndarray] = {}
        wanted = groups if groups is not None else shards.group_names
        for group in wanted:
            named = [s for s in shards.sources if isinstance(wanted, Mapping) and s.name in wanted[group]]
            rows, masks = [], []
            for shard in named or [s for s in shards.sources if s.group == group]:
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
            raise ChatflowError(f"{shards.path}: no held-out windows for groups {list(wanted)}")
