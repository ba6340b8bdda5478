"""Questions per second of ``chatflow eval`` and of lm-evaluation-harness on one model directory, each timed end to
end as its own process (start-up, model loading, task set-up from the files, scoring), side by side in one run.

Both sides score the same questions (``--limit`` per subject of the same local files: MMLU, C-Eval and CMMLU;
GAOKAO-Bench has no stock lm-eval task) with lm-eval's prompts and scoring (``chatflow eval --protocol lm-eval``
against ``lm_eval.simple_evaluate`` with the stock tasks pointed at the files by
``chatflow_plugin.evaluation.lm_harness``), 3-shot, the same batch size, dtype and device. Each process also
reports its peak GPU memory (``torch.cuda.max_memory_allocated``) on a GPU. The clock includes what an end-to-end
run pays; ``benchmarks/bench_eval.py`` compares scoring alone on a model ladder.

    python benchmarks/bench_eval_e2e.py --model_path DIR [--data_dir corpora/benchmarks] [--tasks mmlu,ceval,cmmlu]
        [--limit 5] [--batch_size 8] [--device auto] [--dtype auto] [--output FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Each side as a child process: run, then print one line with what it scored and its peak GPU memory.
OURS = """
import json, sys, torch
from chatflow_plugin.cli import main
code = main(sys.argv[2:])
results = json.load(open(sys.argv[1], encoding="utf-8"))
model = next(iter(results["models"].values()))
questions = sum(int(b.get("n_questions", 0)) for b in model["benchmarks"].values())
peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
print("BENCH " + json.dumps({"code": code, "questions": questions, "peak_gpu_bytes": peak}))
"""
LM_EVAL = """
import json, sys, torch
from lm_eval import simple_evaluate
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
model, yaml_dir, tasks, limit, batch_size, device, dtype = sys.argv[1:8]
lm = HFLM(pretrained=model, batch_size=int(batch_size), device=device, dtype=dtype)
out = simple_evaluate(model=lm, tasks=tasks.split(","), num_fewshot=3, limit=int(limit) or None,
                      task_manager=TaskManager(include_path=yaml_dir), random_seed=0, numpy_random_seed=0,
                      torch_random_seed=0)
questions = sum(int(v["effective"]) for v in out["n-samples"].values())
peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
print("BENCH " + json.dumps({"code": 0, "questions": questions, "peak_gpu_bytes": peak}))
"""


def run_side(code: str, args: list[str], env: dict, cwd: Path) -> dict:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    lines = [line for line in proc.stdout.splitlines() if line.startswith("BENCH ")]
    if proc.returncode != 0 or not lines:
        sys.exit(f"failed ({proc.returncode}): {' '.join(args[:3])} ...\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    result = json.loads(lines[-1][len("BENCH "):])
    result.update(seconds=seconds, questions_per_second=result["questions"] / seconds)
    return result


def subjects_with_stock_tasks(data: Path, benchmarks: list[str], out: Path) -> Path:
    """A copy of ``data`` holding only the subjects lm-eval has a stock task for (both sides score those). A benchmark
    with none (the bundled synthetic files) has its subjects copied under stock subjects' names: a speed check."""
    import shutil

    from chatflow_plugin.evaluation.lm_harness import stock_tasks_dir
    from chatflow_plugin.evaluation.registry import load_benchmark, spec_of

    stock = stock_tasks_dir()
    for name in benchmarks:
        spec = spec_of(name)
        subjects = [s.name for s in load_benchmark(name, data / name, 3).subjects]
        kept = {s: s for s in subjects if (stock / spec.lm_eval.stock.format(subject=s)).is_file()}
        if not kept:
            pattern = spec.lm_eval.stock.format(subject="*")
            prefix, suffix = pattern.split("*")
            names = sorted(p.as_posix()[len(stock.as_posix()) + 1:] for p in stock.glob(pattern))
            kept = dict(zip(subjects, (n[len(prefix):len(n) - len(suffix)] for n in names)))
            print(f"{name}: no subject has a stock lm-eval task; scored under the stock subjects "
                  f"{', '.join(kept.values())} (a speed check)", file=sys.stderr)
        elif len(kept) < len(subjects):
            print(f"{name}: {len(subjects) - len(kept)} of {len(subjects)} subjects have no stock lm-eval task and are "
                  f"left out on both sides", file=sys.stderr)
        for folder in (p for p in (data / name).iterdir() if p.is_dir()):
            (out / name / folder.name).mkdir(parents=True, exist_ok=True)
            for subject, stock_name in kept.items():
                source = folder / spec.files.file_name(subject, folder.name)
                if source.is_file():
                    shutil.copy(source, out / name / folder.name / spec.files.file_name(stock_name, folder.name))
    return out


