"""``chatflow mixture``: check a mixture file, print its schedule, realised counts, and plot it (any shape, with
its knots); or show a run's mixture history (``--history RUN``: every revision and the step it took effect)."""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ChatflowError
from ..files import pyplot, save_figure
from .mixture import MixtureSpec
from ..options import option
from .revisions import MixtureHistory, load_mixture_file, write_history
from .runstate import find_state, history_of, read_state
from .sampler import realized_group_counts

if TYPE_CHECKING:
    from .batches import MixtureDataset


@dataclass
class MixtureOptions:
    mixture: str = option("", help="mixture file (JSON) or a packaged one's name (table1 ...; `chatflow resources`), "
                                   "or a history file (chatflow mixture --history RUN --export)",
                          positional=True, nargs="?", type=str)
    at: list = option(default_factory=list, repeatable=True, type=float,
                      help="print per-group probabilities at these training samples t (repeatable); "
                           "default: 0, every knot and the midpoints between knots")
    realized: int = option(0, help="also count the groups of the first N samples the sampler draws, "
                                   "next to the expected counts (0: skip)")
    dataset: str = option("", help="a preprocessed shard directory: with --realized, also report per-source "
                                   "samples and epochs (passes over each source) of the first N samples")
    plot: str = option("", help="draw p_k(t) with the schedule's knots (and a history's revisions) to this PNG file")
    until: float = option(0.0, help="end of the table and plot, in samples (0: 1.2 x the last knot or revision)")
    history: str = option("", help="show a run's mixture history instead of a file's: an HF run folder (chatflow "
                                   "train), one of its checkpoints, a TencentPretrain --output_model_path, or a "
                                   "chatflow_state.json")
    export: str = option("", help="with --history: write the run's mixture history as a history file, to re-run it "
                                  "as a fixed schedule (--mixture / --mixture_config accept it)")
    json: bool = option(False, help="print one JSON object instead of tables")


def _t_key(t: float) -> str:
    return str(int(t)) if float(t).is_integer() else repr(float(t))


def default_times(knots: np.ndarray, limit: int = 12) -> list[float]:
    """0, every knot and the midpoints between distinct knots, at most ``limit`` of them."""
    distinct = np.unique(knots)
    times = sorted(set(distinct.tolist()) | set(((distinct[1:] + distinct[:-1]) / 2).tolist()))
    if len(times) > limit:
        times = sorted(set(distinct[np.linspace(0, len(distinct) - 1, limit).round().astype(int)].tolist()))
    return times


