"""What ``chatflow train``'s extras cost per step: the same LLaMA, data and batch through ``chatflow train`` and
through a plain ``transformers.Trainer`` fed a uniform packed dataset, side by side in one run.

Both sides run as their own process, as a user launches them, and read the same shard directory (made here by
``chatflow preprocess`` from the bundled corpora with a tokenizer trained here): ``chatflow train`` in the dynamic
sampler's order with its extras (per-group losses and the realised mixture in every log line, the JSONL/CSV log,
run state in every checkpoint, the tokenizer files, held-out passes when given ``--heldout_dir``); the plain side
a ``Trainer`` over the shards' windows in uniform random order, with ``labels = input_ids`` (the model's own loss),
the same model (config, initialisation seed, attention implementation), optimizer settings, micro-batch,
accumulation, precision, torch threads, logging interval and end-of-run save (a checkpoint, then the model).

The clock is one callback added to both Trainers (``transformers.trainer.DEFAULT_CALLBACKS``):

* step time: the mean interval between consecutive ``on_step_end`` calls after ``--skip`` steps, so it holds
  everything a step costs (data, forward, backward, optimizer, logging, callbacks) with the same boundaries on
  both sides; CPU seconds per step likewise (process CPU time: steadier than wall time on a shared machine);
* start-up: from the moment the benchmark launches the process to the first ``on_step_begin`` (imports, data,
  model, Trainer); for ``chatflow train`` with held-out data, minus its held-out pass at step 0 (reported apart);
* held-out passes: each call of ``chatflow_plugin.hosts.hf.heldout.heldout_losses`` timed (default settings: one
  at the start and one at the end, ``--heldout_windows`` 64 per group), and what they add per step over the run;
* peak memory: the process's peak resident set (CPU) or ``torch.cuda.max_memory_allocated`` (GPU).

Configurations run interleaved, ``--repeats`` times each; the figures are the best repeat (least disturbed by
other processes). Overhead = (ours - plain) / plain step time.

    python benchmarks/bench_train_overhead.py [--hidden 256 --layers 4 --seq_length 256 --micro_batch_size 8]
        [--steps 40] [--repeats 2] [--threads 2] [--bf16] [--model_config FILE] [--output result.json]

``--model_config`` takes an HF config JSON (e.g. models/hf/llama_1b.json; its vocab_size is the tokenizer's);
``benchmarks/gpu_check.sh`` runs this script on a GPU with a 1B model and adds MFU (``--peak_tflops``).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLOCK_ENV = "BENCH_TRAIN_CLOCK"        # where the worker writes its clock readings
LAUNCH_ENV = "BENCH_TRAIN_LAUNCHED"    # time.time() at launch, set by the parent


# ---------------------------------------------------------------------------------------------
# Worker side: the clock, and the plain Trainer


def _install_clock() -> dict:
    """Add the step clock to every Trainer this process builds, and time held-out passes; returns the readings."""
    import torch
    import transformers.trainer
    from transformers import TrainerCallback

    readings = {"launched": float(os.environ[LAUNCH_ENV]), "step_end_wall": [], "step_end_cpu": [],
                "heldout_seconds": [], "heldout_cpu_seconds": [], "first_step_begin": None}

    class StepClock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if readings["first_step_begin"] is None:
                readings["first_step_begin"] = time.time()
                readings["first_step_cpu"] = time.process_time()
                readings["torch_threads"] = torch.get_num_threads()
                readings["heldout_before_first_step"] = sum(readings["heldout_seconds"])
                readings["heldout_cpu_before_first_step"] = sum(readings["heldout_cpu_seconds"])

        def on_step_end(self, args, state, control, **kwargs):
            readings["step_end_wall"].append(time.perf_counter())
            readings["step_end_cpu"].append(time.process_time())

        def on_train_end(self, args, state, control, model=None, **kwargs):
            readings["train_end"] = time.time()
            if model is not None:
                readings["parameters"] = sum(p.numel() for p in model.parameters())
                readings["input_embedding_parameters"] = model.get_input_embeddings().weight.numel()
                readings["attn_implementation"] = getattr(model.config, "_attn_implementation", None)
            if torch.cuda.is_available():
                readings["peak_gpu_bytes"] = torch.cuda.max_memory_allocated()

    transformers.trainer.DEFAULT_CALLBACKS.append(StepClock)
    try:
        from chatflow_plugin.hosts.hf import heldout as heldout_module
    except ImportError:
        return readings
    measured = heldout_module.heldout_losses

    def timed_heldout_losses(*args, **kwargs):
        start, cpu = time.perf_counter(), time.process_time()
        try:
            return measured(*args, **kwargs)
        finally:
            readings["heldout_seconds"].append(time.perf_counter() - start)
            readings["heldout_cpu_seconds"].append(time.process_time() - cpu)

    heldout_module.heldout_losses = timed_heldout_losses
    return readings


def _write_readings(readings: dict) -> None:
    readings["deepspeed_imported"] = sys.modules.get("deepspeed") is not None
    Path(os.environ[CLOCK_ENV]).write_text(json.dumps(readings), encoding="utf-8")


class PackedWindows:
    """The shard directory's windows, all sources concatenated, as a map-style dataset: item i is window i
    (``seq_length`` input tokens; the Trainer's default sampler visits them in uniform random order)."""

    def __init__(self, dataset_dir: Path):
        import numpy as np

        manifest = json.loads((dataset_dir / "manifest.json").read_text(encoding="utf-8"))
        width = int(manifest["seq_length"]) + 1
        self.parts = [np.memmap(dataset_dir / s["tokens_file"], dtype=manifest["dtype"], mode="r",
                                shape=(int(s["windows"]), width)) for s in manifest["sources"]]
        self.starts = np.cumsum([0] + [len(p) for p in self.parts])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, i: int) -> dict:
        import numpy as np
        import torch

        part = int(np.searchsorted(self.starts, i, side="right") - 1)
        ids = torch.from_numpy(np.asarray(self.parts[part][i - self.starts[part]][:-1], dtype=np.int64))
        return {"input_ids": ids, "labels": ids}


