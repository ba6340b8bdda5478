"""chatflow_plugin.data.workers: results in order, errors and dead workers reported, never a hang, no zombies.

The many-rounds version under load is tests/faults/test_pools.py."""
from __future__ import annotations

import os
import signal
import time

import pytest

from chatflow_plugin.data.workers import WorkerDied, WorkerPool, default_workers
from chatflow_plugin.errors import ChatflowError

_STATE = {}


def _init(offset):
    _STATE["offset"] = offset


def _work(x):
    if x == "fail":
        raise ValueError("bad item")
    if x == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    if x == "sleep":
        time.sleep(0.2)
        return "slept"
    return x * x + _STATE["offset"]


def _children() -> set[int]:
    """Live (or zombie) children of this process."""
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid():
                out.add(int(entry))
    return out


def test_results_come_in_order_with_the_initializers_state():
    before = _children()
    with WorkerPool(3, _work, _init, (10,), window=4) as pool:
        assert list(pool.map(range(50))) == [x * x + 10 for x in range(50)]
        assert list(pool.map(["sleep", 2, "sleep"])) == ["slept", 14, "slept"]
    assert _children() == before


def _echo_large(item: bytes) -> bytes:
    return item[::-1] * 2          # a result larger than the item, both larger than a pipe's buffer


def test_large_items_and_results_never_deadlock_and_items_are_read_lazily():
    pulled = []

    def items():
        for i in range(12):
            pulled.append(i)
            yield bytes([i]) * (3 << 20)       # 3 MB each: far beyond a pipe's buffer

    with WorkerPool(2, _echo_large, window=4) as pool:
        for i, (item, result) in enumerate(pool.map_with_items(items())):
            assert item == bytes([i]) * (3 << 20) and len(result) == 6 << 20
            assert len(pulled) <= i + 1 + 4        # never more than the window ahead of the caller


def test_an_error_in_a_worker_is_raised_for_its_item_and_the_pool_is_reaped():
    before = _children()
    with pytest.raises(ValueError, match="bad item"):
        with WorkerPool(2, _work, _init, (0,)) as pool:
            for _ in pool.map([1, 2, "fail"] + list(range(100))):
                pass
    assert _children() == before


def test_a_killed_worker_is_reported_not_waited_for():
    before = _children()
    started = time.time()
    with pytest.raises(WorkerDied, match=r"was killed by signal 9 \(SIGKILL\) while working on 'die'"):
        with WorkerPool(2, _work, _init, (0,)) as pool:
            list(pool.map([1, "die", 3, 4]))
    assert time.time() - started < 30 and _children() == before
    assert issubclass(WorkerDied, ChatflowError)


def test_the_caller_stopping_early_tears_the_pool_down():
    before = _children()
    with pytest.raises(KeyError):
        with WorkerPool(2, _work, _init, (0,)) as pool:
            for value in pool.map(range(1000)):
                if value > 20:
                    raise KeyError("caller stops")
    assert _children() == before


def test_an_initializer_failure_is_reported():
    with pytest.raises(TypeError):
        with WorkerPool(2, _work, _init, ()) as pool:      # _init needs one argument
            list(pool.map([1]))


def test_default_workers():
    assert default_workers(3) == 3 and default_workers(0) >= 1
    with pytest.raises(ValueError):
        default_workers(-1)
    with pytest.raises(ValueError):
        WorkerPool(0, _work)
