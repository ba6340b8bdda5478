"""Batch assembly: tokens/s of 8 x 2048 batches drawn in the dynamic mixture's order, and resident
memory for a small and a 10x larger dataset (memory-mapped shards: it must not grow with the data).

Baseline, in the same run: nanoGPT-style ``get_batch`` (uniform random windows from one memmap),
which has no mixture, no schedule and no epochs: the cost floor of reading windows.

    python benchmarks/bench_batches.py [--small_mb 64] [--batches 200]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEQ = 2048
GROUPS = [("en_corpus", 0.60, 0.15), ("zh_corpus", 0.05, 0.50), ("parallel", 0.25, 0.0),
          ("en_inst", 0.05, 0.10), ("zh_inst", 0.0, 0.20), ("code", 0.05, 0.05)]


def write_dataset(path: Path, total_tokens: int) -> None:
    """A shard directory with random tokens, one source per Table 1 group (no tokenization needed), its manifest
    valid and sealed as `chatflow preprocess` writes it (file checksums included)."""
    import hashlib

    from chatflow_plugin.data.shards import FORMAT_NAME, FORMAT_VERSION, MANIFEST, seal_manifest
    from chatflow_plugin.files import new_checksum

    path.mkdir(parents=True)
    window = SEQ + 1
    rng = np.random.default_rng(0)
    sources = []
    per_source = total_tokens // len(GROUPS)
    for name, _, _ in GROUPS:
        windows = max(1, per_source // window)
        tokens_file = f"{name}.tokens.bin"
        tokens_sum, mask_sum = new_checksum(), new_checksum()
        with open(path / tokens_file, "wb") as f:
            for start in range(0, windows, 256):
                n = min(256, windows - start)
                block = rng.integers(0, 40000, size=n * window, dtype=np.uint16).tobytes()
                f.write(block)
                tokens_sum.update(block)
        mask_file = None
        if name.endswith("inst"):
            mask_file = f"{name}.mask.bin"
            mask = np.zeros(windows * window, np.uint8).tobytes()
            (path / mask_file).write_bytes(mask)
            mask_sum.update(mask)
        sources.append({"name": name, "group": name, "kind": "instruction" if mask_file else "corpus",
                        "files": [], "records": 0, "skipped": 0, "tokens": windows * window,
                        "windows": windows, "pad_tokens": 0, "tokens_file": tokens_file, "mask_file": mask_file,
                        "share": None, "language": None, "prompt_tokens": 0, "empty_files": [], "first_errors": [],
                        "tokens_checksum": tokens_sum.text(), "mask_checksum": mask_sum.text() if mask_file else None})
    mixture = {"name": "bench", "seq_length": SEQ, "T_grow": 5000, "seed": 1, "groups": [
        {"name": g, "alpha": a, "beta": b, "sources": [{"name": g, "kind": "corpus", "paths": ["x"]}]}
        for g, a, b in GROUPS]}
    manifest = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "seq_length": SEQ, "window_length": window,
                "dtype": "uint16", "mixture": mixture, "sources": sources,
                "tokenizer": {"sha256": hashlib.sha256(b"bench").hexdigest(), "vocab_size": 40000, "bos_id": 1,
                              "eos_id": 2}}
    (path / MANIFEST).write_text(json.dumps(seal_manifest(manifest)))


CHILD = r"""
import resource, sys, time, json
import numpy as np
sys.path.insert(0, {root!r})
from chatflow_plugin.data.batches import MixtureDataset
from chatflow_plugin.data.shards import ShardSet
path, mode, batches, batch_size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if mode == "chatflow":
    ds = MixtureDataset(ShardSet(path))
    ds.batch(np.arange(batch_size))          # warm-up
    start = time.perf_counter()
    for i in range(batches):
        b = ds.batch(np.arange((i + 1) * batch_size, (i + 2) * batch_size))
        x = b["tokens"].sum()
else:
    data = np.memmap(path + "/en_corpus.tokens.bin", dtype=np.uint16, mode="r")
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for i in range(batches):
        ix = rng.integers(0, len(data) - {seq} - 1, size=batch_size)
        x = np.stack([np.asarray(data[j:j + {seq} + 1], dtype=np.int64) for j in ix]).sum()
seconds = time.perf_counter() - start
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
kb = lambda key: int(status[key].split()[0]) / 1024 if key in status else float("nan")
print(json.dumps({{"seconds": seconds, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "anon_mb": kb("RssAnon"), "file_mb": kb("RssFile")}}))
"""


def run(path: Path, mode: str, batches: int, batch_size: int) -> dict:
    code = CHILD.format(root=str(ROOT), seq=SEQ)
    out = subprocess.run([sys.executable, "-c", code, str(path), mode, str(batches), str(batch_size)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small_mb", type=int, default=64, help="size of the small dataset's token files")
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--batch_size", type=int, default=8)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_batches_"))
    try:
        rows = []
        for scale in (1, 10):
            path = work / f"x{scale}"
            write_dataset(path, args.small_mb * scale * (1 << 20) // 2)
            size_mb = sum(f.stat().st_size for f in path.iterdir()) / (1 << 20)
            for mode in ("chatflow", "nanogpt_get_batch"):
                r = run(path, mode, args.batches, args.batch_size)
                tokens = args.batches * args.batch_size * SEQ
                rows.append((mode, size_mb, tokens / r["seconds"], r["rss_mb"], r["anon_mb"], r["file_mb"]))
        print(f"batches of {args.batch_size} x {SEQ} tokens, {args.batches} batches per run\n")
        print(f"{'loader':<20} {'dataset MB':>11} {'tokens/s':>14} {'peak RSS MB':>12} {'anon MB':>8} {'file MB':>8}")
        for mode, size_mb, rate, rss, anon, file_mb in rows:
            print(f"{mode:<20} {size_mb:>11.0f} {rate:>14,.0f} {rss:>12.0f} {anon:>8.0f} {file_mb:>8.0f}")
        print("\nanon = the process's own memory; file = cached pages of the memory-mapped shards "
              "(shared, reclaimable by the OS, grows with how much of the data was touched, not with its size)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