def plain_worker(opts: argparse.Namespace) -> None:
    """A plain ``transformers.Trainer`` run with the settings ``chatflow train`` is given."""
    readings = _install_clock()
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, Trainer, TrainingArguments

    if opts.threads > 0:
        torch.set_num_threads(opts.threads)
    manifest = json.loads((Path(opts.dataset_dir) / "manifest.json").read_text(encoding="utf-8"))
    raw = json.loads(Path(opts.model_config).read_text(encoding="utf-8"))
    config = AutoConfig.for_model(raw.get("model_type", "llama"), **{k: v for k, v in raw.items() if k != "model_type"})
    tok = manifest["tokenizer"]
    config.vocab_size, config.bos_token_id, config.eos_token_id = tok["vocab_size"], tok.get("bos_id"), tok["eos_id"]
    torch.manual_seed(opts.init_seed)
    model = AutoModelForCausalLM.from_config(config)
    use_cpu = not torch.cuda.is_available()
    args = TrainingArguments(
        output_dir=opts.output_dir, max_steps=opts.steps, per_device_train_batch_size=opts.micro_batch_size,
        gradient_accumulation_steps=opts.gradient_accumulation_steps, learning_rate=opts.learning_rate,
        lr_scheduler_type="cosine", warmup_steps=opts.warmup_steps, weight_decay=0.1, adam_beta2=0.95,
        max_grad_norm=1.0, bf16=opts.bf16, logging_steps=opts.log_every, save_strategy="steps", save_steps=opts.steps,
        save_total_limit=2, seed=opts.init_seed, report_to="none", disable_tqdm=True, dataloader_num_workers=0,
        use_cpu=use_cpu)
    trainer = Trainer(model=model, args=args, train_dataset=PackedWindows(Path(opts.dataset_dir)))
    trainer.train()
    trainer.save_model(str(Path(opts.output_dir) / "final"))
    _write_readings(readings)


