"""JSON-lines reading throughput, side by side in one run:

1. the loop every reader in the package used to write: ``open(path, encoding="utf-8")``, skip blank
   lines, ``json.loads`` each (no line-located UTF-8 errors, no byte-order mark);
2. ``chatflow_plugin.files.read_jsonl``, which every ``.jsonl`` reader now uses (binary lines decoded one
   by one, so a bad byte is reported as ``path:line``; blank lines skipped; a first-line BOM allowed).

Input: the English and Chinese corpus samples under --data_dir (default ../shared/data), repeated
--copies times into one temporary file (default 20, ~110 MB). Best of --repeat runs.

    python benchmarks/bench_read_jsonl.py [--data_dir ../shared/data] [--copies 20] [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chatflow_plugin.files import read_jsonl  # noqa: E402


def text_mode_loop(path: Path):
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                yield number, json.loads(line)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data_dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--copies", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    data_dir = Path(args.data_dir)
    files = sorted((data_dir / "en_corpus").glob("*.jsonl")) + sorted((data_dir / "zh_corpus").glob("*.jsonl"))
    if not files:
        sys.exit(f"no en_corpus/zh_corpus JSONL files under {data_dir}")
    with tempfile.TemporaryDirectory(prefix="bench-jsonl-") as tmp:
        path = Path(tmp) / "corpus.jsonl"
        path.write_bytes(b"".join(p.read_bytes() for p in files) * args.copies)
        size = path.stat().st_size / 1e6
        print(f"{path.name}: {size:.0f} MB ({len(files)} files x {args.copies}), best of {args.repeat}")
        for name, read in (("text-mode loop (baseline)", text_mode_loop), ("files.read_jsonl", read_jsonl)):
            best, lines = float("inf"), 0
            for _ in range(args.repeat):
                start = time.perf_counter()
                lines = sum(1 for _ in read(path))
                best = min(best, time.perf_counter() - start)
            print(f"{name:<27} {lines:>8} records {best:6.2f} s {size / best:6.1f} MB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
