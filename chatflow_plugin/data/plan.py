"""``chatflow plan``: what a training run of a mixture will do, before it runs.

Given a mixture (and, better, its shard directory), a global batch size and a length (optimizer steps, tokens,
or a compute budget in GPU-hours turned into tokens by the throughput model), the plan gives the samples and
tokens the run consumes, the step at which the schedule reaches its final mixture (``T_grow`` for the paper's
shape: ``t_grow_reached_at_step``), the mixture at the first and the last sample, per group and per source what
is drawn and how many passes (epochs) over its data that is, what looks wrong, and a GPU-hours estimate. A run
that ends before its schedule does is refused unless ``--allow_partial_schedule``. It works through the
:class:`~.schedule.Schedule` interface only (``probabilities``, ``expected_counts``, ``knots``), so it plans any
registered shape.

**Epochs.** With ``--dataset_dir`` each source's and group's epochs are measured (its windows in the manifest).
Without one, ``--data_tokens`` states the size of the data (the paper: "about 50GB data containing 8B tokens")
and ``--data_sizes NAME=SIZE`` how it splits over the groups (relative sizes, e.g. Table 1's GB); without
``--data_sizes`` each group is assumed to hold data in proportion to what the run draws from it. A group read
more than ``--max_epochs`` times is warned about.

**Readings of the schedule's times.** A mixture file gives its times in its ``schedule_unit``: packed training
samples (windows of ``seq_length`` tokens; the paper's unit: its sampler "constructs training batches" and
gamma(t) is "the sampling rate for the t-th sample") or tokens. ``--schedule_unit records`` is our own
interpretation, kept by name and never the default: it reads the times as *raw records before packing*
(documents, sentence pairs, conversations): the growth phase ends once the sampler has fed ``T_grow`` records. The times are converted to samples with the dataset's own figures (``manifest.json``):
source s holds ``records_s / windows_s`` records per sample; group k, drawing its sources by their shares w_s,
``rho_k = sum_s w_s records_s / windows_s``; over the growth phase the sampler draws fraction ``f_k`` of its
samples from group k (``f_k = E_k(T) / T`` at the last knot T, a property of the shape that does not depend on
the unit), so it feeds ``rho = sum_k f_k rho_k`` records per sample and ``T_grow`` records are
``T_grow / rho`` samples. Without a dataset, ``--records_per_sample`` gives rho. The sampling probabilities
stay what the file says, over packed samples; only the time axis is read differently. ``--write_mixture``
writes the converted mixture (times in samples), the file a trainer then reads.

Per-group and per-source counts are exact (the sampler's own apportionment, counted without drawing).
"""
from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass

import numpy as np

from ..errors import ChatflowError
from ..files import atomic_file
from ..options import option
from .mixture import MixtureSpec, load_mixture, parse_mixture, write_mixture
from .report import source_report
from .sampler import realized_group_counts
from .schedule import SHAPES

# The default throughput: LLaMA-2-7B's pretraining (Touvron et al. 2023, arXiv 2307.09288, Table 2 and Sec. 2.2.1):
# 184,320 A100-80GB GPU-hours for 2.0T tokens = 3,014 tokens/s per GPU on Meta's cluster (sequence length 4,096).
LLAMA2_7B_GPU_HOURS = 184_320
LLAMA2_TOKENS = 2.0e12
DEFAULT_THROUGHPUT = LLAMA2_TOKENS / (LLAMA2_7B_GPU_HOURS * 3600)
THROUGHPUT_SOURCE = ("LLaMA-2-7B's pretraining: 184,320 A100-80GB GPU-hours for 2.0T tokens (Touvron et al. 2023, "
                     "arXiv 2307.09288, Table 2)")
# Data-constrained scaling (Muennighoff et al. 2023, arXiv 2305.16264): up to ~4 epochs of repeated data are
# almost as good as unique data; beyond, returns diminish fast.
DEFAULT_MAX_EPOCHS = 4.0
MIN_USED_FRACTION = 0.01
UNITS = ("samples", "tokens", "records")
LENGTHS = ("steps", "tokens", "gpu_hours")     # the ways to give a run's length (exactly one)


