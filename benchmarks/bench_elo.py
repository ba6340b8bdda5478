"""``chatflow elo``'s bootstrap: the vectorised fit (all resamples' Bradley-Terry MM iterations at once) next to the
implementation it replaced (one resample at a time, frozen below as it was at commit 8349559), same votes, same
seed, one run; and whether the intervals agree.

Cases: 10,000 votes between 20 models (ratings spread like an arena's, 10% ties), 1,000 resamples (the goal: under
1 s), and the 12 votes between two models of ``scripts/table3_elo.sh --tiny`` (--prior 1). Times are process CPU
seconds (steady on a shared machine) and wall seconds, best of --repeats.

    python benchmarks/bench_elo.py [--votes 10000 --models 20 --bootstrap 1000 --repeats 3]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chatflow_plugin.errors import ChatflowError  # noqa: E402
from chatflow_plugin.evaluation.elo import (bootstrap_ratings, pair_counts, to_elo_scale,  # noqa: E402
                                            votes_from_records)


# ---- the implementation replaced, as it was (one MM fit per resample) ----

def _reference_bradley_terry(wins, games, prior=0.0, tol=1e-10, max_iter=100_000):
    m = wins.shape[0]
    total = wins.sum(1) + prior / 2.0
    if prior <= 0:
        played = games.sum(1) > 0
        if np.any(total[played] <= 0) or np.any(total[played] >= games.sum(1)[played]):
            raise ChatflowError("a model never won or never lost")
    p = np.ones(m)
    for _ in range(max_iter):
        denom = (games / (p[:, None] + p[None, :])).sum(1) + prior / (p + 1.0)
        new = np.where(denom > 0, total / np.where(denom > 0, denom, 1.0), p)
        if prior <= 0:
            new = new / np.exp(np.mean(np.log(new)))
        if np.max(np.abs(np.log(new) - np.log(p))) < tol:
            p = new
            break
        p = new
    logp = np.log(p)
    return logp - logp.mean()


def reference_bootstrap(votes, bootstrap, prior=0.0, initial=1000.0, scale=400.0, seed=0):
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(bootstrap):
        weights = np.bincount(rng.integers(0, len(votes), len(votes)), minlength=len(votes)).astype(float)
        w, g = pair_counts(votes, weights)
        try:
            samples.append(to_elo_scale(_reference_bradley_terry(w, g, prior), initial, scale))
        except ChatflowError:
            continue
    return np.array(samples)


# ---- cases ----

def arena_votes(n: int, models: int, seed: int = 0, ties: float = 0.1) -> list[tuple[str, str, float]]:
    """Votes between ``models`` models whose true Elo ratings are spread like an arena's (sd 120)."""
    rng = np.random.default_rng(seed)
    true = rng.normal(1000.0, 120.0, models)
    out = []
    for _ in range(n):
        a, b = rng.choice(models, 2, replace=False)
        p_a = 1.0 / (1.0 + 10.0 ** ((true[b] - true[a]) / 400.0))
        s = 0.5 if rng.random() < ties else float(rng.random() < p_a)
        out.append((f"model-{a:02d}", f"model-{b:02d}", s))
    return out


def timed(function, repeats: int):
    best_cpu = best_wall = float("inf")
    for _ in range(repeats):
        c, w = time.process_time(), time.perf_counter()
        result = function()
        best_cpu, best_wall = min(best_cpu, time.process_time() - c), min(best_wall, time.perf_counter() - w)
    return result, best_cpu, best_wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--votes", type=int, default=10_000)
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each side (best is shown)")
    opts = parser.parse_args()
    cases = [(f"{opts.votes:,} votes, {opts.models} models, prior 0", arena_votes(opts.votes, opts.models), 0.0),
             ("12 votes, 2 models, prior 1 (table3_elo.sh --tiny)",
              [("tiny-chat-a", "tiny-chat-b", s) for s in (1, 0, 1, 1, 0.5, 0, 1, 0, 0, 1, 1, 0.5)], 1.0)]
    print(f"{opts.bootstrap} bootstrap resamples, seed 0; CPU / wall seconds, best of {opts.repeats}")
    print(f"{'case':<52} {'before CPU':>10} {'before wall':>11} {'now CPU':>8} {'now wall':>9} {'speed-up':>8} "
          f"{'resamples':>9} {'max |diff| (Elo)':>16}")
    for name, records, prior in cases:
        votes = votes_from_records(records)
        before, before_cpu, before_wall = timed(lambda: reference_bootstrap(votes, opts.bootstrap, prior), opts.repeats)
        now, now_cpu, now_wall = timed(lambda: bootstrap_ratings(votes, opts.bootstrap, prior), opts.repeats)
        same_shape = before.shape == now.shape
        diff = float(np.max(np.abs(before - now))) if same_shape and before.size else float("nan")
        print(f"{name:<52} {before_cpu:>10.2f} {before_wall:>11.2f} {now_cpu:>8.3f} {now_wall:>9.3f} "
              f"{before_wall / now_wall:>7.0f}x {len(now):>4}/{len(before):<4} {diff:>16.2e}")
        if not same_shape:
            print(f"  different resamples kept: {before.shape} before, {now.shape} now")


if __name__ == "__main__":
    main()
