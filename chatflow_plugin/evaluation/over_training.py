"""Accuracy over training tokens (ChatFlow's Figure 2): MMLU (English) and C-Eval (Chinese) on one plot.

Two ways in, same outputs (``PREFIX.csv``: one row per evaluated step, ``PREFIX.png``):

* walk a directory of saved HuggingFace checkpoints (``checkpoint-<step>``, ``step_<step>``,
  ``step-<step>`` or ``iter_<step>`` sub-directories holding ``config.json``), in step order,
  skipping steps already in the CSV so an interrupted or growing run is resumed::

      chatflow eval-curve --run runs/chatflow --data_dir data/benchmarks --tasks mmlu,ceval \
          --output fig2

* call :class:`EvalHook` from a training loop every N steps with the live model
  (``hook(step, model, tokenizer, tokens_seen)``); :func:`hf_trainer_callback` wraps it for the
  HuggingFace ``Trainer``. A TencentPretrain run is evaluated through its converted checkpoints.

Tokens of a checkpoint: ``num_input_tokens_seen`` from its ``trainer_state.json`` when the trainer
recorded it, else ``step x --tokens_per_step``.
"""
from __future__ import annotations

import csv
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..files import atomic_file, pyplot, save_figure
from ..errors import ChatflowError
from ..options import option
from .benchmarks import Benchmark
from .protocols import PROTOCOL_SETS
from .registry import BENCHMARKS, FIGURE2, load_benchmark
from .run import EvalSettings, evaluate_model

STEP_DIR = re.compile(r"^(?:checkpoint|step|iter|global_step)[-_]?(\d+)$")


def find_checkpoints(root: str | Path) -> list[tuple[int, Path]]:
    """(step, directory) of every HF checkpoint under ``root``, by step."""
    root = Path(root)
    if not root.is_dir():
        raise ChatflowError(f"checkpoint directory {root} not found")
    found = []
    for d in root.iterdir():
        m = STEP_DIR.match(d.name)
        if m and d.is_dir() and (d / "config.json").is_file():
            found.append((int(m.group(1)), d))
    if not found:
        raise ChatflowError(f"no checkpoints in {root} (expected sub-directories like checkpoint-1000/ "
                            "with a HuggingFace config.json)")
    return sorted(found)


def tokens_of(checkpoint: Path, step: int, tokens_per_step: int) -> int:
    state = checkpoint / "trainer_state.json"
    if state.is_file():
        try:
            seen = json.loads(state.read_text(encoding="utf-8")).get("num_input_tokens_seen")
            if seen:
                return int(seen)
        except (json.JSONDecodeError, ValueError, TypeError):
            pass
    if tokens_per_step <= 0:
        raise ChatflowError(f"{checkpoint}: no num_input_tokens_seen in trainer_state.json; pass --tokens_per_step "
                            "(global batch size x sequence length)")
    return step * tokens_per_step