@dataclass
class PlanOptions:
    global_batch_size: int = option(help="samples (packed sequences) per optimizer step, over all GPUs and "
                                         "gradient-accumulation micro-batches")
    mixture: str = option("", help="mixture file (JSON); default: the one recorded in --dataset_dir")
    dataset_dir: str = option("", help="shard directory (chatflow preprocess): adds per-source samples, tokens "
                                       "and epochs, and the records per sample of --schedule_unit records")
    steps: int = option(0, help="optimizer steps of the run (give one of --steps, --tokens, --gpu_hours)")
    tokens: float = option(0.0, help="training tokens of the run, e.g. 8e9; steps = ceil(tokens / (global_batch_size "
                                     "x seq_length))")
    gpu_hours: float = option(0.0, help="the run's compute budget, e.g. 5376 (the paper's 16 A100s for two weeks); "
                                        "steps = floor(gpu_hours x 3600 x --tokens_per_second_per_gpu / "
                                        "(global_batch_size x seq_length))")
    schedule_unit: str = option("", choices=list(UNITS),
                                help="read the mixture's schedule times (T_grow) in this unit instead of the file's "
                                     "schedule_unit: samples (packed sequences), tokens, or records (raw documents, "
                                     "pairs, conversations before packing)")
    records_per_sample: float = option(0.0, help="with --schedule_unit records: the mean records per packed sample "
                                                 "over the growth phase (default: computed from --dataset_dir)")
    tokens_per_second_per_gpu: float = option(DEFAULT_THROUGHPUT,
                                              help="training throughput for the GPU-hours estimate (default: "
                                                   f"{DEFAULT_THROUGHPUT:,.0f}, {THROUGHPUT_SOURCE})")
    gpus: int = option(0, help="GPUs of the run: also estimate wall-clock hours (default: none)")
    max_epochs: float = option(DEFAULT_MAX_EPOCHS, help="warn when a source (or, without --dataset_dir, a group) is "
                                                        "read more times than this (4: Muennighoff et al. 2023, "
                                                        "repeated data stops paying off)")
    data_tokens: float = option(0.0, help="without --dataset_dir: the tokens of the data the run draws from, e.g. 8e9 "
                                          "(the paper: 'about 50GB data containing 8B tokens'), for each group's "
                                          "epochs (default: none)")
    data_sizes: list = option(default_factory=list, repeatable=True, type=str,
                              help="with --data_tokens: how the data splits over the groups, NAME=SIZE with relative "
                                   "sizes (e.g. Table 1's GB: en_corpus=10 zh_corpus=24.5 ...); default: in "
                                   "proportion to each group's draws over the run")
    allow_partial_schedule: bool = option(False, help="plan a run that ends before the schedule reaches its final "
                                                      "mixture instead of refusing it")
    write_mixture: str = option("", help="write the mixture with its schedule times in samples (what a trainer "
                                         "reads: --mixture_config / --mixture) to this file")
    output: str = option("", help="also write the plan (JSON) to this file")
    json: bool = option(False, help="print the plan as one JSON object instead of text")


# -- readings ---------------------------------------------------------------------------------------------

def records_per_sample(spec: MixtureSpec, ds) -> tuple[float, dict[str, float]]:
    """(rho, rho_k per group): records the sampler feeds per packed sample over the growth phase, reading
    the mixture's times in records, from a :class:`~.batches.MixtureDataset`'s manifest figures."""
    per_source = np.array([s.info["records"] / s.windows for s in ds.source_shards], dtype=np.float64)
    first = ds.sampler.stretches[0]       # the mixture the run starts with: the one whose times are read
    rho_k = np.array([float(shares @ per_source[members]) for members, shares in zip(first.members, first.shares)])
    as_written = spec.schedule(sample_size=1.0)
    end = float(as_written.knots[-1])
    f = as_written.expected_counts(end) / end if end > 0 else as_written.probabilities(0.0)
    return float(f @ rho_k), dict(zip(spec.group_names, rho_k.tolist()))


def _reading(spec: MixtureSpec, unit: str, ds, rho: float) -> tuple[float, dict]:
    """(sample_size, the reading's record for the plan)."""
    reading = {"schedule_unit": unit, "as_written": spec.schedule_unit}
    if unit == "samples":
        return 1.0, reading
    if unit == "tokens":
        return float(spec.seq_length), reading
    if rho > 0:
        source = "assumed: --records_per_sample"
    elif ds is None:
        raise ChatflowError("--schedule_unit records needs the dataset's records per sample: give --dataset_dir "
                            "(a shard directory) or --records_per_sample")
    else:
        rho, per_group = records_per_sample(spec, ds)
        source = f"{ds.shards.path / 'manifest.json'}: records / windows per source, shares per group, " \
                 f"growth-phase group fractions"
        reading["records_per_sample_by_group"] = per_group
    reading.update(records_per_sample=rho, records_per_sample_from=source)
    return rho, reading


