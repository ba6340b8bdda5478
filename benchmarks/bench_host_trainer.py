"""TencentPretrain's trainer fed by ``dynamic_mixture`` vs by the host's own ``lm`` data: tokens/s and
peak resident memory on the same tiny LLaMA, the same tokenizer and the same corpora, for a dataset
of 1x and Nx the size (memory must stay flat in the dataset size).

Baseline, in the same run: the host's stock path (``preprocess.py --data_processor lm
--full_sentences``, ``pretrain.py --data_processor lm --target lm``). Ours: the project's launchers with
``--data_processor dynamic_mixture`` and ``--target chatflow_instruction`` (per-group loss) and with
the stock ``--target lm``. CPU mode (no DeepSpeed): the comparison is about the data path.

    TENCENTPRETRAIN_HOME=/path/to/TencentPretrain python benchmarks/bench_host_trainer.py \
        [--steps 60] [--batch_size 8] [--seq_length 256] [--scale 8] [--config_path FILE] [--gpu] [--output FILE]

``--scale 1`` measures one dataset size; ``--gpu`` trains on GPU 0 (the host's fp32 path, ``--gpu_ranks 0``), with
e.g. ``--config_path models/llama2/1b_config.json`` (``benchmarks/gpu_check.sh`` does); ``--output`` writes the
figures as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TINY = ROOT / "models" / "llama2" / "tiny_config.json"
MIXTURE = ROOT / "models" / "mixtures" / "tiny_corpora.json"
REPORT = re.compile(r"\|\s+(\d+)/\s*\d+ steps\|\s+([\d.]+) tokens/s\| loss\s+([\d.]+)")


def run_measured(cmd: list[str], cwd: Path, env: dict) -> tuple[str, float, float, float]:
    """(combined output, peak RSS of the child in MB, wall seconds, CPU seconds)."""
    start = time.time()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{text[-4000:]}")
    return text, usage.ru_maxrss / 1024.0, time.time() - start, usage.ru_utime + usage.ru_stime


def corpus_texts(data_root: Path) -> list[str]:
    texts = []
    for folder in ("en_corpus", "zh_corpus", "code"):
        for path in sorted((data_root / folder).glob("*.jsonl")):
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    texts.append(json.loads(line)["text"])
    return texts


def scaled_corpora(src: Path, dst: Path, scale: int) -> Path:
    """A copy of corpora/ whose every JSONL file holds its records ``scale`` times."""
    for folder in ("en_corpus", "zh_corpus", "parallel", "en_inst", "zh_inst", "code"):
        (dst / folder).mkdir(parents=True)
        for path in (src / folder).glob("*.jsonl"):
            data = path.read_text(encoding="utf-8")
            data = data if data.endswith("\n") else data + "\n"
            (dst / folder / path.name).write_text(data * scale, encoding="utf-8")
    return dst


def train_tokenizer(texts: list[str], out: Path, vocab_size: int = 2000) -> Path:
    import sentencepiece as spm

    sample = out / "spm_train.txt"
    sample.write_text("\n".join(texts[:20000]) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(sample), model_prefix=str(out / "spm"), vocab_size=vocab_size,
                                   model_type="bpe", hard_vocab_limit=False, byte_fallback=True, character_coverage=1.0, unk_id=0,
                                   bos_id=1, eos_id=2, pad_id=-1, num_threads=2, minloglevel=2)
    return out / "spm.model"


def tokens_per_second(text: str) -> tuple[float, float, float]:
    """(mean tokens/s over reports after the first, first loss, last loss)."""
    reports = [(int(s), float(t), float(l)) for s, t, l in REPORT.findall(text)]
    if len(reports) < 2:
        sys.exit(f"too few report lines:\n{text[-3000:]}")
    rates = [t for _, t, _ in reports[1:]]
    return sum(rates) / len(rates), reports[0][2], reports[-1][2]


def loader_seconds_per_batch(home: Path, lm_data: Path, mix_data: Path, spm_model: Path, batch_size: int,
                             batches: int, config: Path = TINY) -> tuple[float, float]:
    """CPU seconds per micro-batch of the host's LmDataloader and of ours (no model): the data path alone."""
    from argparse import Namespace

    os.environ["TENCENTPRETRAIN_HOME"] = str(home)
    from chatflow_plugin.hosts.tencentpretrain.host import register
    register()
    import tencentpretrain.utils as host_utils

    tokenizer = host_utils.str2tokenizer["bert"](Namespace(spm_model_path=str(spm_model), vocab_path=None,
                                                           do_lower_case="true"))
    args = Namespace(tokenizer=tokenizer, vocab=tokenizer.vocab, instances_buffer_size=25600, whole_word_masking=False,
                     span_masking=False, span_geo_prob=0.2, span_max_length=10, pipeline_model_parallel_size=1,
                     tensor_model_parallel_size=1, spm_model_path=str(spm_model), max_seq_length=4096,
                     config_path=str(config), mixture_config=None, response_only_loss=False, sample_log=None)
    out = []
    for name, path in (("lm", lm_data), ("dynamic_mixture", mix_data)):
        loader = host_utils.str2dataloader[name](args, str(path), batch_size, 0, 1, None, True)
        it = iter(loader)
        next(it)                                   # fill the host's buffer / open the memory maps
        start = time.process_time()
        for _ in range(batches):
            next(it)
        out.append((time.process_time() - start) / batches)
    return out[0], out[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--seq_length", type=int, default=256)
    parser.add_argument("--scale", type=int, default=8, help="size of the large dataset, in copies of corpora/")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of each configuration, interleaved; tokens/s is the best run (shared machines)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--config_path", default=str(TINY), help="the host's model config (default: the tiny LLaMA)")
    parser.add_argument("--gpu", action="store_true", help="train on GPU 0 (--world_size 1 --gpu_ranks 0)")
    parser.add_argument("--output", default="", help="write the figures as JSON here")
    opts = parser.parse_args()
    config = Path(opts.config_path).resolve()
    home = os.environ.get("TENCENTPRETRAIN_HOME")
    if not home or not (Path(home) / "tencentpretrain").is_dir():
        sys.exit("set TENCENTPRETRAIN_HOME to a TencentPretrain work tree")
    home = Path(home)
    corpora = ROOT / "corpora"
    if not (corpora / "en_corpus").is_dir():
        sys.exit(f"{corpora} missing: run corpora/generate.py")

    work = Path(tempfile.mkdtemp(prefix="bench_host_"))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("WORLD_SIZE", None)
    # the host's own scripts read models/special_tokens_map.json from the working directory
    host_cwd = work / "host_cwd"
    (host_cwd / "models").mkdir(parents=True)
    shutil.copy(ROOT / "models" / "special_tokens_map.json", host_cwd / "models")
    host_env = dict(env, PYTHONPATH=str(home))
    texts = corpus_texts(corpora)
    spm_model = train_tokenizer(texts, work)
    common = ["--spm_model_path", str(spm_model), "--config_path", str(config), "--total_steps", str(opts.steps),
              "--batch_size", str(opts.batch_size), "--report_steps", str(max(opts.steps // 6, 1)),
              "--save_checkpoint_steps", str(10 * opts.steps), "--learning_rate", "1e-3", "--seed", "7"]
    if opts.gpu:
        common += ["--world_size", "1", "--gpu_ranks", "0"]
    rows, loader_rows = [], []
    for scale in sorted({1, opts.scale}):
        data_root = corpora if scale == 1 else scaled_corpora(corpora, work / f"corpora_x{scale}", scale)
        # host lm data: the text-field corpora, one JSON document per line
        lm_corpus = work / f"lm_corpus_x{scale}.jsonl"
        lm_corpus.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts * scale),
                             encoding="utf-8")
        lm_data = work / f"lm_x{scale}.pt"
        t0 = time.time()
        run_measured([sys.executable, str(home / "preprocess.py"), "--corpus_path", str(lm_corpus), "--json_format_corpus",
                      "--spm_model_path", str(spm_model), "--dataset_path", str(lm_data), "--data_processor", "lm",
                      "--seq_length", str(opts.seq_length), "--full_sentences", "--processes_num", "2"], host_cwd, host_env)
        lm_prep = time.time() - t0
        mix_data = work / f"mix_x{scale}"
        t0 = time.time()
        run_measured([sys.executable, str(ROOT / "preprocess.py"), "--mixture_config", str(MIXTURE),
                      "--data_root", str(data_root), "--spm_model_path", str(spm_model), "--dataset_path", str(mix_data),
                      "--data_processor", "dynamic_mixture", "--seq_length", str(opts.seq_length),
                      "--processes_num", "2"], work, dict(env, TENCENTPRETRAIN_HOME=str(home)))
        mix_prep = time.time() - t0
        host_loader, our_loader = loader_seconds_per_batch(home, lm_data, mix_data, spm_model, opts.batch_size, 300,
                                                           config)
        loader_rows.append((scale, host_loader, our_loader))
        size_lm = lm_data.stat().st_size / 2**20
        size_mix = sum(p.stat().st_size for p in mix_data.iterdir()) / 2**20
        runs = [
            ("host lm / lm (baseline)", [sys.executable, str(home / "pretrain.py"), "--dataset_path", str(lm_data),
                                         "--output_model_path", str(work / "o_lm" / "m"), "--data_processor", "lm",
                                         "--target", "lm", *common], host_cwd, host_env, lm_prep, size_lm),
            ("dynamic_mixture / lm", [sys.executable, str(ROOT / "pretrain.py"), "--dataset_path", str(mix_data),
                                      "--output_model_path", str(work / "o_mix" / "m"), "--data_processor",
                                      "dynamic_mixture", "--target", "lm", *common], work,
             dict(env, TENCENTPRETRAIN_HOME=str(home)), mix_prep, size_mix),
            ("dynamic_mixture / chatflow_instruction", [sys.executable, str(ROOT / "pretrain.py"), "--dataset_path",
                                                        str(mix_data), "--output_model_path", str(work / "o_ci" / "m"),
                                                        "--data_processor", "dynamic_mixture", "--target",
                                                        "chatflow_instruction", *common], work,
             dict(env, TENCENTPRETRAIN_HOME=str(home)), mix_prep, size_mix),
        ]
        (work / "o_lm").mkdir(exist_ok=True)          # the host's own saver does not create it
        results = {name: [] for name, *_ in runs}
        for _ in range(opts.repeats):
            for name, cmd, cwd, run_env, prep, size in runs:
                text, rss, wall, cpu = run_measured(cmd, cwd, run_env)
                results[name].append((*tokens_per_second(text), rss, wall, cpu))
        for name, cmd, cwd, run_env, prep, size in runs:
            best = max(results[name], key=lambda r: r[0])
            rate, first, last, _, wall, cpu = best
            rss = max(r[3] for r in results[name])
            rows.append((scale, name, size, prep, rate, rss, first, last, wall, cpu))
    print(f"\nLLaMA {config.name}, batch {opts.batch_size} x {opts.seq_length} tokens, {opts.steps} steps, "
          f"{'GPU 0' if opts.gpu else f'CPU ({os.cpu_count()} cores)'}; tokens/s = mean of the host's report lines after the first, "
          f"best of {opts.repeats} interleaved runs (wall/CPU s of that run); peak RSS = max over runs")
    print(f"{'data':>5} {'trainer data / target':<40} {'dataset MB':>10} {'prep s':>7} {'tokens/s':>9} "
          f"{'peak RSS MB':>11} {'loss first->last':>17} {'wall s':>7} {'CPU s':>6}")
    for scale, name, size, prep, rate, rss, first, last, wall, cpu in rows:
        print(f"{'x' + str(scale):>5} {name:<40} {size:>10.1f} {prep:>7.1f} {rate:>9.0f} {rss:>11.0f} "
              f"{first:>8.2f}->{last:<8.2f} {wall:>7.1f} {cpu:>6.1f}")
    print(f"\ndata path alone (no model), CPU ms per micro-batch of {opts.batch_size} x {opts.seq_length + 1} tokens:")
    print(f"{'data':>5} {'host LmDataloader':>18} {'dynamic_mixture':>16}")
    for scale, host_loader, our_loader in loader_rows:
        print(f"{'x' + str(scale):>5} {host_loader * 1e3:>18.3f} {our_loader * 1e3:>16.3f}")
    if opts.output:
        keys = ("data", "trainer", "dataset_mb", "prep_seconds", "tokens_per_second", "peak_rss_mb", "first_loss",
                "last_loss", "wall_seconds", "cpu_seconds")
        Path(opts.output).write_text(json.dumps({
            "config": str(config), "device": "gpu" if opts.gpu else "cpu", "steps": opts.steps,
            "batch_size": opts.batch_size, "seq_length": opts.seq_length,
            "runs": [dict(zip(keys, (f"x{row[0]}",) + row[1:])) for row in rows],
            "loader_ms_per_batch": [{"data": f"x{scale}", "host_lm": h * 1e3, "dynamic_mixture": o * 1e3}
                                    for scale, h, o in loader_rows]}, indent=2) + "\n", encoding="utf-8")
    if opts.keep:
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
