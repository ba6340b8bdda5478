"""Memory of `chatflow preprocess` on a large parquet source: it must stay flat, whatever the file's size.

`chatflow preprocess` reads a parquet file in record batches of about `--chunk_mb` and hands them to the tokenizer
workers a few at a time (chatflow_plugin/data/inputs.py), so the peak resident memory of the whole process tree
(main process and workers, summed) should not grow with the file. Side by side, in one run:

* `chatflow preprocess` (2 workers) on a parquet file of `--gb` GB and on one of a tenth of that: the same peak
  means memory is flat;
* the baseline a script would start with, `pyarrow.parquet.read_table(path).column("text").to_pylist()` (what
  feeding a tokenizer from `pandas.read_parquet` or `read_table` amounts to): loading only, no tokenization, so
  its peak is a lower bound of that script's.

The parquet files are written uncompressed (so `--gb` is also the gigabytes of text to tokenize), in row groups of
100,000 rows of synthetic English-like documents of ~1.7 KB; the tokenizer is a 4,000-piece sentencepiece BPE
trained here. Peak RSS is sampled every 20 ms (psutil) over the process and all its children.

    python benchmarks/bench_parquet_memory.py [--gb 1.0] [--workers 2]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_parquet(path: Path, gigabytes: float, seed: int = 0) -> tuple[int, int]:
    """Synthetic documents (random words of a 5,000-word vocabulary, ~1.7 KB each) until ``gigabytes`` of text;
    returns (rows, row groups)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    letters = np.array(list("etaoinshrdlucmfwypvbgkjqxz"))
    vocab = ["".join(rng.choice(letters, size=int(rng.integers(2, 9)))) for _ in range(5000)]
    distinct = [" ".join(vocab[i] for i in rng.zipf(1.2, 280) % 5000) + "." for _ in range(20_000)]
    target = int(gigabytes * 1e9)
    written, rows, groups = 0, 0, 0
    with pq.ParquetWriter(path, pa.schema([("text", pa.string()), ("id", pa.int64())]), compression="none",
                          use_dictionary=False) as writer:
        while written < target:
            texts = [f"Document {rows + i}: {distinct[(rows + i) % len(distinct)]}" for i in range(100_000)]
            sizes = np.cumsum([len(t) for t in texts])
            keep = int(np.searchsorted(sizes, target - written)) + 1
            texts = texts[:keep]
            writer.write_table(pa.table({"text": texts, "id": np.arange(rows, rows + len(texts))}))
            written += int(sizes[min(keep, len(sizes)) - 1])
            rows += len(texts)
            groups += 1
    return rows, groups


def train_tokenizer(folder: Path, sample: Path) -> Path:
    import pyarrow.parquet as pq
    import sentencepiece as spm

    text = folder / "sample.txt"
    table = pq.ParquetFile(sample).read_row_group(0, columns=["text"])
    text.write_text("\n".join(table.column("text").to_pylist()[:20_000]) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(folder / "tok"), vocab_size=4000, model_type="bpe",
                                   byte_fallback=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=2,
                                   minloglevel=2, input_sentence_size=20_000, shuffle_input_sentence=True)
    return folder / "tok.model"


def peak_rss(command: list[str]) -> tuple[float, float]:
    """(peak resident memory of the process tree in MB, seconds) of running ``command``."""
    import psutil

    started = time.time()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    handle = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            total = handle.memory_info().rss + sum(c.memory_info().rss for c in handle.children(recursive=True))
        except psutil.Error:
            total = 0
        peak = max(peak, total)
        time.sleep(0.02)
    seconds = time.time() - started
    if proc.returncode != 0:
        raise SystemExit(f"{command[:4]} failed: {proc.stderr.read().decode()[-2000:]}")
    return peak / 2**20, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", type=float, default=1.0, help="size of the large parquet file (GB of text)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_parquet_") as tmp:
        tmp = Path(tmp)
        files = {}
        for label, gb in (("small", args.gb / 10), ("large", args.gb)):
            path = tmp / f"{label}.parquet"
            rows, groups = write_parquet(path, gb)
            files[label] = (path, rows, groups)
        tokenizer = train_tokenizer(tmp, files["small"][0])
        rows = []
        for label in ("small", "large"):
            path, n, groups = files[label]
            mixture = tmp / f"{label}.json"
            mixture.write_text('{"name": "p", "seq_length": 2048, "T_grow": 1, "groups": [{"name": "en", "alpha": 1, '
                               f'"beta": 1, "sources": [{{"name": "en", "kind": "corpus", "paths": ["{path}"]}}]}}]}}')
            mb, seconds = peak_rss([sys.executable, "-m", "chatflow_plugin.cli", "preprocess", "--mixture",
                                    str(mixture), "--tokenizer", str(tokenizer), "--output_dir", str(tmp / f"out_{label}"),
                                    "--workers", str(args.workers), "--quiet"])
            size = path.stat().st_size / 1e9
            rows.append((f"chatflow preprocess, {args.workers} workers, {size:.2f} GB parquet ({n:,} rows, "
                         f"{groups} row groups)", mb, seconds))
        path = files["large"][0]
        mb, seconds = peak_rss([sys.executable, "-c", "import sys, pyarrow.parquet as pq; "
                                "texts = pq.read_table(sys.argv[1]).column('text').to_pylist(); print(len(texts))",
                                str(path)])
        rows.append((f"baseline: pyarrow read_table + to_pylist, {path.stat().st_size / 1e9:.2f} GB (load only)",
                     mb, seconds))
    width = max(len(r[0]) for r in rows)
    print(f"{'':<{width}}  peak RSS (MB)  seconds")
    for name, mb, seconds in rows:
        print(f"{name:<{width}}  {mb:>13,.0f}  {seconds:>7.1f}")


if __name__ == "__main__":
    main()