# -- the plan -----------------------------------------------------------------------------------------------

def _length(opts: PlanOptions, seq_length: int) -> tuple[int, dict]:
    """(optimizer steps, how the length was given: the plan's ``length``)."""
    if opts.global_batch_size <= 0:
        raise ChatflowError(f"--global_batch_size must be positive, got {opts.global_batch_size}")
    values = {name: getattr(opts, name) for name in LENGTHS}
    for name, value in values.items():
        if value < 0 or not math.isfinite(value):
            raise ChatflowError(f"--{name} must be positive, got {value}")
    given = [name for name, value in values.items() if value > 0]
    if len(given) != 1:
        raise ChatflowError("give exactly one of --steps, --tokens and --gpu_hours (positive)")
    per_step = opts.global_batch_size * seq_length
    if opts.steps:
        return opts.steps, {"from": "steps"}
    if opts.tokens:
        return math.ceil(opts.tokens / per_step), {"from": "tokens", "tokens": opts.tokens}
    throughput = opts.tokens_per_second_per_gpu
    tokens = opts.gpu_hours * 3600 * throughput
    steps = math.floor(tokens / per_step)
    if steps < 1:
        raise ChatflowError(f"--gpu_hours {opts.gpu_hours:g} at {throughput:,.0f} tokens/s per GPU is less than one "
                            f"step of {per_step:,} tokens")
    return steps, {"from": "gpu_hours", "gpu_hours": opts.gpu_hours, "tokens": tokens,
                   "tokens_per_second_per_gpu": throughput, "throughput_from": _throughput_source(throughput)}


def _throughput_source(throughput: float) -> str:
    return THROUGHPUT_SOURCE if throughput == DEFAULT_THROUGHPUT else "--tokens_per_second_per_gpu"


def _load(opts: PlanOptions):
    """(spec as written, MixtureDataset or None)."""
    shards = None
    if opts.dataset_dir:
        from .shards import ShardSet

        shards = ShardSet(opts.dataset_dir)
    if opts.mixture:
        spec = load_mixture(opts.mixture)
    elif shards is not None:
        spec = parse_mixture(shards.manifest["mixture"], where=f"{shards.path}/manifest.json")
    else:
        raise ChatflowError("give --mixture, --dataset_dir or both")
    if shards is None:
        return spec, None
    from .batches import MixtureDataset

    ds = MixtureDataset(shards, spec=spec)
    return ds.spec, ds


def _has_weight(schedule, horizon: float) -> np.ndarray:
    t = np.union1d(np.linspace(0.0, horizon, 1001), schedule.knots)
    return schedule.probabilities(t).max(axis=0) > 0