def ours_worker(argv: list[str]) -> None:
    """``chatflow train ARGV`` as the command runs it, with the clock added."""
    readings = _install_clock()
    from chatflow_plugin.cli import main

    code = main(["train", *argv])
    if code:
        sys.exit(code)
    _write_readings(readings)


# ---------------------------------------------------------------------------------------------
# Parent side


def run_worker(args: list[str], work: Path, name: str, env: dict) -> dict:
    """Launch one worker process; its clock readings plus the process's peak RSS and wall time."""
    clock = work / f"{name}.clock.json"
    clock.unlink(missing_ok=True)
    env = dict(env, **{CLOCK_ENV: str(clock), LAUNCH_ENV: repr(time.time())})
    start = time.time()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *args], env=env, stdout=out,
                                stderr=subprocess.STDOUT, text=True, cwd=work)
        _, status, usage = os.wait4(proc.pid, 0)
        out.seek(0)
        text = out.read()
    if os.waitstatus_to_exitcode(status) != 0 or not clock.is_file():
        sys.exit(f"{name} failed ({os.waitstatus_to_exitcode(status)}):\n{text[-4000:]}")
    readings = json.loads(clock.read_text(encoding="utf-8"))
    readings.update(peak_rss_mb=usage.ru_maxrss / 1024.0, wall_seconds=time.time() - start, output_tail=text[-600:])
    return readings


def summarize(readings: dict, skip: int, tokens_per_step: int) -> dict:
    """Step time, CPU per step, tokens/s, start-up and held-out cost of one run."""
    walls, cpus = readings["step_end_wall"], readings["step_end_cpu"]
    if len(walls) < skip + 2:
        sys.exit(f"only {len(walls)} steps: raise --steps above --skip + 1")
    steps = len(walls) - 1 - skip
    # held-out passes inside the measured steps (--heldout_every) are taken out and reported apart
    inside = sum(readings["heldout_seconds"][1:-1]) if len(readings["heldout_seconds"]) > 2 else 0.0
    step_seconds = (walls[-1] - walls[skip] - inside) / steps
    cpu_seconds = (cpus[-1] - cpus[skip]) / steps
    heldout_at_start = readings.get("heldout_before_first_step", 0.0)
    startup = readings["first_step_begin"] - readings["launched"] - heldout_at_start
    return {"step_seconds": step_seconds, "cpu_seconds_per_step": cpu_seconds,
            "tokens_per_second": tokens_per_step / step_seconds, "startup_seconds": startup,
            "startup_cpu_seconds": readings["first_step_cpu"] - readings.get("heldout_cpu_before_first_step", 0.0),
            "heldout_passes": len(readings["heldout_seconds"]),
            "heldout_seconds_each": statistics.mean(readings["heldout_seconds"]) if readings["heldout_seconds"] else 0.0,
            "heldout_seconds_total": sum(readings["heldout_seconds"]),
            "peak_rss_mb": readings["peak_rss_mb"], "peak_gpu_mb": readings.get("peak_gpu_bytes", 0) / 2**20 or None,
            "wall_seconds": readings["wall_seconds"], "steps_measured": steps,
            "parameters": readings.get("parameters"),
            "input_embedding_parameters": readings.get("input_embedding_parameters"), "attn_implementation": readings.get("attn_implementation"),
            "deepspeed_imported": readings["deepspeed_imported"], "torch_threads": readings.get("torch_threads")}