def group_probabilities(history: MixtureHistory, t: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The run's groups (in order of appearance) and p_k(t) under the revision in force at each t (a group the
    mixture has not got then: 0; catch-up repayment not included)."""
    names: list[str] = []
    for revision in history.revisions:
        names += [g for g in revision.spec.group_names if g not in names]
    t = np.asarray(t, dtype=np.float64)
    out = np.zeros(t.shape + (len(names),))
    starts = np.array([r.sample for r in history.revisions])
    which = np.searchsorted(starts, t, side="right") - 1
    for i, revision in enumerate(history.revisions):
        sel = which == i
        if sel.any():
            columns = [names.index(g) for g in revision.spec.group_names]
            out[np.ix_(np.flatnonzero(sel), columns)] = revision.spec.schedule().probabilities(t[sel])
    return names, out


def describe(spec: MixtureSpec) -> str:
    """The schedule in one line: its shape, top-level keys and knots in samples."""
    params = ", ".join(f"{k} = {list(v) if isinstance(v, tuple) else v}" for k, v in spec.schedule_params.items())
    knots = spec.schedule().knots
    line = f"schedule {spec.schedule_shape} ({params}; times in {spec.schedule_unit})"
    if spec.schedule_unit == "tokens":
        line += f", knots at {[float(k) for k in knots]} samples of {spec.seq_length} tokens"
    return line


def schedule_report(spec: MixtureSpec, at: list[float], realized: int = 0) -> dict:
    schedule = spec.schedule()
    names = spec.group_names
    report: dict = {"at": {}, "unit": "samples", "shape": spec.schedule_shape,
                    "knots_samples": [float(k) for k in schedule.knots]}
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
    lines = [f"mixture {spec.name}: {len(names)} groups, {len(spec.sources)} sources (samples of {spec.seq_length} "
             f"tokens)", describe(spec)]
    if spec.adaptive is not None:
        lines.append(f"adaptive policy: {json.dumps(spec.adaptive.to_json())}")
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


def plot_schedule(history: MixtureHistory, path: str, until: float = 0.0, title: str = "") -> None:
    """p_k(t) as stacked areas, the knots of each revision's schedule as dashed lines and each revision as a
    solid line, labelled with what made it."""
    plt = pyplot()
    knots = [(k, r) for i, r in enumerate(history.revisions) for k in r.spec.schedule().knots
             if k >= r.sample and (i + 1 == len(history) or k < history.revisions[i + 1].sample)]
    last = max([r.sample for r in history.revisions] + [k for k, _ in knots])
    end = until or max(1.2 * last, 1.0)
    t = np.unique(np.concatenate([np.linspace(0, end, 600), [k for k, _ in knots if k <= end],
                                  np.nextafter([k for k, _ in knots if 0 < k <= end], -np.inf)]))
    names, p = group_probabilities(history, t)
    fig, ax = plt.subplots(figsize=(7.5, 4))
    ax.stackplot(t, p.T, labels=names, alpha=0.85)
    for k, revision in knots:
        if 0 < k <= end:
            ax.axvline(k, color="k", linestyle="--", linewidth=0.8)
            ax.text(k, 1.0, f" {k:g}", rotation=90, va="top", ha="right", fontsize=7)
    for revision in history.revisions[1:]:
        ax.axvline(revision.sample, color="k", linewidth=1.6)
        ax.text(revision.sample, 0.02, f" {revision.by or 'revision'} (step {revision.step})", rotation=90,
                va="bottom", fontsize=7)
    ax.set_xlim(0, end)
    ax.set_ylim(0, 1)
    spec = history.current
    ax.set_xlabel(f"training samples t (sequences of {spec.seq_length} tokens); dashed: knots")
    ax.set_ylabel("sampling probability p_k(t)")
    ax.set_title(title or f"{spec.name}: {spec.schedule_shape} schedule"
                 + (f", {len(history) - 1} revision(s)" if len(history) > 1 else ""))
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


# -- a run's history -----------------------------------------------------------------------------------

def history_report(run: str) -> dict:
    """A run's mixture revisions (with each group's probability where each took effect) and other changes."""
    path = find_state(run)
    state = read_state(path)
    history = history_of(state, str(path))
    if history is None:
        raise ChatflowError(f"{path}: this run state records no mixture history (written before histories were kept)")
    revisions = []
    for revision in history.revisions:
        names, p = group_probabilities(MixtureHistory(history.revisions[:history.revisions.index(revision) + 1]),
                                       np.array([float(revision.sample)]))
        revisions.append({"step": revision.step, "sample": revision.sample, "by": revision.by,
                          "mixture": revision.spec.name, "shape": revision.spec.schedule_shape,
                          "catch_up": revision.catch_up, "factors": revision.factors,
                          "p": {n: float(v) for n, v in zip(names, p[0])}})
    others = [e for e in state.get("history", []) if e.get("what") != "mixture"]
    return {"state": str(path), "step": int(state["step"]), "samples_done": int(state["samples_done"]),
            "revisions": revisions, "changes": others, "adaptive": state.get("adaptive")}


def format_history(report: dict) -> str:
    lines = [f"run state {report['state']}: step {report['step']}, {report['samples_done']} samples consumed", "",
             f"mixture revisions ({len(report['revisions'])}):"]
    for r in report["revisions"]:
        extra = f", catch-up over {r['catch_up']:g} samples" if r["catch_up"] else ""
        extra += f", factors {json.dumps({g: round(f, 4) for g, f in r['factors'].items()})}" if r["factors"] else ""
        lines.append(f"  step {r['step']:>7}  sample {r['sample']:>10}  by {r['by'] or '-'}: {r['mixture']} "
                     f"({r['shape']}){extra}")
        lines.append("      p at that sample: " + " ".join(f"{g} {v:.3f}" for g, v in r["p"].items()))
    if report["changes"]:
        lines += ["", "other changes:"]
        for c in report["changes"]:
            lines.append(f"  step {c.get('step'):>7}  {c.get('what')}: {c.get('old')!r} -> {c.get('new')!r}  "
                         f"({c.get('time', '')})")
    return "\n".join(lines)


def mixture_report(opts: MixtureOptions) -> None:
    """Print a mixture file's sampling probabilities p_k(t), the sampler's realised group counts next to the
    expected ones, per-source samples and epochs over a dataset, and optionally a plot of p_k(t) with the
    schedule's knots; or (--history RUN) a run's mixture revisions, the step and sample each took effect at,
    and its other recorded changes, optionally exported as a history file to re-run as a fixed schedule."""
    if bool(opts.mixture) == bool(opts.history):
        raise ChatflowError("give a mixture file or --history RUN (one of them)")
    if opts.export and not opts.history:
        raise ChatflowError("--export writes a run's history: give --history RUN")
    if opts.history:
        report = history_report(opts.history)
        history = history_of(read_state(report["state"]), report["state"])
        if opts.export:
            write_history(history.fixed(), opts.export)
        if opts.plot:
            plot_schedule(history, opts.plot, opts.until,
                          title=f"{history.current.name}: mixture history of {opts.history}")
        print(json.dumps(report) if opts.json else format_history(report))
        if opts.export and not opts.json:
            print(f"\nhistory written to {opts.export} (re-run it as a fixed schedule with --mixture)")
        return
    loaded = load_mixture_file(opts.mixture)
    history = loaded if isinstance(loaded, MixtureHistory) else MixtureHistory.start(loaded)
    spec = history.revisions[0].spec
    at = opts.at or default_times(spec.schedule().knots)
    report = schedule_report(spec, at, opts.realized)
    if len(history) > 1:
        report["revisions"] = [{"sample": r.sample, "step": r.step, "by": r.by} for r in history.revisions[1:]]
    if opts.dataset:
        from .batches import MixtureDataset
        from .shards import ShardSet

        report["sources"] = source_report(MixtureDataset(ShardSet(opts.dataset), spec=spec), opts.realized)
    if opts.plot:
        plot_schedule(history, opts.plot, opts.until)
    if opts.json:
        print(json.dumps(report))
    else:
        for warning in spec.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(format_report(spec, report))
        if len(history) > 1:
            print(f"\na history of {len(history)} mixtures: the tables are the first one's; the plot shows them all")
        if opts.plot:
            print(f"\nplot written to {opts.plot}")
