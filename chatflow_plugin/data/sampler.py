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

A run's mixture may change: a :class:`Revision` applies from a global sample on. Samples before it are
what they were; from it on the same rules run on the new schedule, groups and shares, with every
group's and source's count continuing from what the samples before it consumed (a source continues its
epoch's permutation, nothing is re-drawn), and the new schedule apportioning only the samples from the
revision on (no burst to make up for the past, unless ``catch_up`` asks for one, spread over that many
samples). The sampler is then a pure function of (revisions, shard sizes, seed, t).
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


@dataclass(frozen=True)
class Revision:
    """The mixture from global sample ``start`` on, until the next revision's start.

    ``schedule`` mixes K groups over the run's time t (its knots are run times, not times since ``start``);
    its group k is the run's group ``groups[k]``. It draws from the run's sources ``sources``, source
    ``sources[i]`` in schedule group ``source_group[i]`` with relative share ``shares[i]`` in it.
    ``catch_up`` > 0: over that many samples, also make up the difference between what the groups received
    before ``start`` and what this schedule would have given them from t = 0 (the groups must be the same
    as before); 0: the schedule apportions the samples from ``start`` on only.
    """

    start: int
    schedule: Schedule
    groups: Sequence[int]
    sources: Sequence[int]
    source_group: Sequence[int]
    shares: Sequence[float]
    catch_up: float = 0.0


class _Stretch:
    """A revision made ready to draw: its groups' sources and shares, its expected counts since its start,
    and the run's group and source counts before it."""

    def __init__(self, revision: Revision, n_groups: int, n_sources: int, group_before: np.ndarray,
                 source_before: np.ndarray):
        self.start = int(revision.start)
        self.schedule = revision.schedule
        self.groups = np.asarray(revision.groups, dtype=np.int64)
        k = revision.schedule.n_groups
        if len(self.groups) != k or len(set(self.groups.tolist())) != k or not (0 <= self.groups).all() \
                or not (self.groups < n_groups).all():
            raise ValueError(f"revision at {self.start}: groups must name {k} distinct run groups")
        sources = np.asarray(revision.sources, dtype=np.int64)
        source_group = np.asarray(revision.source_group, dtype=np.int64)
        shares = np.asarray(revision.shares, dtype=np.float64)
        if not len(sources) == len(source_group) == len(shares) or len(set(sources.tolist())) != len(sources) \
                or ((sources < 0) | (sources >= n_sources)).any():
            raise ValueError(f"revision at {self.start}: sources, their groups and shares must match, sources "
                             f"distinct run sources")
        self.members: list[np.ndarray] = []
        self.shares: list[np.ndarray] = []
        for g in range(k):
            sel = np.flatnonzero(source_group == g)
            if len(sel) == 0:
                raise ValueError(f"group {g} has no source")
            w = shares[sel]
            if (w < 0).any() or w.sum() <= 0:
                raise ValueError(f"group {g}: source shares must be non-negative and not all zero")
            self.members.append(sources[sel])
            self.shares.append(w / w.sum())
        self.group_before = group_before
        self.source_before = source_before
        self.debt, self.catch_up = self._debt(float(revision.catch_up))

    def _debt(self, catch_up: float) -> tuple[np.ndarray | None, float]:
        """What each group is owed (negative: ahead) against the schedule taken from t = 0, repaid linearly
        over ``catch_up`` samples; refused when a group ahead cannot wait it out (its rate would go negative)."""
        if catch_up <= 0:
            return None, 0.0
        have = self.group_before[self.groups]
        if have.sum() != self.start:
            raise ValueError(f"revision at {self.start}: catch-up needs the groups of the samples before it "
                             f"(only {int(have.sum())} of {self.start} samples are in its groups)")
        debt = self.schedule.expected_counts(float(self.start)) - have
        slowest = self.schedule.min_probabilities(self.start, self.start + catch_up)
        ahead = debt < 0
        if (slowest[ahead] * catch_up + debt[ahead] < -1e-9).any():
            need = float(np.max(-debt[ahead] / np.maximum(slowest[ahead], 1e-300)))
            raise ValueError(f"revision at {self.start}: catch-up over {catch_up:g} samples is too short for a "
                             f"group that is ahead by {float((-debt[ahead]).max()):.1f} samples (at least "
                             f"{need:.0f} samples needed)")
        return debt, catch_up

    def expected(self, x) -> np.ndarray:
        """Expected counts of the stretch's groups over its first x samples, shape (..., K)."""
        x = np.asarray(x, dtype=np.float64)
        counts = self.schedule.expected_counts(x + self.start, start=self.start)
        if self.debt is not None:
            counts = counts + self.debt * (np.minimum(x, self.catch_up) / self.catch_up)[..., None]
        return counts

    def rates(self, t) -> np.ndarray:
        """The stretch's groups' probabilities at run time t, catch-up included, shape (..., K)."""
        t = np.asarray(t, dtype=np.float64)
        p = self.schedule.probabilities(t)
        if self.debt is not None:
            p = p + self.debt * ((t - self.start) < self.catch_up)[..., None] / self.catch_up
        return p

    def counts(self, n: int) -> tuple[np.ndarray, list[np.ndarray]]:
        """The stretch's group counts (K,) and, per group, its members' counts over its first n samples."""
        _, before = nth_events(self.expected, np.array([n]), len(self.groups))
        per_group = []
        for g, count in enumerate(before[0]):
            _, member = nth_events(lambda x, w=self.shares[g]: np.asarray(x)[:, None] * w, np.array([count]),
                                   len(self.shares[g]))
            per_group.append(member[0])
        return before[0], per_group


class MixtureSampler:
    """Pure function (schedule, shard sizes, seed, t) -> (group, source, row, epoch).

    ``group_of_source[s]`` is the group of source s, ``source_rows[s]`` its number of windows and
    ``source_shares[s]`` its relative share inside its group (need not be normalised). A run whose mixture
    changes is built with :meth:`revised`.
    """

    def __init__(self, schedule: Schedule, group_of_source: Sequence[int], source_rows: Sequence[int],
                 source_shares: Sequence[float], seed: int = 0, permutation_cache: int = 16):
        k = schedule.n_groups
        revision = Revision(0, schedule, range(k), range(len(source_rows)), group_of_source, source_shares)
        self._build([revision], k, source_rows, seed, permutation_cache)

    @classmethod
    def revised(cls, revisions: Sequence[Revision], n_groups: int, source_rows: Sequence[int], seed: int = 0,
                permutation_cache: int = 16) -> "MixtureSampler":
        """A run of ``n_groups`` groups over sources of ``source_rows`` windows whose mixture is ``revisions``
        (the first from sample 0, starts increasing). Source s's window order is keyed by s, so a source keeps
        its index for the whole run."""
        sampler = cls.__new__(cls)
        sampler._build(list(revisions), n_groups, source_rows, seed, permutation_cache)
        return sampler

    def _build(self, revisions: list[Revision], n_groups: int, source_rows: Sequence[int], seed: int,
               permutation_cache: int) -> None:
        self.seed = int(seed)
        self.n_groups = int(n_groups)
        self.source_rows = np.asarray(source_rows, dtype=np.int64)
        if (self.source_rows <= 0).any():
            raise ValueError("every source needs at least one window")
        starts = [int(r.start) for r in revisions]
        if not starts or starts[0] != 0 or any(b <= a for a, b in zip(starts, starts[1:])):
            raise ValueError(f"revisions must start at sample 0 and then at increasing samples, got {starts}")
        self.starts = np.asarray(starts, dtype=np.int64)
        self.stretches: list[_Stretch] = []
        group_before = np.zeros(self.n_groups, dtype=np.int64)
        source_before = np.zeros(len(self.source_rows), dtype=np.int64)
        for i, revision in enumerate(revisions):
            stretch = _Stretch(revision, self.n_groups, len(self.source_rows), group_before.copy(),
                               source_before.copy())
            self.stretches.append(stretch)
            if i + 1 < len(revisions):
                groups, members = stretch.counts(starts[i + 1] - starts[i])
                group_before[stretch.groups] += groups
                for g, counts in enumerate(members):
                    source_before[stretch.members[g]] += counts
        self._perms: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._perm_cache = permutation_cache

    @property
    def schedule(self) -> Schedule:
        """The schedule of the last revision (the only one of a run that never changed)."""
        return self.stretches[-1].schedule

    def _stretch_of(self, t: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.starts, t, side="right") - 1

    # -- counts ---------------------------------------------------------------------------
    def group_counts(self, n: int) -> np.ndarray:
        """How many of the first n samples each group gets: exact, without drawing them."""
        stretch = self.stretches[int(self._stretch_of(np.array([n]))[0])]
        counts = stretch.group_before.copy()
        _, before = nth_events(stretch.expected, np.array([n - stretch.start]), len(stretch.groups))
        counts[stretch.groups] += before[0]
        return counts

    def probabilities(self, t) -> np.ndarray:
        """Each run group's sampling probability at sample t (0 for a group the mixture has not got then),
        shape (..., groups)."""
        t = np.asarray(t, dtype=np.float64)
        out = np.zeros(t.shape + (self.n_groups,))
        which = self._stretch_of(t)
        for i in np.unique(which):
            sel = which == i
            stretch = self.stretches[int(i)]
            rates = np.zeros(t[sel].shape + (self.n_groups,))
            rates[..., stretch.groups] = stretch.rates(t[sel])
            out[sel] = rates
        return out

    def source_counts(self, n: int) -> np.ndarray:
        """How many of the first n samples each source gets: exact (what :meth:`draw` would give), without
        drawing them: the counts before n's revision, then its groups' counts and the same rule inside each group."""
        stretch = self.stretches[int(self._stretch_of(np.array([n]))[0])]
        out = stretch.source_before.copy()
        _, members = stretch.counts(n - stretch.start)
        for g, counts in enumerate(members):
            out[stretch.members[g]] += counts
        return out

    # -- draws ----------------------------------------------------------------------------
    def draw(self, t) -> Draw:
        t = np.atleast_1d(np.asarray(t, dtype=np.int64))
        if (t < 0).any():
            raise ValueError("sample indices must be non-negative")
        group = np.empty_like(t)
        source = np.empty_like(t)
        source_local = np.empty_like(t)
        which = self._stretch_of(t)
        for i in np.unique(which):
            sel = which == i
            stretch = self.stretches[int(i)]
            local, counts = nth_events(stretch.expected, t[sel] - stretch.start, len(stretch.groups))
            group_local = counts[np.arange(len(local)), local]       # the group's count in this stretch so far
            src = np.empty_like(local)
            src_local = np.empty_like(local)
            for g in np.unique(local):
                gsel = local == g
                shares = stretch.shares[g]
                member, member_counts = nth_events(lambda x, w=shares: np.asarray(x)[:, None] * w,
                                                   group_local[gsel], len(shares))
                src[gsel] = stretch.members[g][member]
                src_local[gsel] = stretch.source_before[src[gsel]] + member_counts[np.arange(len(member)), member]
            group[sel] = stretch.groups[local]
            source[sel] = src
            source_local[sel] = src_local
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
