"""Nothing hung: worker pools that stop on an error, lose a worker or lose their main process never block and
leave no process behind (issue 12, "Hangs"). A few rounds in CI; the campaign (``-m faults``) runs many more."""
from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

import pytest

from fault_support import (assert_clean_error, cli, kill_after, long_rounds, processes_mentioning, start,
                           wait_until_gone)
from test_preprocess import make_mixture

from chatflow_plugin.data.workers import WorkerDied, WorkerPool


def _burn(seconds: float) -> None:
    end = time.time() + seconds
    while time.time() < end:
        pass


class Load:
    """Busy processes for the duration of a block: the pools are tested on a loaded machine."""

    def __init__(self, processes: int = 2, seconds: float = 600):
        self.processes, self.seconds = processes, seconds

    def __enter__(self):
        self.burners = [multiprocessing.get_context("fork").Process(target=_burn, args=(self.seconds,), daemon=True)
                        for _ in range(self.processes)]
        for p in self.burners:
            p.start()
        return self

    def __exit__(self, *exc):
        for p in self.burners:
            p.kill()
            p.join()


_FAIL = {}


def _init(fail_at: int, die_at: int) -> None:
    _FAIL.update(fail_at=fail_at, die_at=die_at)


def _task(i: int) -> int:
    if i == _FAIL["die_at"]:
        os.kill(os.getpid(), signal.SIGKILL)
    if i == _FAIL["fail_at"]:
        raise ValueError(f"injected failure at {i}")
    if i % 7 == 0:
        time.sleep(0.001)
    return i


def _live_children() -> set[int]:
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == os.getpid():
                out.add(int(entry))
    return out


def _pool_round(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(1, 300)
    fail_at = rng.choice([-1, rng.randrange(n)])
    die_at = rng.choice([-1, -1, rng.randrange(n)])
    workers = rng.randint(1, 4)
    expected_error = (ValueError, WorkerDied) if (fail_at >= 0 or die_at >= 0) else ()
    try:
        with WorkerPool(workers, _task, _init, (fail_at, die_at), window=rng.randint(1, 8), grace=1.0) as pool:
            got = []
            for value in pool.map(range(n)):
                got.append(value)
                if rng.random() < 0.01:
                    raise KeyError("the caller stops")
        assert got == list(range(n)) and not expected_error, seed
    except (ValueError, WorkerDied) as exc:
        assert expected_error, (seed, exc)
    except KeyError:
        pass


def _hung(signum, frame):
    raise TimeoutError("a worker pool round hung")


@pytest.mark.parametrize("count", [40, pytest.param(long_rounds(20) * 20, marks=pytest.mark.faults)])
def test_worker_pools_under_load_with_injected_failures_never_hang(count):
    before = _live_children()
    started = time.time()
    previous = signal.signal(signal.SIGALRM, _hung)     # a hang fails the test instead of blocking the suite
    try:
        with Load():
            for seed in range(count):
                signal.alarm(120)
                try:
                    _pool_round(seed)
                finally:
                    signal.alarm(0)
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert _live_children() == before, "workers left behind"
    assert time.time() - started < 60 + count * 5


def _slow_mixture(root: Path) -> Path:
    mixture = make_mixture(root)
    with open(root / "en.jsonl", "a", encoding="utf-8") as handle:
        for i in range(20000):
            handle.write(json.dumps({"text": f"record {i}: the river runs past the school near the mountain."}) + "\n")
        handle.write("{broken\n")                  # stops a --on_bad_record fail run near the end
        for i in range(2000):
            handle.write(json.dumps({"text": f"after {i}"}) + "\n")
    return mixture


@pytest.mark.parametrize("count", [4, pytest.param(max(72, long_rounds(20) * 4), marks=pytest.mark.faults)])
def test_preprocess_stopping_on_an_error_under_load_exits_cleanly_every_time(tmp_path, spm_model, count):
    mixture = _slow_mixture(tmp_path / "data")
    where = f"{tmp_path / 'data' / 'en.jsonl'}:{40 + 20000 + 1}"
    with Load():
        for round_ in range(count):
            out = tmp_path / f"out{round_}"
            proc = cli("preprocess", "--mixture", mixture, "--tokenizer", spm_model, "--output_dir", out,
                       "--workers", "2", "--chunk_mb", "0.02", "--on_bad_record", "fail", "--quiet", timeout=300)
            assert_clean_error(proc, "preprocess", where, "invalid JSON")
            assert not out.exists() and wait_until_gone(str(out)) == [], f"round {round_}: workers left"


@pytest.mark.parametrize("count", [1, pytest.param(long_rounds(20), marks=pytest.mark.faults)])
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_killing_the_main_process_ends_its_workers_quietly(tmp_path, spm_model, sig, count):
    mixture = _slow_mixture(tmp_path / "data")
    for round_ in range(count):
        out = tmp_path / f"out{round_}"
        proc = start("preprocess", "--mixture", mixture, "--tokenizer", spm_model, "--output_dir", out,
                     "--workers", "2", "--chunk_mb", "0.02", "--quiet")
        deadline = time.time() + 60
        while len(processes_mentioning(str(out))) < 3 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(random.Random(round_).uniform(0.0, 0.5))
        if sig == signal.SIGKILL:               # only the main process: its workers must notice by themselves
            os.kill(proc.pid, signal.SIGKILL)
            _, err = proc.communicate(timeout=120)
        else:
            _, err = kill_after(proc, 0, sig)
        assert wait_until_gone(str(out)) == [], "workers outlived their main process"
        assert "Traceback" not in err and "BrokenPipeError" not in err, err[-3000:]
        if proc.returncode == -sig:
            # the signal came while Python's own handlers were not in place (interpreter start-up, or its
            # teardown after the work was done): nothing is said, and the output is checked below
            assert err.strip() == "", err[-3000:]
        elif sig == signal.SIGINT and proc.returncode != 0:
            assert err.strip().splitlines()[-1] == "chatflow preprocess: interrupted" and proc.returncode == 130
        elif sig == signal.SIGTERM and proc.returncode != 0:
            assert err.strip().splitlines()[-1] == "chatflow preprocess: terminated" and proc.returncode == 143
        assert not out.exists() or (out / "manifest.json").is_file()