def make_plan(opts: PlanOptions) -> tuple[dict, MixtureSpec]:
    """The plan (a JSON-ready dict) and the mixture a trainer should read (times in samples)."""
    spec, ds = _load(opts)
    unit = opts.schedule_unit or spec.schedule_unit
    if opts.records_per_sample < 0:
        raise ChatflowError(f"--records_per_sample must be positive, got {opts.records_per_sample}")
    if opts.records_per_sample and unit != "records":
        raise ChatflowError("--records_per_sample only applies to --schedule_unit records")
    if opts.tokens_per_second_per_gpu <= 0:
        raise ChatflowError(f"--tokens_per_second_per_gpu must be positive, got {opts.tokens_per_second_per_gpu}")
    if opts.gpus < 0:
        raise ChatflowError(f"--gpus must be >= 0, got {opts.gpus}")
    size, reading = _reading(spec, unit, ds, opts.records_per_sample)
    run_spec = spec.in_samples(size)
    if ds is not None:
        from .batches import MixtureDataset

        ds = MixtureDataset(ds.shards, spec=run_spec)
    schedule = run_spec.schedule()
    G, L = opts.global_batch_size, run_spec.seq_length
    steps, length = _length(opts, L)
    n = steps * G
    end = float(schedule.knots[-1])
    reached = math.ceil(end / G) if end > 0 else 0
    names = run_spec.group_names
    counts = realized_group_counts(schedule, n)
    reading["times"] = {key: {"as_written": spec.schedule_params[key], "samples": run_spec.schedule_params[key]}
                        for key, param in SHAPES[spec.schedule_shape].mixture_keys.items() if param.time}
    plan: dict = {
        "mixture": run_spec.name, "mixture_file": str(spec.path) if spec.path else None,
        "dataset": str(ds.shards.path) if ds is not None else None,
        "seq_length": L, "global_batch_size": G, "steps": steps, "samples": n, "tokens": n * L,
        "length": length, "schedule_unit": unit, "reading": reading,
        "schedule": {"shape": run_spec.schedule_shape, "final_mixture_at_sample": end},
        "t_grow_reached_at_step": reached if reached <= steps else None,
        "p_start": dict(zip(names, schedule.probabilities(0.0).tolist())),
        "p_end": dict(zip(names, schedule.probabilities(float(n)).tolist())),
        "groups": {name: {"samples": int(c), "tokens": int(c) * L, "share": int(c) / n} for name, c in zip(names, counts)},
    }
    warnings = list(spec.warnings)
    if reached > steps:
        warnings.append(f"the run ends at sample {n:,} (step {steps:,}), before the schedule's final mixture at sample "
                        f"{end:,.0f} (step {reached:,}): it stops at {n / end:.0%} of the schedule and never reaches "
                        f"its final weights (beta)")
    for name, c, weighted in zip(names, counts, _has_weight(schedule, max(float(n), end))):
        if weighted and c == 0:
            warnings.append(f"group {name!r} has weight in the schedule but the run draws none of its samples")
    if ds is not None:
        if opts.data_tokens or opts.data_sizes:
            raise ChatflowError("--data_tokens and --data_sizes state the data's size without a dataset; with "
                                "--dataset_dir it is measured")
        _add_sources(plan, ds, n, opts.max_epochs, warnings)
    elif opts.data_tokens > 0:
        _add_data_size(plan, opts, warnings)
    elif opts.data_sizes:
        raise ChatflowError("--data_sizes splits --data_tokens over the groups: give --data_tokens too")
    elif opts.data_tokens < 0:
        raise ChatflowError(f"--data_tokens must be positive, got {opts.data_tokens}")
    throughput = opts.tokens_per_second_per_gpu
    gpu_hours = n * L / throughput / 3600
    plan["gpu_hours"] = {"gpu_hours": gpu_hours, "tokens_per_second_per_gpu": throughput,
                         "throughput_from": _throughput_source(throughput), "gpus": opts.gpus or None,
                         "hours": gpu_hours / opts.gpus if opts.gpus else None}
    plan["warnings"] = warnings
    return plan, run_spec


def _add_sources(plan: dict, ds, n: int, max_epochs: float, warnings: list[str]) -> None:
    """Per source and per group, from the dataset's manifest: what is drawn and the epochs over its windows."""
    L = ds.seq_length
    report = source_report(ds, n)
    group_of = {s.name: g.name for g, s in ds.spec.sources}
    sources = {}
    records = 0.0
    windows = dict.fromkeys(plan["groups"], 0)
    for shard, (name, r) in zip(ds.source_shards, report.items()):
        per_sample = shard.info["records"] / shard.windows
        records += r["samples"] * per_sample
        windows[group_of[name]] += r["windows"]
        sources[name] = {"group": group_of[name], "samples": r["samples"], "tokens": r["samples"] * L,
                         "windows": r["windows"], "records": shard.info["records"], "epochs": r["epochs"]}
        if r["epochs"] > max_epochs:
            warnings.append(f"source {name!r} is read {r['epochs']:.2f} times (epochs > {max_epochs:g}): repeated "
                            f"data stops paying off; add data or lower its group's weight")
        if r["epochs"] < MIN_USED_FRACTION:
            warnings.append(f"source {name!r}: the run uses {r['epochs']:.2%} of its {r['windows']:,} windows "
                            f"(< {MIN_USED_FRACTION:.0%}); most of it is preprocessed for nothing")
    plan["sources"] = sources
    plan["records"] = records
    for name, group in plan["groups"].items():
        group["data_tokens"] = windows[name] * L
        group["epochs"] = group["samples"] / windows[name] if windows[name] else None
    total = sum(windows.values()) * L
    plan["data"] = {"tokens": total, "from": f"{ds.shards.path / 'manifest.json'}: the windows of every source",
                    "epochs": n * L / total if total else None}


