"""Helpers of the fault-injection suite: run a command as a user does, kill it, shrink or freeze its disk.

Every test runs a first round in CI; its further rounds are marked ``faults`` (the long campaign, skipped unless
selected: scripts/fault_injection.sh, or ``pytest -m faults``). ``CHATFLOW_FAULT_ROUNDS`` sets how many rounds the
campaign runs; pytest's ``--basetemp`` where, so that a cluster's shared filesystem can be put through the same
faults.
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY_HF_CONFIG = ROOT / "models" / "hf" / "demo_tiny.json"


def long_rounds(default: int) -> int:
    """How many rounds the long (``faults``-marked) version of a test runs: CHATFLOW_FAULT_ROUNDS, else ``default``."""
    return max(1, int(os.environ.get("CHATFLOW_FAULT_ROUNDS", default)))


def round_params(default: int) -> list:
    """Round numbers to parametrize a test with: round 0 runs in CI, the others are the long campaign's
    (marked ``faults``: skipped unless selected, see tests/conftest.py)."""
    return [0] + [pytest.param(i, marks=pytest.mark.faults) for i in range(1, long_rounds(default))]


def env() -> dict:
    out = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        out.pop(name, None)
    return out


def command(*args) -> list[str]:
    return [sys.executable, "-m", "chatflow_plugin.cli", *map(str, args)]


def cli(*args, cwd=None, timeout: float = 900) -> subprocess.CompletedProcess:
    """``chatflow ARGS`` in a fresh process, as a user runs it."""
    return subprocess.run(command(*args), cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)


def start(*args, cwd=None) -> subprocess.Popen:
    return subprocess.Popen(command(*args), cwd=cwd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def assert_ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"exit {proc.returncode}\nSTDOUT:\n{proc.stdout[-2000:]}\nSTDERR:\n{proc.stderr[-4000:]}"
    return proc


def assert_clean_error(proc, name: str, *fragments: str) -> str:
    """Exit 2, no traceback, and the last line ``chatflow NAME: error: ...`` holding every fragment."""
    err = proc.stderr if isinstance(proc.stderr, str) else proc.stderr.decode()
    assert proc.returncode == 2, f"exit {proc.returncode}, expected 2\n{err[-4000:]}"
    assert "Traceback" not in err, err[-4000:]
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"chatflow {name}: error: "), line
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


def kill_after(proc: subprocess.Popen, seconds: float, sig: int = signal.SIGKILL) -> tuple[bool, str]:
    """Send ``sig`` to the process group after ``seconds`` unless it ended; (whether it was cut, its stderr)."""
    try:
        proc.wait(seconds)
        cut = False
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig) if sig == signal.SIGKILL else os.kill(proc.pid, sig)
        cut = True
    _, err = proc.communicate(timeout=300)
    return cut, err


def timed(*args, cwd=None) -> float:
    """Seconds an uninterrupted run of ``chatflow ARGS`` takes (it must succeed)."""
    started = time.time()
    assert_ok(cli(*args, cwd=cwd))
    return time.time() - started


def kill_points(seed: int, duration: float, count: int) -> list[float]:
    """``count`` random moments in ``[0, duration]`` (seeded: a failure names its seed and moment)."""
    rng = random.Random(seed)
    return [rng.uniform(0.0, duration) for _ in range(count)]


def tree(folder: Path, skip=()) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not any(part in skip for part in p.relative_to(folder).parts)}


def hidden_leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


def processes_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line contains ``text`` (orphaned workers, say)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if text in cmdline and state != "Z":
                found.append(int(entry))
    return found


def wait_until_gone(text: str, seconds: float = 20.0) -> list[int]:
    deadline = time.time() + seconds
    while (left := processes_mentioning(text)) and time.time() < deadline:
        time.sleep(0.1)
    return left


@contextlib.contextmanager
def small_disk(path: Path, size: str, readonly: bool = False) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``path`` (read-only with ``readonly``), or the test skipped saying why not."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if readonly else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a {size} tmpfs here ({done.stderr.strip() or 'mount failed'}; needs root in a "
                    f"machine that allows mounts)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def remount(path: Path, options: str) -> None:
    done = subprocess.run(["mount", "-o", f"remount,{options}", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def fill(path: Path, leave: int) -> None:
    """Fill the filesystem of ``path`` until about ``leave`` bytes are free."""
    fs = os.statvfs(path)
    free = fs.f_bavail * fs.f_frsize
    if free > leave:
        with open(path / "filler", "wb") as handle:
            handle.write(b"\0" * (free - leave))


def write_json(path: Path, value) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
    return path


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst) if src.is_dir() else shutil.copyfile(src, dst)
    return dst


def dataset_tree(folder: Path) -> dict:
    """A dataset's files, its manifest without the fields that differ between identical runs (time, seal)."""
    files = tree(folder)
    manifest = json.loads(files.pop("manifest.json"))
    for key in ("seconds", "manifest_checksum"):
        manifest.pop(key, None)
    files["manifest.json"] = manifest
    return files