class Curve:
    """The CSV of accuracy vs tokens, rewritten atomically after every point, and its plot."""

    def __init__(self, prefix: str | Path, tasks: list[str]):
        self.prefix, self.tasks = Path(prefix), tasks
        self.csv_path, self.png_path = Path(f"{prefix}.csv"), Path(f"{prefix}.png")
        self.rows: list[dict[str, Any]] = []
        if self.csv_path.is_file():
            with open(self.csv_path, newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                missing = {"step", "tokens", *tasks} - set(reader.fieldnames or [])
                if missing:
                    raise ChatflowError(f"{self.csv_path}: existing curve lacks columns {sorted(missing)}; "
                                        "use another --output")
                self.rows = [dict(r, step=int(r["step"]), tokens=int(r["tokens"])) for r in reader]

    @property
    def steps(self) -> set[int]:
        return {r["step"] for r in self.rows}

    def add(self, step: int, tokens: int, averages: dict[str, float], checkpoint: str = "") -> None:
        self.rows = [r for r in self.rows if r["step"] != step]
        self.rows.append({"step": step, "tokens": tokens, **{t: f"{averages[t]:.6f}" for t in self.tasks},
                          "checkpoint": checkpoint})
        self.rows.sort(key=lambda r: r["step"])
        with atomic_file(self.csv_path, newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=["step", "tokens", *self.tasks, "checkpoint"])
            writer.writeheader()
            writer.writerows({k: r.get(k, "") for k in writer.fieldnames} for r in self.rows)
        self.plot()

    def plot(self) -> None:
        plt = pyplot()
        tokens = [r["tokens"] for r in self.rows]
        unit, div = ("B", 1e9) if max(tokens, default=0) >= 1e9 else ("M", 1e6) if max(tokens, default=0) >= 1e6 else ("", 1)
        fig, ax = plt.subplots(figsize=(6, 4))
        for task in self.tasks:
            ys = [100 * float(r[task]) for r in self.rows]
            ax.plot([t / div for t in tokens], ys, marker="o", label=BENCHMARKS[task].display)
        ax.axhline(25, color="grey", linestyle=":", linewidth=1, label="chance (4 options)")
        ax.set_xlabel(f"training tokens{f' ({unit})' if unit else ''}")
        ax.set_ylabel("accuracy (%)")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        save_figure(fig, self.png_path)


class EvalHook:
    """Call every step; every ``every`` steps it evaluates the live model and extends the curve."""

    def __init__(self, benchmarks: list[Benchmark], settings: EvalSettings, output: str | Path, every: int = 1000,
                 tokens_per_step: int = 0):
        if every < 1:
            raise ChatflowError(f"evaluation interval must be >= 1 step, got {every}")
        self.benchmarks, self.settings, self.every, self.tokens_per_step = benchmarks, settings, every, tokens_per_step
        self.curve = Curve(output, [b.name for b in benchmarks])

    def __call__(self, step: int, model, tokenizer, tokens_seen: int | None = None, checkpoint: str = "") -> dict | None:
        if step % self.every:
            return None
        if tokens_seen is None:
            if self.tokens_per_step <= 0:
                raise ChatflowError("EvalHook needs tokens_seen or tokens_per_step")
            tokens_seen = step * self.tokens_per_step
        was_training = getattr(model, "training", False)
        if hasattr(model, "eval"):
            model.eval()
        try:
            result = evaluate_model(model, tokenizer, self.benchmarks, self.settings)
        finally:
            if was_training:
                model.train()
        averages = {name: r["acc"] for name, r in result["benchmarks"].items()}
        self.curve.add(step, int(tokens_seen), averages, checkpoint)
        return averages


def hf_trainer_callback(hook: EvalHook, tokenizer):
    """A ``transformers.TrainerCallback`` running ``hook`` at the hook's interval."""
    from transformers import TrainerCallback

    class _Callback(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if model is not None and state.global_step % hook.every == 0:
                hook(state.global_step, model, tokenizer, getattr(state, "num_input_tokens_seen", None) or None)
            return control

    return _Callback()


def walk_checkpoints(root: str | Path, benchmarks: list[Benchmark], settings: EvalSettings, output: str | Path,
                     tokens_per_step: int = 0, device: str = "auto", dtype: str = "auto") -> Curve:
    from .scoring import load_model

    curve = Curve(output, [b.name for b in benchmarks])
    for step, path in find_checkpoints(root):
        if step in curve.steps:
            print(f"step {step}: already in {curve.csv_path}, skipped", file=sys.stderr)
            continue
        tokens = tokens_of(path, step, tokens_per_step)
        model, tokenizer = load_model(str(path), device, dtype)
        averages = {name: r["acc"] for name, r in
                    evaluate_model(model, tokenizer, benchmarks, settings)["benchmarks"].items()}
        curve.add(step, tokens, averages, str(path))
        print(f"step {step} ({tokens} tokens): " + ", ".join(f"{k} {100 * v:.2f}" for k, v in averages.items()),
              file=sys.stderr)
        del model
    return curve


@dataclass
class CurveOptions:
    run: str = option(help="a run folder of HF checkpoints (chatflow train's checkpoint-<step>/ ...)",
                      aliases=["--checkpoints"])
    data_dir: str = option(help="benchmark root, as for chatflow eval")
    tasks: str = option(",".join(FIGURE2), help="benchmarks to track (default: Figure 2's)")
    output_prefix: str = option("accuracy_over_tokens", help="output prefix: PREFIX.csv and PREFIX.png",
                                aliases=["--output"])
    tokens_per_step: int = option(0, help="tokens per optimizer step (global batch x sequence length), used when "
                                          "a checkpoint has no trainer_state.json num_input_tokens_seen")
    num_fewshot: int = option(3, help="exemplars per prompt")
    protocol: str = option("official", choices=list(PROTOCOL_SETS),
                           help="official (each benchmark's own code) or lm-eval (lm-evaluation-harness's tasks)")
    limit: int = option(0, help="questions per subject (0: all); a fixed subset keeps points comparable")
    batch_size: int = option(8, help="sequences per forward pass")
    device: str = option("auto", help="cpu, cuda or auto")
    dtype: str = option("auto", help="auto, float32, bfloat16 or float16")
    quiet: bool = option(False, help="no progress bars")


def eval_curve(opts: CurveOptions) -> Curve:
    """Score every saved checkpoint of a run (checkpoint-<step>/ ...) in step order and write the accuracy over
    training tokens (Figure 2) as PREFIX.csv and PREFIX.png; steps already in the CSV are skipped."""
    from .evaluate import parse_tasks

    tasks = parse_tasks(opts.tasks)
    benchmarks = [load_benchmark(t, Path(opts.data_dir) / t, opts.num_fewshot) for t in tasks]
    settings = EvalSettings(num_fewshot=opts.num_fewshot, limit=opts.limit, batch_size=opts.batch_size,
                            progress=not opts.quiet, protocol=opts.protocol)
    curve = walk_checkpoints(opts.run, benchmarks, settings, opts.output_prefix, opts.tokens_per_step,
                             opts.device, opts.dtype)
    print(f"wrote {curve.csv_path} and {curve.png_path} ({len(curve.rows)} points)", file=sys.stderr)
    return curve