def parse_data_sizes(items: list[str], groups: list[str]) -> dict[str, float]:
    """``--data_sizes NAME=SIZE ...`` -> relative size per group (every group named once, sizes >= 0)."""
    sizes = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            size = float(value) if sep else float("nan")
        except ValueError:
            size = float("nan")
        if not math.isfinite(size) or size < 0:
            raise ChatflowError(f"--data_sizes {item}: expected NAME=SIZE with a size >= 0")
        if name not in groups:
            raise ChatflowError(f"--data_sizes {item}: the mixture has no group {name!r} (groups: {', '.join(groups)})")
        if name in sizes:
            raise ChatflowError(f"--data_sizes: group {name!r} is given twice")
        sizes[name] = size
    missing = [g for g in groups if g not in sizes]
    if missing:
        raise ChatflowError(f"--data_sizes: no size for group(s) {', '.join(missing)}")
    if sum(sizes.values()) <= 0:
        raise ChatflowError("--data_sizes: the sizes add up to 0")
    return sizes


def _add_data_size(plan: dict, opts: PlanOptions, warnings: list[str]) -> None:
    """Per group, the epochs over a stated data size (no dataset yet)."""
    groups = plan["groups"]
    total = opts.data_tokens
    if opts.data_sizes:
        sizes = parse_data_sizes(opts.data_sizes, list(groups))
        split = "by --data_sizes " + " ".join(f"{g}={v:g}" for g, v in sizes.items())
    else:
        sizes = {name: g["samples"] for name, g in groups.items()}
        split = "assumed: in proportion to each group's draws over the run (--data_sizes not given)"
    whole = sum(sizes.values())
    for name, group in groups.items():
        group["data_tokens"] = total * sizes[name] / whole
        group["epochs"] = group["tokens"] / group["data_tokens"] if group["data_tokens"] else None
        if group["epochs"] is None and group["tokens"]:
            warnings.append(f"group {name!r} is drawn from but --data_sizes gives it no data")
        elif group["epochs"] is not None and group["epochs"] > opts.max_epochs:
            warnings.append(f"group {name!r} is read {group['epochs']:.2f} times (epochs > {opts.max_epochs:g}) over its "
                            f"stated {group['data_tokens']:,.0f} tokens: repeated data stops paying off")
    plan["data"] = {"tokens": total, "from": f"--data_tokens; split {split}",
                    "epochs": plan["tokens"] / total}


# -- output -------------------------------------------------------------------------------------------------

def _pct(x: float) -> str:
    return f"{100 * x:6.2f}%"


