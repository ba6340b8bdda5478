"""``chatflow mixture``: check a mixture file, print its schedule, realised counts, and plot it."""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ChatflowError
from ..files import pyplot, save_figure
from .mixture import MixtureSpec, load_mixture
from ..options import option
from .sampler import realized_group_counts

if TYPE_CHECKING:
    from .batches import MixtureDataset


@dataclass
class MixtureOptions:
    mixture: str = option(help="mixture file (JSON)", positional=True)
    at: list = option(default_factory=list, repeatable=True, type=float,
                      help="print per-group probabilities at these training samples t; "
                           "default: 0, T_grow/2, T_grow")
    realized: int = option(0, help="also count the groups of the first N samples the sampler draws, "
                                   "next to the expected counts (0: skip)")
    dataset: str = option("", help="a preprocessed shard directory: with --realized, also report per-source "
                                   "samples and epochs (passes over each source) of the first N samples")
    plot: str = option("", help="draw p_k(t) over [0, 1.2 T_grow] to this PNG file")
    json: bool = option(False, help="print one JSON object instead of tables")


def _t_key(t: float) -> str:
    return str(int(t)) if float(t).is_integer() else repr(float(t))


def schedule_report(spec: MixtureSpec, at: list[float], realized: int = 0) -> dict:
    schedule = spec.schedule()
    names = spec.group_names
    report: dict = {"at": {}, "unit": "samples", "T_grow_samples": spec.t_grow_samples}
    for t in at:
        if t < 0:
            raise ChatflowError(f"--at must be >= 0, got {t:g}")
        p = schedule.probabilities(t)
        report["at"][_t_key(t)] = {name: float(v) for name, v in zip(names, p)}
    if realized:
        if realized < 0:
            raise ChatflowError(f"--realized must be >= 0, got {realized}")
        counts = realized_group_counts(schedule, realized)
        expected = schedule.expected_counts(realized)
        report["realized"] = {name: {"count": int(c), "expected": float(e)}
                              for name, c, e in zip(names, counts, expected)}
    return report


def source_report(ds: MixtureDataset, n: int) -> dict:
    """Per source of a dataset: samples among the first n (exact), its windows, and epochs (passes over it)."""
    counts = ds.sampler.source_counts(n)
    out = {}
    for s, name in enumerate(ds.source_names):
        windows = ds.source_shards[s].windows
        out[name] = {"samples": int(counts[s]), "windows": windows, "epochs": int(counts[s]) / windows}
    return out


def format_report(spec: MixtureSpec, report: dict) -> str:
    names = spec.group_names
    width = max(12, *(len(n) for n in names))
    lines = [f"mixture {spec.name}: {len(names)} groups, {len(spec.sources)} sources, "
             f"T_grow = {spec.t_grow:g} {spec.schedule_unit}"
             + (f" = {spec.t_grow_samples:g} samples of {spec.seq_length} tokens"
                if spec.schedule_unit == "tokens" else f" (samples of {spec.seq_length} tokens)")]
    header = f"{'t (samples)':>14} " + " ".join(f"{n:>{width}}" for n in names)
    lines += ["", "sampling probability p_k(t)", header]
    for t, probs in report["at"].items():
        lines.append(f"{t:>14} " + " ".join(f"{probs[n]:>{width}.4f}" for n in names))
    if "realized" in report:
        n = sum(v["count"] for v in report["realized"].values())
        lines += ["", f"first {n} samples: realised vs expected (integral of p_k)",
                  f"{'group':<{width}} {'count':>10} {'expected':>12} {'diff':>8}"]
        for name in names:
            r = report["realized"][name]
            lines.append(f"{name:<{width}} {r['count']:>10} {r['expected']:>12.2f} {r['count'] - r['expected']:>8.2f}")
    if "sources" in report:
        lines += ["", f"{'source':<24} {'samples':>10} {'windows':>10} {'epochs':>8}"]
        for name, r in report["sources"].items():
            lines.append(f"{name:<24} {r['samples']:>10} {r['windows']:>10} {r['epochs']:>8.2f}")
    return "\n".join(lines)


def plot_schedule(spec: MixtureSpec, path: str) -> None:
    plt = pyplot()
    schedule = spec.schedule()
    t = np.linspace(0, 1.2 * spec.t_grow_samples, 400)
    p = schedule.probabilities(t)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.stackplot(t, p.T, labels=spec.group_names, alpha=0.85)
    ax.axvline(spec.t_grow_samples, color="k", linestyle="--", linewidth=1)
    ax.text(spec.t_grow_samples, 0.02, " T_grow", va="bottom")
    ax.set_xlim(t[0], t[-1])
    ax.set_ylim(0, 1)
    ax.set_xlabel(f"training samples t (sequences of {spec.seq_length} tokens)")
    ax.set_ylabel("sampling probability p_k(t)")
    ax.set_title(f"{spec.name}: dynamic data sampler schedule")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def mixture_report(opts: MixtureOptions) -> None:
    """Print a mixture file's sampling probabilities p_k(t), the sampler's realised group counts next to the
    expected ones, per-source samples and epochs over a dataset, and optionally a plot of p_k(t)."""
    spec = load_mixture(opts.mixture)
    at = opts.at or [0.0, spec.t_grow_samples / 2, spec.t_grow_samples]
    report = schedule_report(spec, at, opts.realized)
    if opts.dataset:
        from .batches import MixtureDataset
        from .shards import ShardSet

        report["sources"] = source_report(MixtureDataset(ShardSet(opts.dataset), spec=spec), opts.realized)
    if opts.plot:
        plot_schedule(spec, opts.plot)
    if opts.json:
        print(json.dumps(report))
    else:
        for warning in spec.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(format_report(spec, report))
        if opts.plot:
            print(f"\nplot written to {opts.plot}")