def compare(opts, model: str, data: Path, tasks: list[str], device: str, dtype: str, env: dict,
            work: Path) -> tuple[dict, dict]:
    """(chatflow eval's figures, lm-eval's) on the same questions."""
    ours = run_side(OURS, [str(work / "ours.json"), "eval", "--model", model, "--data_dir", str(data), "--tasks",
                           opts.tasks, "--protocol", "lm-eval", "--num_fewshot", "3", "--limit", str(opts.limit),
                           "--batch_size", str(opts.batch_size), "--device", device, "--dtype", dtype, "--quiet",
                           "--no_generation", "--output", str(work / "ours.json")], env, work)
    theirs = run_side(LM_EVAL, [model, str(work / "tasks"), ",".join(tasks), str(opts.limit), str(opts.batch_size),
                                device, dtype], env, work)
    return ours, theirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_path", required=True, help="an HF causal LM directory with its tokenizer")
    parser.add_argument("--data_dir", default=str(ROOT / "corpora" / "benchmarks"),
                        help="mmlu/, ceval/, cmmlu/ in their public layouts (default: the bundled synthetic files)")
    parser.add_argument("--tasks", default="mmlu,ceval,cmmlu")
    parser.add_argument("--limit", type=int, default=5, help="questions per subject (0: all)")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--dtype", default="auto", help="auto: bfloat16 on a GPU, float32 on a CPU")
    parser.add_argument("--output", default="", help="write the figures as JSON here")
    opts = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import torch

    from chatflow_plugin.evaluation.lm_harness import write_task_yamls
    from chatflow_plugin.evaluation.registry import load_benchmark

    device = ("cuda" if torch.cuda.is_available() else "cpu") if opts.device == "auto" else opts.device
    dtype = ("bfloat16" if device.startswith("cuda") else "float32") if opts.dtype == "auto" else opts.dtype
    model, data = str(Path(opts.model_path).resolve()), Path(opts.data_dir).resolve()
    work = Path(tempfile.mkdtemp(prefix="bench_eval_e2e_"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               TOKENIZERS_PARALLELISM="false", HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    try:
        data, tasks = subjects_with_stock_tasks(data, opts.tasks.split(","), work / "data"), []
        for name in opts.tasks.split(","):
            subjects = [s.name for s in load_benchmark(name, data / name, 3).subjects]
            tasks += write_task_yamls(name, data / name, subjects, work / "tasks")
        ours, theirs = compare(opts, model, data, tasks, device, dtype, env, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{opts.tasks}, {opts.limit or 'all'} questions per subject, 3-shot, batch {opts.batch_size}, {device}, "
          f"{dtype}; each side one process, timed end to end")
    print(f"{'':<22} {'questions':>9} {'seconds':>8} {'questions/s':>11} {'peak GPU MB':>11}")
    for name, r in (("chatflow eval", ours), ("lm-eval", theirs)):
        peak = f"{r['peak_gpu_bytes'] / 2**20:.0f}" if r["peak_gpu_bytes"] else "-"
        print(f"{name:<22} {r['questions']:>9} {r['seconds']:>8.1f} {r['questions_per_second']:>11.2f} {peak:>11}")
    print(f"chatflow eval / lm-eval: {ours['questions_per_second'] / theirs['questions_per_second']:.2f}x "
          f"questions/s end to end")
    if opts.output:
        Path(opts.output).write_text(json.dumps({"model": model, "tasks": opts.tasks, "limit": opts.limit,
                                                 "batch_size": opts.batch_size, "device": device, "dtype": dtype,
                                                 "chatflow_eval": ours, "lm_eval": theirs}, indent=2) + "\n",
                                     encoding="utf-8")


if __name__ == "__main__":
    main()