def _shown_path(path: str) -> str:
    """A path as the text plan shows it: relative to the working directory when inside it (a packaged file named
    from a clone reads as ``models/...``), else as it is."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def format_plan(plan: dict) -> str:
    r = plan["reading"]
    shown = _shown_path(plan["mixture_file"]) if plan["mixture_file"] else None
    lines = [f"plan: mixture {plan['mixture']}" + (f" ({shown})" if shown else "")
             + (f", dataset {plan['dataset']}" if plan["dataset"] else ""),
             f"run: {plan['steps']:,} steps x {plan['global_batch_size']:,} samples = {plan['samples']:,} samples of "
             f"{plan['seq_length']:,} tokens = {plan['tokens']:,} tokens"]
    length = plan["length"]
    if length["from"] == "gpu_hours":
        lines.append(f"length: {length['gpu_hours']:,.0f} GPU-hours at {length['tokens_per_second_per_gpu']:,.0f} "
                     f"tokens/s per GPU ({length['throughput_from']}) = {length['tokens']:,.0f} tokens, in whole steps")
    reading = f"schedule ({plan['schedule']['shape']}): times read in {r['schedule_unit']}"
    reading += " (as written)" if r["schedule_unit"] == r["as_written"] else f" (the file says {r['as_written']})"
    for key, value in r["times"].items():
        reading += f"; {key} = {value['as_written']:,.0f} {r['schedule_unit']}"
        if r["schedule_unit"] != "samples":
            reading += f" = {value['samples']:,.0f} samples"
    if "records_per_sample" in r:
        reading += f" at {r['records_per_sample']:.3f} records per sample ({r['records_per_sample_from']})"
    lines.append(reading)
    at = plan["t_grow_reached_at_step"]
    end = plan["schedule"]["final_mixture_at_sample"]
    lines.append(f"final mixture (sample {end:,.0f}) reached at step {at:,} ({at / plan['steps']:.0%} of the run)"
                 if at is not None else f"final mixture (sample {end:,.0f}) NOT reached: the run ends at sample "
                                        f"{plan['samples']:,}")
    names = list(plan["groups"])
    width = max(10, *(len(n) for n in names))
    data = plan.get("data")
    header = f"{'group':<{width}} {'p_start':>8} {'p_end':>8} {'samples':>13} {'tokens':>17} {'share':>8}"
    lines += ["", header + (f" {'data tokens':>15} {'epochs':>7}" if data else "")]
    for name in names:
        g = plan["groups"][name]
        line = (f"{name:<{width}} {plan['p_start'][name]:>8.4f} {plan['p_end'][name]:>8.4f} {g['samples']:>13,} "
                f"{g['tokens']:>17,} {_pct(g['share']):>8}")
        if data:
            epochs = "-" if g["epochs"] is None else f"{g['epochs']:.2f}"
            line += f" {g['data_tokens']:>15,.0f} {epochs:>7}"
        lines.append(line)
    if data:
        lines.append(f"data: {data['tokens']:,.0f} tokens ({data['from']}), read {data['epochs']:.2f} times in all")
    if "sources" in plan:
        width = max(10, *(len(n) for n in plan["sources"]))
        lines += ["", f"{'source':<{width}} {'group':<12} {'samples':>13} {'tokens':>17} {'windows':>11} {'epochs':>8}"]
        for name, s in plan["sources"].items():
            lines.append(f"{name:<{width}} {s['group']:<12} {s['samples']:>13,} {s['tokens']:>17,} {s['windows']:>11,} "
                         f"{s['epochs']:>8.2f}")
        lines.append(f"records consumed: {plan['records']:,.0f}")
    h = plan["gpu_hours"]
    lines += ["", f"GPU-hours: {h['gpu_hours']:,.0f} at {h['tokens_per_second_per_gpu']:,.0f} tokens/s per GPU "
                  f"({h['throughput_from']})" + (f"; {h['hours']:,.1f} h on {h['gpus']} GPUs" if h["gpus"] else "")]
    if plan.get("mixture_for_training"):
        lines.append(f"mixture for training (times in samples): {plan['mixture_for_training']}")
    if plan["warnings"]:
        lines += ["", "warnings:"] + [f"  - {w}" for w in plan["warnings"]]
    return "\n".join(lines)


def run_plan(opts: PlanOptions) -> None:
    """Plan a training run of a mixture: samples and tokens, the step at which the schedule reaches its final
    mixture (T_grow), the mixture at start and end, per-group and (with --dataset_dir) per-source samples, tokens
    and epochs (without a dataset, per group over --data_tokens), warnings, and a GPU-hours estimate. The length is
    --steps, --tokens or a compute budget, --gpu_hours. A run that never reaches the final mixture is an error unless
    --allow_partial_schedule. --schedule_unit records reads the schedule's times as raw records before packing
    (converted through the dataset's manifest); --write_mixture writes the mixture in samples for the trainer."""
    plan, run_spec = make_plan(opts)
    if plan["t_grow_reached_at_step"] is None and not opts.allow_partial_schedule:
        end = plan["schedule"]["final_mixture_at_sample"]
        raise ChatflowError(
            f"the run ({plan['steps']:,} steps x {plan['global_batch_size']} = {plan['samples']:,} samples) ends at "
            f"{plan['samples'] / end:.0%} of the schedule, whose final mixture starts at sample {end:,.0f} (step "
            f"{math.ceil(end / plan['global_batch_size']):,}): train longer, shorten the schedule, or pass "
            f"--allow_partial_schedule")
    if opts.write_mixture:
        data = run_spec.to_json()
        r = plan["reading"]
        data["description"] = (f"{run_spec.name} as trained: written by chatflow plan, schedule times read in "
                               f"{r['schedule_unit']} and converted to samples"
                               + (f" at {r['records_per_sample']:.6g} records per sample" if "records_per_sample" in r else ""))
        plan["mixture_for_training"] = str(write_mixture(data, opts.write_mixture))
    if opts.output:
        with atomic_file(opts.output) as handle:
            handle.write(json.dumps(plan, indent=2, ensure_ascii=False) + "\n")
    if opts.json:
        print(json.dumps(plan, ensure_ascii=False))
    else:
        print(format_plan(plan))
        if opts.output:
            print(f"\nplan written to {opts.output}", file=sys.stderr)
