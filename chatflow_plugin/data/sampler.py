"""The dynamic mixture sampler: global sample index t -> (group, source, row), a pure function.

Deterministic, error-minimising and random-access. Group k's j-th sample is due when its expected
count (the integral of p_k: ``Schedule.expected_counts`` of any shape in :mod:`schedule`) reaches
j + 1/2; sample t is the t-th due event of all groups in time order (ties: lower group index first).
This is the divisor (Sainte-Lague) method made time-varying, a stateless counterpart of Megatron-LM's
blended-dataset greedy: after any N samples every group's count is within a few samples of its
expected count, and no sequential state is needed: the t-th sample is found in O(K^2) work from t alone.

Inside a group the same rule, with constant shares (by default proportional to each source's
tokens), picks the source; a source's m-th sample is row ``perm_e[m mod R]`` of epoch
``e = m // R``, a fresh seeded permutation per epoch. Nothing depends on how many ranks read.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .schedule import Schedule

def _due_counts(cum: np.ndarray) -> np.ndarray:
    """Events due once expected counts reach ``cum``: floor(E + 1/2)."""
    return np.floor(cum + 0.5).astype(np.int64)


def nth_events(cumulative: Callable[[np.ndarray], np.ndarray], n, n_streams: int, chunk: int = 32768):
    """For each n: the stream of the n-th due event, and every stream's event count before it.

    ``cumulative(x)`` gives each stream's expected count after x samples, shape (len(x), K),
    nondecreasing in x and summing to x. Time is evaluated at whole samples only, so every query
    sees the same values and the event order is one consistent sequence. Events due at the same
    whole time are taken in stream order. Returns ``(stream (N,), counts_before (N, K))``.
    """
    n = np.atleast_1d(np.asarray(n, dtype=np.int64))
    streams = np.empty(len(n), dtype=np.int64)
    counts = np.empty((len(n), n_streams), dtype=np.int64)
    # sum_k floor(E_k(m) + 1/2) is within K/2 of m, so the n-th event is due at a whole time m in a
    # window of about K around n; evaluate the window and take the first m that has enough events.
    width = n_streams + 4
    offsets = np.arange(width + 1, dtype=np.int64)
    for lo in range(0, len(n), chunk):
        part = n[lo:lo + chunk]
        base = np.maximum(part - n_streams // 2 - 2, 0)
        grid = base[:, None] + offsets                       # (N, W+1) whole times
        due = _due_counts(cumulative(grid.reshape(-1).astype(np.float64))).reshape(len(part), width + 1, -1)
        total = due.sum(axis=2)
        enough = total >= (part + 1)[:, None]
        if not enough[:, 1:].any(axis=1).all() or enough[:, 0].any():  # pragma: no cover
            raise RuntimeError("sampler: expected counts do not sum to the sample count")
        m = enough.argmax(axis=1)                            # first whole time with enough events
        rows = np.arange(len(part))
        before = due[rows, m - 1]
        jumped = due[rows, m] > before
        rank = part - before.sum(axis=1)
        order = np.cumsum(jumped, axis=1) - 1
        hit = jumped & (order == rank[:, None])
        streams[lo:lo + chunk] = hit.argmax(axis=1)
        counts[lo:lo + chunk] = before + (jumped & (order < rank[:, None]))
    return streams, counts


def realized_group_counts(schedule: Schedule, n: int) -> np.ndarray:
    """How many of the first n samples each group gets: exact, without drawing them."""
    _, counts = nth_events(schedule.expected_counts, np.array([n]), schedule.n_groups)
    return counts[0]


@dataclass(frozen=True)
class Draw:
    """Where global samples come from (arrays, one entry per requested index)."""

    t: np.ndarray
    group: np.ndarray
    source: np.ndarray      # index into the sampler's source list
    row: np.ndarray         # window index inside the source
    epoch: np.ndarray       # how many times the source had been exhausted before this sample


class MixtureSampler:
    """Pure function (schedule, shard sizes, seed, t) -> (group, source, row, epoch).

    ``group_of_source[s]`` is the group of source s, ``source_rows[s]`` its number of windows and
    ``source_shares[s]`` its relative share inside its group (need not be normalised).
    """

    def __init__(self, schedule: Schedule, group_of_source: Sequence[int], source_rows: Sequence[int],
                 source_shares: Sequence[float], seed: int = 0, permutation_cache: int = 16):
        self.schedule = schedule
        self.seed = int(seed)
        self.group_of_source = np.asarray(group_of_source, dtype=np.int64)
        self.source_rows = np.asarray(source_rows, dtype=np.int64)
        shares = np.asarray(source_shares, dtype=np.float64)
        n_groups = schedule.n_groups
        if (self.source_rows <= 0).any():
            raise ValueError("every source needs at least one window")
        self.group_sources: list[np.ndarray] = []
        self.group_shares: list[np.ndarray] = []
        for g in range(n_groups):
            members = np.flatnonzero(self.group_of_source == g)
            if len(members) == 0:
                raise ValueError(f"group {g} has no source")
            w = shares[members]
            if (w < 0).any() or w.sum() <= 0:
                raise ValueError(f"group {g}: source shares must be non-negative and not all zero")
            self.group_sources.append(members)
            self.group_shares.append(w / w.sum())
        self._perms: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._perm_cache = permutation_cache

    # -- counts ---------------------------------------------------------------------------
    def group_counts(self, n: int) -> np.ndarray:
        """How many of the first n samples each group gets: exact, without drawing them."""
        return realized_group_counts(self.schedule, n)

    def source_counts(self, n: int) -> np.ndarray:
        """How many of the first n samples each source gets: exact (what :meth:`draw` would give), without
        drawing them: the group's count, then the same rule inside the group."""
        out = np.zeros(len(self.source_rows), dtype=np.int64)
        for g, count in enumerate(self.group_counts(n)):
            shares = self.group_shares[g]
            _, before = nth_events(lambda x, w=shares: np.asarray(x)[:, None] * w, np.array([count]), len(shares))
            out[self.group_sources[g]] = before[0]
        return out

    # -- draws ----------------------------------------------------------------------------
    def draw(self, t) -> Draw:
        t = np.atleast_1d(np.asarray(t, dtype=np.int64))
        if (t < 0).any():
            raise ValueError("sample indices must be non-negative")
        group, counts = nth_events(self.schedule.expected_counts, t, self.schedule.n_groups)
        group_local = counts[np.arange(len(t)), group]
        source = np.empty_like(t)
        source_local = np.empty_like(t)
        for g in np.unique(group):
            sel = group == g
            shares = self.group_shares[g]
            member, member_counts = nth_events(lambda x, w=shares: np.asarray(x)[:, None] * w,
                                               group_local[sel], len(shares))
            source[sel] = self.group_sources[g][member]
            source_local[sel] = member_counts[np.arange(len(member)), member]
        rows = self.source_rows[source]
        epoch = source_local // rows
        position = source_local % rows
        row = np.empty_like(t)
        for i, (s, e, p) in enumerate(zip(source.tolist(), epoch.tolist(), position.tolist())):
            row[i] = self._permutation(s, e)[p]
        return Draw(t=t, group=group, source=source, row=row, epoch=epoch)

    def _permutation(self, source: int, epoch: int) -> np.ndarray:
        key = (source, epoch)
        perm = self._perms.get(key)
        if perm is None:
            rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, source, epoch])))
            perm = rng.permutation(int(self.source_rows[source]))
            self._perms[key] = perm
            if len(self._perms) > self._perm_cache:
                self._perms.popitem(last=False)
        else:
            self._perms.move_to_end(key)
        return perm


def rank_indices(iteration: int, micro_batch_size: int, rank: int, world_size: int) -> np.ndarray:
    """Global sample indices of one rank's micro-batch at a data-parallel iteration.

    Iteration i consumes samples [i*B*W, (i+1)*B*W); rank r takes the r-th contiguous slice of B.
    The run's order is the same for any world size; only who reads each sample changes.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world of {world_size}")
    start = (iteration * world_size + rank) * micro_batch_size
    return np.arange(start, start + micro_batch_size, dtype=np.int64)