def prepare_data(work: Path, seq_length: int, vocab_size: int, tokenizer: str) -> tuple[Path, Path, Path]:
    """(tokenizer, training shards, held-out shards): the bundled corpora under the tiny mixture, tokenized with
    ``tokenizer`` or a byte-fallback BPE trained here; the held-out shards are every fifth document of each group
    (the benchmark measures the cost of held-out passes, not held-out loss)."""
    from bench_host_trainer import corpus_texts, train_tokenizer

    if tokenizer:
        spm_model = Path(tokenizer).resolve()
    else:
        spm_model = train_tokenizer(corpus_texts(ROOT / "corpora"), work, vocab_size)
    mixture = ROOT / "models" / "mixtures" / "tiny_corpora.json"
    held_root = work / "heldout_corpora"
    for path in sorted((ROOT / "corpora").glob("*/*.jsonl")):
        lines = path.read_text(encoding="utf-8").splitlines()
        (held_root / path.parent.name).mkdir(parents=True, exist_ok=True)
        (held_root / path.parent.name / path.name).write_text("\n".join(lines[::5]) + "\n", encoding="utf-8")
    shards = {}
    for name, root in (("train", ROOT / "corpora"), ("heldout", held_root)):
        shards[name] = work / f"shards_{name}"
        subprocess.run([sys.executable, "-m", "chatflow_plugin.cli", "preprocess", "--mixture", str(mixture),
                        "--data_root", str(root), "--spm_model_path", str(spm_model), "--output_dir",
                        str(shards[name]), "--seq_length", str(seq_length), "--quiet", "--force"], check=True, cwd=work)
    return spm_model, shards["train"], shards["heldout"]


