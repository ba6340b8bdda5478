"""Locks of torch extension builds that a killed process left behind (both backends).

DeepSpeed compiles its CPU ops (``cpu_adam``, ``deepspeed_shm_comm``) on first use with torch's
``cpp_extension``, under ``<extensions root>/<name>/lock``: the first process creates the file, builds, and
deletes it; every other process waits, without a timeout, until the file is gone. A process killed while
building (a scheduler's time limit, a kill -9, our own fault-injection tests) leaves the file, and every later
run on the machine waits forever before its first step, silently. A build takes a minute or two, so a lock
older than :data:`STALE_AFTER` seconds is taken for a leftover: it is removed with a warning naming it, by one
process per machine (local rank 0), before DeepSpeed loads its ops.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

STALE_AFTER = 15 * 60     # seconds; building cpu_adam takes about a minute on two cores


def extensions_root() -> Path | None:
    """Where torch builds extensions: ``TORCH_EXTENSIONS_DIR``, else its default root (which holds one folder per
    Python version and accelerator, e.g. ``py311_cpu``)."""
    if os.environ.get("TORCH_EXTENSIONS_DIR"):
        return Path(os.environ["TORCH_EXTENSIONS_DIR"])
    try:
        from torch.utils.cpp_extension import get_default_build_root
    except ImportError:
        return None
    return Path(get_default_build_root())


def clear_stale_build_locks(root: Path | None = None, stale_after: float = STALE_AFTER) -> list[Path]:
    """Remove build locks older than ``stale_after`` seconds under ``root`` (default: torch's extensions root),
    said on stderr; returns the removed paths. Only local rank 0 removes (the others return [])."""
    if os.environ.get("LOCAL_RANK", "0") != "0":
        return []
    root = extensions_root() if root is None else Path(root)
    if root is None or not root.is_dir():
        return []
    removed = []
    now = time.time()
    for lock in [*root.glob("*/lock"), *root.glob("*/*/lock")]:
        try:
            age = now - lock.stat().st_mtime
            if age <= stale_after:
                continue
            lock.unlink()
        except OSError:
            continue
        removed.append(lock)
        print(f"warning: removed {lock}, a torch extension build lock {age / 60:.0f} minutes old that a killed "
              f"build left (every DeepSpeed run on this machine would have waited for it forever)", file=sys.stderr)
    return removed
