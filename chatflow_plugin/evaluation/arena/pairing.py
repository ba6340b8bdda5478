"""Balanced pairing: which two anonymous models a new round gets, and which one sits on side A.

The pair is drawn uniformly among the pairs of available models with the fewest votes plus rounds in
progress, so every pair collects votes at the same pace (counts start from the votes file, so a restart
keeps the balance). The side is the order of that pair shown least often as (A, B), so position bias
(people prefer the left or the first answer) cancels out within every pair; ties are broken at random.
A round that ends without a vote (new round, closed page, failed model) gives its slot back; a round
left open (a page that vanished without notice) stops counting after ``open_seconds``.
"""
from __future__ import annotations

import itertools
import random
import threading
import time
from collections import Counter, defaultdict


class BalancedPairing:
    def __init__(self, models: list[str], votes: Counter | None = None, sides: Counter | None = None,
                 seed: int | None = None, open_seconds: float = 1800.0):
        if len(set(models)) != len(models) or len(models) < 2:
            raise ValueError(f"need at least two distinct model names, got {models}")
        self.models = list(models)
        self.votes: Counter = Counter({k: v for k, v in (votes or {}).items() if k <= set(models)})
        self.sides: Counter = Counter({k: v for k, v in (sides or {}).items() if set(k) <= set(models)})
        self.open_seconds = open_seconds
        self._open: defaultdict[frozenset, list[float]] = defaultdict(list)   # start times of open rounds
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def draw(self, available: list[str]) -> tuple[str, str]:
        """(model A, model B) for a new round among ``available`` models; the round is counted as open."""
        names = [m for m in self.models if m in set(available)]
        if len(names) < 2:
            raise ValueError("fewer than two models available")
        with self._lock:
            pairs = [frozenset(p) for p in itertools.combinations(names, 2)]
            now = time.monotonic()
            for p in pairs:
                self._open[p] = [t for t in self._open[p] if now - t < self.open_seconds]
            load = {p: self.votes[p] + len(self._open[p]) for p in pairs}
            fewest = min(load.values())
            pair = self._rng.choice([p for p in pairs if load[p] == fewest])
            x, y = sorted(pair)
            if self.sides[(x, y)] != self.sides[(y, x)]:
                a, b = (x, y) if self.sides[(x, y)] < self.sides[(y, x)] else (y, x)
            else:
                a, b = (x, y) if self._rng.random() < 0.5 else (y, x)
            self.sides[(a, b)] += 1
            self._open[pair].append(now)
            return a, b

    def open_rounds(self, a: str, b: str) -> int:
        with self._lock:
            return len(self._open[frozenset((a, b))])

    def close(self, a: str, b: str, voted: bool) -> None:
        """The round of (a, b) ended, with a vote or without (then its side assignment is taken back)."""
        pair = frozenset((a, b))
        with self._lock:
            if self._open[pair]:
                self._open[pair].pop(0)
            if voted:
                self.votes[pair] += 1
            elif self.sides[(a, b)] > 0:
                self.sides[(a, b)] -= 1
