"""Preprocessing throughput, side by side in one run:

1. raw sentencepiece: ``encode`` of the same documents on one thread (the ceiling for one worker);
2. ``chatflow preprocess`` with --workers 2 (JSONL parse, BOS/EOS, packing, writing shards);
3. TencentPretrain's own ``preprocess.py --data_processor llm_pretrain`` with --processes_num 2, when
   TENCENTPRETRAIN_HOME points at a host work tree. Its ``--full_sentences`` path crashes on short
   documents, so the host runs its default path (one instance per document, padded).

Corpus: the English and Chinese corpus samples under --data_dir (default ../shared/data), ~5.6 MB.
Tokenizer: a 3,000-piece byte-fallback BPE model trained here on that text.

    python benchmarks/bench_preprocess.py [--data_dir ../shared/data] [--repeat 3]
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

import sentencepiece as spm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chatflow_plugin.data.mixture import parse_mixture  # noqa: E402
from chatflow_plugin.data.preprocess import preprocess  # noqa: E402


def corpus_files(data_dir: Path) -> list[Path]:
    files = sorted((data_dir / "en_corpus").glob("*.jsonl")) + sorted((data_dir / "zh_corpus").glob("*.jsonl"))
    if not files:
        sys.exit(f"no en_corpus/zh_corpus JSONL files under {data_dir}")
    return files


def best_of(repeat: int, fn):
    times = []
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seq_length", type=int, default=1024)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_preprocess_"))
    try:
        files = corpus_files(Path(args.data_dir))
        corpus = work / "corpus.jsonl"
        with open(corpus, "w", encoding="utf-8") as out:
            for f in files:
                out.write(f.read_text(encoding="utf-8"))
        texts = [json.loads(line)["text"] for line in corpus.read_text(encoding="utf-8").splitlines()]
        plain = work / "train.txt"
        plain.write_text("\n".join(texts), encoding="utf-8")
        spm.SentencePieceTrainer.train(input=str(plain), model_prefix=str(work / "bpe3k"), vocab_size=3000,
                                       model_type="bpe", byte_fallback=True, character_coverage=0.98,
                                       bos_id=1, eos_id=2, unk_id=0, pad_id=-1, num_threads=2, minloglevel=2,
                                       max_sentence_length=1 << 20, input_sentence_size=200000,
                                       shuffle_input_sentence=True)
        model = work / "bpe3k.model"
        sp = spm.SentencePieceProcessor(model_file=str(model))
        size_mb = corpus.stat().st_size / 1e6
        print(f"corpus: {len(texts)} documents, {size_mb:.1f} MB; tokenizer: 3k BPE, byte fallback")

        raw_s, ids = best_of(args.repeat, lambda: sp.encode(texts, num_threads=1))
        n_tokens = sum(len(x) + 2 for x in ids)
        rows = [("sentencepiece encode, 1 thread", raw_s, n_tokens)]

        spec = parse_mixture({"name": "bench", "T_grow": 1, "seq_length": args.seq_length, "groups": [
            {"name": "all", "alpha": 1, "beta": 1,
             "sources": [{"name": "corpus", "kind": "corpus", "paths": [str(corpus)]}]}]})
        out_dir = work / "ours"
        ours_s, manifest = best_of(args.repeat, lambda: preprocess(spec, model, out_dir, workers=args.workers,
                                                                   force=True))
        rows.append((f"chatflow preprocess, {args.workers} workers", ours_s, manifest["sources"][0]["tokens"]))

        host = os.environ.get("TENCENTPRETRAIN_HOME")
        if host and (Path(host) / "preprocess.py").is_file():
            host_cwd = work / "host_cwd"
            (host_cwd / "models").mkdir(parents=True)
            shutil.copy(Path(host) / "models" / "llama_special_tokens_map.json",
                        host_cwd / "models" / "special_tokens_map.json")
            cmd = [sys.executable, str(Path(host) / "preprocess.py"), "--corpus_path", str(corpus),
                   "--spm_model_path", str(model), "--dataset_path", str(work / "host.pt"),
                   "--processes_num", str(args.workers), "--data_processor", "llm_pretrain",
                   "--seq_length", str(args.seq_length), "--json_format_corpus"]
            env = dict(os.environ, PYTHONPATH=host)

            def run_host():
                subprocess.run(cmd, cwd=host_cwd, env=env, check=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
            host_s, _ = best_of(args.repeat, run_host)
            rows.append((f"TencentPretrain llm_pretrain, {args.workers} processes", host_s, n_tokens))
        else:
            print("(TencentPretrain not found: set TENCENTPRETRAIN_HOME to compare with the host)")

        print(f"\n{'pipeline':<42} {'seconds':>8} {'tokens':>10} {'tokens/s':>12}")
        for name, seconds, tokens in rows:
            print(f"{name:<42} {seconds:>8.2f} {tokens:>10} {tokens / seconds:>12,.0f}")
        ours_rate = rows[1][2] / rows[1][1]
        print(f"\nchatflow / raw sentencepiece (1 thread): {ours_rate / (rows[0][2] / rows[0][1]):.2f}x")
        if len(rows) > 2:
            print(f"chatflow / TencentPretrain: {ours_rate / (rows[2][2] / rows[2][1]):.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
