"""The sampler's cost per sample for every schedule shape and for a run whose mixture changed many times.

Baseline, in the same run: the paper's schedule (``linear_grow_hold``, Table 1's weights over 11 sources) drawn
by the sampler of commit 0d2c1fe, before shapes and revisions (read from git; skipped outside a checkout). Then
the current sampler on the same schedule, on it written as a two-knot piecewise schedule (identical arithmetic), on
a six-knot piecewise schedule with cosine ramps and a step, and on the paper's schedule revised 10 and 100 times
(e.g. an adaptive policy's updates): the cost of building the revised sampler (counts at every revision) and of
drawing, best of ``--repeat``.

    python benchmarks/bench_sampler.py [--draws 65536] [--repeat 3]
"""
from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chatflow_plugin.data.sampler import MixtureSampler, Revision  # noqa: E402
from chatflow_plugin.data.schedule import LinearGrowHold, Piecewise  # noqa: E402

ALPHA = [0.60, 0.05, 0.25, 0.05, 0.0, 0.05]
BETA = [0.15, 0.50, 0.0, 0.10, 0.20, 0.05]
GROUP_OF = [0, 0, 1, 1, 1, 2, 2, 3, 4, 4, 5]            # Table 1's 11 sources
ROWS = [400_000, 300_000, 900_000, 200_000, 100_000, 300_000, 50_000, 80_000, 120_000, 60_000, 200_000]
SHARES = [1.0] * len(ROWS)
T_GROW = 5_000_000


def schedules() -> dict:
    six = Piecewise([0, 1e6, 3e6, 3e6, 5e6, 6e6], np.array([ALPHA, ALPHA, [0.3, 0.3, 0.1, 0.1, 0.1, 0.1],
                                                            [0.2, 0.4, 0.0, 0.1, 0.25, 0.05], BETA, BETA]),
                    ["linear", "cosine", "linear", "cosine", "linear"])
    return {"linear_grow_hold (the paper's)": LinearGrowHold(ALPHA, BETA, T_GROW),
            "piecewise, the paper's two knots": Piecewise([0, T_GROW], np.array([ALPHA, BETA])),
            "piecewise, 6 knots, cosine + step": six}


def revised(n: int) -> list[Revision]:
    rng = np.random.default_rng(0)
    out = [Revision(0, LinearGrowHold(ALPHA, BETA, T_GROW), range(6), range(11), GROUP_OF, SHARES)]
    for i in range(1, n + 1):
        f = rng.uniform(0.5, 2.0, 6)
        out.append(Revision(i * 50_000, LinearGrowHold(np.array(ALPHA) * f, np.array(BETA) * f, T_GROW), range(6),
                            range(11), GROUP_OF, SHARES))
    return out


def old_sampler_class(commit: str = "0d2c1fe"):
    """The MixtureSampler and LinearGrowHold of ``commit``, imported from git into a temporary package."""
    folder = Path(tempfile.mkdtemp()) / "sampler_before"
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    for name in ("sampler", "schedule"):
        text = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:chatflow_plugin/data/{name}.py"],
                              capture_output=True, text=True, check=True).stdout
        (folder / f"{name}.py").write_text(text)
    sys.path.insert(0, str(folder.parent))
    return (importlib.import_module("sampler_before.sampler").MixtureSampler,
            importlib.import_module("sampler_before.schedule").LinearGrowHold)


def timed(function, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--draws", type=int, default=65536)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    t = np.arange(4_000_000, 4_000_000 + args.draws)           # in the middle of the run, within the last revision
    rows = []
    try:
        old_sampler, old_schedule = old_sampler_class()
        before = old_sampler(old_schedule(ALPHA, BETA, T_GROW), GROUP_OF, ROWS, SHARES, seed=1)
        rows.append(("paper's schedule, sampler of 0d2c1fe", 0.0, timed(lambda: before.draw(t), args.repeat)))
        assert (before.draw(t).row == MixtureSampler(LinearGrowHold(ALPHA, BETA, T_GROW), GROUP_OF, ROWS, SHARES,
                                                     seed=1).draw(t).row).all(), "the paper's order changed"
    except (OSError, subprocess.CalledProcessError):
        print("(no git checkout: the 0d2c1fe baseline is skipped)")
    for name, schedule in schedules().items():
        sampler = MixtureSampler(schedule, GROUP_OF, ROWS, SHARES, seed=1)
        rows.append((name, 0.0, timed(lambda: sampler.draw(t), args.repeat)))
    for n in (10, 100):
        build = timed(lambda: MixtureSampler.revised(revised(n), 6, ROWS, seed=1), args.repeat)
        sampler = MixtureSampler.revised(revised(n), 6, ROWS, seed=1)
        rows.append((f"paper's schedule revised {n} times", build, timed(lambda: sampler.draw(t), args.repeat)))
    base = rows[0][2]
    print(f"{args.draws} random-access draws at t = 4M, best of {args.repeat}; baseline: the first row")
    print(f"{'sampler':<40} {'build s':>9} {'draw us/sample':>15} {'vs baseline':>12}")
    for name, build, draw in rows:
        print(f"{name:<40} {build:>9.3f} {1e6 * draw / args.draws:>15.2f} {draw / base:>11.2f}x")


if __name__ == "__main__":
    main()
