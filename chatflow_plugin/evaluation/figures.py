"""The paper's training figures from any run's logs: Figure 1 (training loss over tokens) and Figure 2
(benchmark accuracy over tokens), each a PNG with a CSV of its points next to it.

``chatflow figure1 --run NAME=PATH ... --output F.png`` reads ``chatflow train`` run folders (``log.jsonl``)
or TencentPretrain logs (``| step/total steps| ... | loss X`` lines; tokens = step x ``--tokens_per_step``);
``chatflow figure2 --results R.json --tokens MODEL=TOKENS ...`` reads the results of ``chatflow eval`` (one
model per checkpoint). ``scripts/figure1_loss_curves.sh`` uses them at
both scales; :mod:`chatflow_plugin.evaluation.over_training` draws Figure 2 while evaluating checkpoints.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ChatflowError
from ..files import pyplot, read_jsonl, save_figure, write_csv
from ..options import option

HOST_LINE = re.compile(r"\|\s*(?P<step>\d+)/\s*(?P<total>\d+) steps\|.*?\| loss\s+(?P<loss>[-+\d.eE]+)")
DPI = 110


def training_curve(source: str | Path, tokens_per_step: int = 0) -> list[tuple[int, float]]:
    """(tokens, training loss) from a ``chatflow train`` run folder (log.jsonl) or a TencentPretrain log
    (``| step/total steps| ... | loss X`` lines; tokens = step x ``tokens_per_step``)."""
    source = Path(source)
    if source.is_dir():
        log = source / "log.jsonl"
        if not log.is_file():
            raise ChatflowError(f"{source}: no log.jsonl (not a chatflow train run folder)")
        rows = [r for _, r in read_jsonl(log)]
        return [(r["tokens"], r["loss"]) for r in rows if r.get("kind") == "train" and r.get("loss") is not None]
    if not source.is_file():
        raise ChatflowError(f"{source}: not found")
    if tokens_per_step <= 0:
        raise ChatflowError(f"{source}: a host log needs --tokens_per_step (global batch x seq_length per step)")
    points = []
    for line in source.read_text(encoding="utf-8", errors="replace").splitlines():
        match = HOST_LINE.search(line)
        if match:
            points.append((int(match["step"]) * tokens_per_step, float(match["loss"])))
    if not points:
        raise ChatflowError(f"{source}: no training-loss lines found")
    return points


def figure1(runs: list[tuple[str, str]], output: str | Path, tokens_per_step: int = 0) -> Path:
    """Training loss over tokens of named runs (folders or host logs) on one plot."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    rows = []
    for name, source in runs:
        points = training_curve(source, tokens_per_step)
        ax.plot([t / 1e9 if points[-1][0] > 1e9 else t / 1e6 for t, _ in points], [v for _, v in points], label=name)
        rows += [{"run": name, "tokens": t, "loss": v} for t, v in points]
    big = max(r["tokens"] for r in rows) > 1e9
    ax.set_xlabel(f"training tokens ({'B' if big else 'M'})")
    ax.set_ylabel("training loss (nats/token)")
    ax.set_title("Training loss vs tokens (Figure 1); mixtures differ, so compare held-out loss too", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    output = save_figure(fig, output, dpi=DPI)
    write_csv(output.with_suffix(".csv"), rows)
    return output


def figure2(results: str | Path, tokens: list[tuple[str, str]], output: str | Path) -> Path:
    """Benchmark averages of ``chatflow eval`` results (one model per checkpoint) against training tokens."""
    data = json.loads(Path(results).read_text(encoding="utf-8"))
    models = data.get("models", {})
    rows = []
    for name, count in tokens:
        if name not in models:
            raise ChatflowError(f"{results}: no model named {name!r} (have {sorted(models)})")
        for bench, r in models[name]["benchmarks"].items():
            rows.append({"model": name, "tokens": int(float(count)), "benchmark": bench, "accuracy": r["acc"]})
    if not rows:
        raise ChatflowError("--tokens names no evaluated model")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    big = max(r["tokens"] for r in rows) > 1e9
    for bench in sorted({r["benchmark"] for r in rows}):
        pts = sorted((r["tokens"], r["accuracy"]) for r in rows if r["benchmark"] == bench)
        ax.plot([t / (1e9 if big else 1e6) for t, _ in pts], [100 * a for _, a in pts], marker="o", label=bench)
    ax.set_xlabel(f"training tokens ({'B' if big else 'M'})")
    ax.set_ylabel(f"{data.get('settings', {}).get('num_fewshot', '?')}-shot accuracy (%)")
    ax.set_title("Benchmarks over training tokens (Figure 2)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    output = save_figure(fig, output, dpi=DPI)
    write_csv(output.with_suffix(".csv"), rows)
    return output


def _named(items: list[str], flag: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise ChatflowError(f"--{flag} expects NAME=VALUE, got {item!r}")
        out.append((name, value))
    if not out:
        raise ChatflowError(f"give at least one --{flag} NAME=VALUE")
    return out


@dataclass
class Figure1Options:
    output: str = option(help="PNG path (a CSV of the points goes next to it)")
    run: list = option(default_factory=list, repeatable=True, type=str,
                       help="NAME=PATH: a chatflow train run folder or a TencentPretrain log file")
    tokens_per_step: int = option(0, help="host logs: tokens per logged step (global batch x sequence length)")


def plot_figure1(options: Figure1Options) -> Path:
    """Figure 1: training loss over training tokens of named runs (chatflow train folders or host logs)."""
    output = figure1(_named(options.run, "run"), options.output, options.tokens_per_step)
    print(output)
    return output


@dataclass
class Figure2Options:
    results: str = option(help="results JSON written by chatflow eval --output (one model per checkpoint)")
    output: str = option(help="PNG path (a CSV of the points goes next to it)")
    tokens: list = option(default_factory=list, repeatable=True, type=str,
                          help="MODEL_NAME=TOKENS: the training tokens behind each evaluated model")


def plot_figure2(options: Figure2Options) -> Path:
    """Figure 2: benchmark accuracy of evaluated checkpoints over training tokens, from chatflow eval results
    (``chatflow eval-curve`` draws the same figure while it scores a run's checkpoints)."""
    output = figure2(options.results, _named(options.tokens, "tokens"), options.output)
    print(output)
    return output