def model_config_file(opts: argparse.Namespace, work: Path) -> Path:
    if opts.model_config:
        return Path(opts.model_config).resolve()
    intermediate = opts.intermediate or 256 * ((8 * opts.hidden // 3 + 255) // 256)
    config = {"model_type": "llama", "hidden_size": opts.hidden, "intermediate_size": intermediate,
              "num_hidden_layers": opts.layers, "num_attention_heads": opts.heads, "num_key_value_heads": opts.heads,
              "max_position_embeddings": max(2048, opts.seq_length), "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
              "hidden_act": "silu", "tie_word_embeddings": False, "initializer_range": 0.02, "use_cache": False}
    path = work / "model_config.json"
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path


def training_flops_per_token(parameters: int, layers: int, hidden: int, seq_length: int) -> float:
    """Model FLOPs per trained token (PaLM's MFU convention, appendix B): 6 N for the weights that multiply (N
    without the input embeddings, a lookup) plus 12 L h s for attention's score and value products."""
    return 6.0 * parameters + 12.0 * layers * hidden * seq_length


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_config", default="", help="HF config JSON (default: a LLaMA of --hidden/--layers)")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--intermediate", type=int, default=0, help="0: about 8/3 hidden, a multiple of 256")
    parser.add_argument("--seq_length", type=int, default=256)
    parser.add_argument("--vocab_size", type=int, default=8000, help="of the tokenizer trained here")
    parser.add_argument("--tokenizer", default="", help="a sentencepiece model to use instead of training one")
    parser.add_argument("--micro_batch_size", type=int, default=8)
    parser.add_argument("--gradient_accumulation_steps", type=int, default=1)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--skip", type=int, default=5, help="first steps left out of the step time (warm-up)")
    parser.add_argument("--log_every", type=int, default=10, help="both sides' logging interval (ours' default)")
    parser.add_argument("--heldout_every", type=int, default=0, help="ours with held-out data (default: start and end)")
    parser.add_argument("--heldout_windows", type=int, default=64)
    parser.add_argument("--no_heldout", action="store_true", help="skip the run with held-out data")
    parser.add_argument("--learning_rate", type=float, default=3e-4)
    parser.add_argument("--warmup_steps", type=int, default=0)
    parser.add_argument("--init_seed", type=int, default=0)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads per process (0: torch's default; 1 is steadiest on a shared machine)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each configuration, interleaved")
    parser.add_argument("--peak_tflops", type=float, default=0.0, help="the device's peak for MFU (H100 SXM bf16: 989)")
    parser.add_argument("--output", default="", help="write the figures as JSON here")
    parser.add_argument("--work_dir", default="", help="keep data and runs here (default: a temporary folder, "
                                                       "deleted at the end)")
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    parser.add_argument("--dataset_dir", default="", help=argparse.SUPPRESS)
    parser.add_argument("--output_dir", default="", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--worker" and sys.argv[2] == "ours":
        sys.path.insert(0, str(ROOT))
        return ours_worker(sys.argv[3:])
    opts = parse_args()
    if opts.worker == "plain":
        return plain_worker(opts)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    work = Path(opts.work_dir or tempfile.mkdtemp(prefix="bench_train_overhead_")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               TOKENIZERS_PARALLELISM="false")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "ACCELERATE_USE_DEEPSPEED"):
        env.pop(name, None)
    print(f"preparing data in {work} ...", file=sys.stderr)
    spm_model, train_dir, heldout_dir = prepare_data(work, opts.seq_length, opts.vocab_size, opts.tokenizer)
    config = model_config_file(opts, work)
    common = ["--train_steps", str(opts.steps), "--micro_batch_size", str(opts.micro_batch_size),
              "--gradient_accumulation_steps", str(opts.gradient_accumulation_steps), "--learning_rate",
              str(opts.learning_rate), "--warmup_steps", str(opts.warmup_steps), "--log_every", str(opts.log_every),
              "--threads", str(opts.threads), "--init_seed", str(opts.init_seed)] + (["--bf16"] if opts.bf16 else [])
    configs = {      # the key names each run's folder (<key>_<repeat>); the label is what the table shows
        "plain Trainer": ["--worker", "plain", "--dataset_dir", str(train_dir), "--model_config", str(config),
                          "--steps", str(opts.steps), "--micro_batch_size", str(opts.micro_batch_size),
                          "--gradient_accumulation_steps", str(opts.gradient_accumulation_steps), "--learning_rate",
                          str(opts.learning_rate), "--warmup_steps", str(opts.warmup_steps), "--log_every",
                          str(opts.log_every), "--threads", str(opts.threads), "--init_seed", str(opts.init_seed),
                          "--output_dir", "OUT"] + (["--bf16"] if opts.bf16 else []),
        "chatflow train": ["--worker", "ours", "--dataset_dir", str(train_dir), "--model_config", str(config),
                           "--spm_model_path", str(spm_model), "--output_dir", "OUT", "--quiet", *common],
    }
    if not opts.no_heldout:
        configs["chatflow train + held-out"] = configs["chatflow train"] + [
            "--heldout_dir", str(heldout_dir), "--heldout_every", str(opts.heldout_every), "--heldout_windows",
            str(opts.heldout_windows)]
    tokens_per_step = opts.micro_batch_size * opts.gradient_accumulation_steps * opts.seq_length
    folders = dict(zip(configs, ("plain", "ours", "ours_heldout")))
    results: dict[str, list[dict]] = {name: [] for name in configs}
    for repeat in range(opts.repeats):
        for name, args in configs.items():
            out = work / f"{folders[name]}_{repeat}"
            shutil.rmtree(out, ignore_errors=True)
            args = [str(out) if a == "OUT" else a for a in args]
            print(f"[{repeat + 1}/{opts.repeats}] {name} ...", file=sys.stderr)
            results[name].append(summarize(run_worker(args, work, out.name, env), opts.skip, tokens_per_step))
    best = {name: min(runs, key=lambda r: r["step_seconds"]) for name, runs in results.items()}
    raw = json.loads(config.read_text(encoding="utf-8"))
    for r in best.values():
        weights = (r["parameters"] or 0) - (r["input_embedding_parameters"] or 0)
        flops = training_flops_per_token(weights, raw["num_hidden_layers"], raw["hidden_size"], opts.seq_length)
        r["mfu"] = flops * r["tokens_per_second"] / (opts.peak_tflops * 1e12) if opts.peak_tflops else None
    report(opts, best, results, tokens_per_step, config)
    if opts.output:
        Path(opts.output).write_text(json.dumps({"settings": vars(opts), "model_config": str(config),
                                                 "tokens_per_step": tokens_per_step, "best": best, "runs": results,
                                                 "final_model": str(work / "ours_0" / "final")},
                                                indent=2) + "\n", encoding="utf-8")
        print(f"wrote {opts.output}", file=sys.stderr)
    if not opts.work_dir:
        shutil.rmtree(work, ignore_errors=True)


def report(opts: argparse.Namespace, best: dict, results: dict, tokens_per_step: int, config: Path) -> None:
    plain = best["plain Trainer"]
    raw = json.loads(config.read_text(encoding="utf-8"))
    params = plain["parameters"] or 0
    device = "GPU" if plain["peak_gpu_mb"] else f"CPU ({os.cpu_count()} cores, {opts.threads} torch threads)"
    print(f"\nLLaMA of {params / 1e6:.1f}M parameters (hidden {raw['hidden_size']}, {raw['num_hidden_layers']} layers, "
          f"attention {plain['attn_implementation']}), {'bf16' if opts.bf16 else 'fp32'}, {device}; "
          f"{opts.micro_batch_size} x {opts.gradient_accumulation_steps} x {opts.seq_length} tokens per step; "
          f"step time = mean of steps {opts.skip + 1}-{opts.steps} (log line every {opts.log_every} steps), best of "
          f"{opts.repeats} interleaved runs")
    memory = "peak GPU MB" if plain["peak_gpu_mb"] else "peak RSS MB"
    print(f"{'':<27} {'step s':>8} {'CPU s/step':>10} {'tokens/s':>9} {'overhead':>9} {'start-up s':>10} "
          f"{'CPU s':>6} {memory:>11} {'wall s':>7}" + ("   MFU" if opts.peak_tflops else ""))
    for name, r in best.items():
        overhead = "" if r is plain else f"{100 * (r['step_seconds'] / plain['step_seconds'] - 1):+8.1f}%"
        mem = r["peak_gpu_mb"] or r["peak_rss_mb"]
        mfu = f" {100 * r['mfu']:5.1f}%" if r.get("mfu") is not None else ""
        print(f"{name:<27} {r['step_seconds']:>8.4f} {r['cpu_seconds_per_step']:>10.4f} {r['tokens_per_second']:>9.0f} "
              f"{overhead:>9} {r['startup_seconds']:>10.2f} {r['startup_cpu_seconds']:>6.2f} {mem:>11.0f} {r['wall_seconds']:>7.1f}{mfu}")
    if len(next(iter(results.values()))) > 1:
        print("medians over the repeats (steadier than the best under load):")
        for name, runs in results.items():
            median = {key: statistics.median(r[key] for r in runs)
                      for key in ("step_seconds", "cpu_seconds_per_step", "startup_seconds", "startup_cpu_seconds")}
            print(f"  {name:<25} step {median['step_seconds']:.4f} s, CPU {median['cpu_seconds_per_step']:.4f} s/step, "
                  f"start-up {median['startup_seconds']:.2f} s ({median['startup_cpu_seconds']:.2f} CPU s); "
                  f"steps of every repeat {[round(r['step_seconds'], 4) for r in runs]}")
    held = best.get("chatflow train + held-out")
    if held and held["heldout_passes"]:
        per_step = held["heldout_seconds_total"] / opts.steps
        print(f"held-out passes (chatflow train + held-out): {held['heldout_passes']} x "
              f"{held['heldout_seconds_each']:.2f} s ({opts.heldout_windows} windows per group), "
              f"{held['heldout_seconds_total']:.2f} s in all = {per_step:.4f} s per step over this {opts.steps}-step run "
              f"({100 * per_step / plain['step_seconds']:.1f}% of a plain step; the start-up above leaves the "
              f"step-0 pass out)")
    imported = [name for name, r in best.items() if r["deepspeed_imported"]]
    if imported:
        print(f"DeepSpeed imported by: {', '.join(imported)} (part of their start-up)")


if __name__ == "__main__":
    main()
