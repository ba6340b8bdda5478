"""What the data integrity checks cost: seconds per GB to verify a shard directory on load (checksums of every
token and mask file, token ids against the vocabulary, mask values), next to loading it unchecked
(``--no_verify_data``: manifest fields and file sizes only, the baseline) and to the hashes it could have used.

Every figure is for files in the page cache (written just before; the OS caches them): the CPU cost. From a
disk, a cold verification reads each file once at the disk's speed; at ~10 GB/s the xxh3 pass is faster than any
disk, so verification costs about one sequential read of the dataset.

    python benchmarks/bench_integrity.py [--gb 1] [--repeats 3]
"""
from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_batches import write_dataset  # noqa: E402


def best(repeats: int, work) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def hash_files(files: list[Path], make) -> None:
    """Each file hashed alone, read as the verifier reads (16 MiB blocks into one buffer)."""
    buffer = bytearray(16 << 20)
    view = memoryview(buffer)
    for path in files:
        digest = make()
        with open(path, "rb", buffering=0) as handle:
            while got := handle.readinto(buffer):
                digest.update(view[:got])
        digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", type=float, default=1.0, help="size of the synthetic dataset's token files")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (the fastest is shown)")
    args = parser.parse_args()
    from chatflow_plugin.data import shards as shard_module
    from chatflow_plugin.data.shards import ShardSet
    from chatflow_plugin.files import new_checksum

    work = Path(tempfile.mkdtemp(prefix="bench_integrity_"))
    try:
        path = work / "ds"
        write_dataset(path, int(args.gb * (1 << 30)) // 2)
        files = sorted(path.glob("*.bin"))
        gb = sum(f.stat().st_size for f in files) / 1e9

        def load(verify: bool):
            shard_module._VERIFIED.clear()          # no memo between repeats: every load verifies
            ShardSet(path, verify=verify)

        rows = [("load, --no_verify_data (baseline)", best(args.repeats, lambda: load(False))),
                ("load, verified (default)", best(args.repeats, lambda: load(True)))]
        algorithm = new_checksum().algorithm
        rows.append((f"  of which {algorithm} alone", best(args.repeats, lambda: hash_files(
            files, lambda: new_checksum(algorithm).hasher))))
        rows.append(("blake2b-128 (fallback without xxhash)", best(args.repeats, lambda: hash_files(
            files, lambda: hashlib.blake2b(digest_size=16)))))
        rows.append(("sha256 (the inputs' checksum)", best(args.repeats, lambda: hash_files(files, hashlib.sha256))))
        print(f"dataset: {len(files)} files, {gb:.2f} GB of tokens and masks, in the page cache; best of "
              f"{args.repeats}\n")
        print(f"{'':<40} {'seconds':>8} {'s per GB':>9} {'GB/s':>7}")
        for name, seconds in rows:
            print(f"{name:<40} {seconds:>8.3f} {seconds / gb:>9.3f} {gb / seconds:>7.2f}")
        extra = rows[1][1] - rows[0][1]
        print(f"\nverification adds {extra / gb:.3f} s per GB to a load; a 100 GB dataset: about "
              f"{extra / gb * 100:.0f} s per process (once per process: a second load of an unchanged directory "
              f"is free)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
