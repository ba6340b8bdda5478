"""A pool of worker processes that maps a function over items in order and never hangs.

``multiprocessing.Pool`` can block forever in ``terminate()`` when it is torn down after an error under load,
waits forever for a worker killed mid-task (by the OOM killer, say), and leaves workers that print
``BrokenPipeError`` tracebacks when the main process dies. :class:`WorkerPool` avoids all three:

* every worker has its own pipe; the main process waits on the pipes *and* the workers' process sentinels
  together, so a worker that dies is noticed at once and reported (which item, which exit code or signal);
* at most ``window`` items are dispatched beyond the one the caller waits for, so memory stays bounded
  however slow one item is, and items are read from the caller's iterable only as they are dispatched;
* a worker holds two small items (one queued in its pipe) but a large one only when idle: a send that waits
  for a busy worker to read, while that worker waits to send its result back, would deadlock;
* leaving the ``with`` block for any reason (an error in the caller, in a worker, Ctrl-C) terminates the
  workers (SIGTERM, then SIGKILL after ``grace`` seconds) and reaps them: no zombies, no wait without end;
* workers ignore SIGINT (Ctrl-C reaches the main process, which tears the pool down) and exit quietly when
  the main process goes away: their pipe reaches end-of-file, since a forked worker closes the copies of the
  main process's pipe ends it inherits (its own and its elder siblings');
* an exception raised by the function in a worker is re-raised in the main process (the original
  exception when it can be pickled) for the item that raised it.

``fork`` is used where available (Linux), so ``initializer`` state and the function need not be picklable.
"""
from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import sys
from multiprocessing.connection import Connection, wait
from multiprocessing.reduction import ForkingPickler
from typing import Any, Callable, Iterable, Iterator, Sequence

from ..errors import ChatflowError


SMALL_MESSAGE = 32 << 10      # bytes: a message this small always fits in a pipe's buffer (Linux: 200+ KB)


class WorkerDied(ChatflowError):
    """A worker process ended while it owed results (killed, e.g. by the out-of-memory killer)."""


def _worker_main(conn: Connection, function: Callable, initializer: Callable | None, initargs: tuple,
                 inherited: Sequence[int] = ()) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)      # Ctrl-C is the main process's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)     # stopped by the pool: end at once, without unwinding
    for fd in inherited:   # a forked worker holds copies of the main process's pipe ends: without closing
        try:               # them no worker would see end-of-file when the main process dies
            os.close(fd)
        except OSError:
            pass
    try:
        try:
            if initializer is not None:
                initializer(*initargs)
        except BaseException as exc:   # reported for the first item this worker is given
            failure = exc
        else:
            failure = None
        while True:
            message = conn.recv()
            if message is None:
                break
            index, item = message
            if failure is not None:
                conn.send((index, False, _picklable(failure)))
                continue
            try:
                reply = (index, True, function(item))
            except BaseException as exc:
                reply = (index, False, _picklable(exc))
            conn.send(reply)
    except (EOFError, BrokenPipeError, ConnectionResetError, KeyboardInterrupt):
        pass   # the main process went away or tore the pool down: nothing to report to
    finally:
        conn.close()


def _picklable(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{exc.__class__.__name__}: {exc}")


class WorkerPool:
    """``with WorkerPool(n, function, initializer, initargs) as pool: for result in pool.map(items): ...``"""

    def __init__(self, workers: int, function: Callable[[Any], Any], initializer: Callable | None = None,
                 initargs: tuple = (), window: int | None = None, grace: float = 2.0,
                 describe: Callable[[Any], str] = repr):
        if workers < 1:
            raise ValueError(f"workers must be positive, got {workers}")
        self.workers, self.function, self.initializer, self.initargs = workers, function, initializer, initargs
        self.window = window or 4 * workers
        self.grace, self.describe = grace, describe
        self._procs: list = []
        self._conns: list[Connection] = []

    # -- lifetime ------------------------------------------------------------------------
    def __enter__(self) -> "WorkerPool":
        method = "fork" if sys.platform.startswith("linux") else "spawn"
        ctx = multiprocessing.get_context(method)
        try:
            for _ in range(self.workers):
                parent, child = ctx.Pipe(duplex=True)
                inherited = [c.fileno() for c in self._conns + [parent]] if method == "fork" else []
                proc = ctx.Process(target=_worker_main, daemon=True,
                                   args=(child, self.function, self.initializer, self.initargs, inherited))
                proc.start()
                child.close()
                self._procs.append(proc)
                self._conns.append(parent)
        except BaseException:
            self.close(terminate=True)
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(terminate=exc_type is not None)

    def close(self, terminate: bool = False) -> None:
        """Stop the workers: ask them to finish (or, with ``terminate``, kill them) and reap every one."""
        if not terminate:
            for conn in self._conns:
                try:
                    conn.send(None)
                except OSError:
                    pass
        for conn in self._conns:
            conn.close()
        for proc in self._procs:
            if terminate and proc.is_alive():
                proc.terminate()
        for proc in self._procs:
            proc.join(self.grace)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self._procs, self._conns = [], []

    # -- work ----------------------------------------------------------------------------
    def map(self, items: Sequence[Any] | Iterable[Any]) -> Iterator[Any]:
        """The function's result for every item, in the items' order."""
        for _, result in self.map_with_items(items):
            yield result

    def map_with_items(self, items: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        """``(item, result)`` for every item, in the items' order. ``items`` is read lazily, never more than
        ``window`` items ahead of the result being waited for (a generator that reads a file as it goes keeps
        memory bounded); an error it raises stops the pool like any other."""
        if not self._procs:
            raise RuntimeError("use the pool inside its `with` block")
        source = iter(items)
        exhausted = False
        pending: dict[int, Any] = {}     # dispatched items not yet yielded
        done: dict[int, Any] = {}
        busy: dict[int, list[int]] = {w: [] for w in range(len(self._procs))}   # worker -> indices it owes
        following = 0       # the next index to hand to a worker
        wanted = 0          # the next index to yield
        held: bytes | None = None   # the next message, pickled, when no worker could take it yet
        while True:
            # keep every worker fed (two small items each, one large), never more than `window` ahead of `wanted`
            while not exhausted and following < wanted + self.window:
                if held is None:
                    try:
                        item = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    pending[following] = item
                    held = ForkingPickler.dumps((following, item))
                worker = min(busy, key=lambda w: len(busy[w]))
                # A message larger than the pipe's buffer blocks the send until the worker reads it, and a busy
                # worker reads only after sending its result, which this process reads only after the send:
                # large messages go to idle workers only.
                if len(busy[worker]) >= (2 if len(held) <= SMALL_MESSAGE else 1):
                    break
                busy[worker].append(following)
                try:
                    self._conns[worker].send_bytes(held)
                except OSError:      # its pipe is closed: the worker is gone
                    self._died(worker, busy[worker], pending)
                held = None
                following += 1
            if wanted in done:        # then dispatch again before waiting: the window has moved
                yield pending.pop(wanted), done.pop(wanted)
                wanted += 1
                continue
            if exhausted and wanted >= following:
                return
            ready = wait(self._conns + [p.sentinel for p in self._procs])
            for worker, conn in enumerate(self._conns):
                if conn in ready:
                    try:
                        index, ok, value = conn.recv()
                    except (EOFError, OSError):
                        self._died(worker, busy[worker], pending)
                    busy[worker].remove(index)
                    if not ok:
                        raise value
                    done[index] = value
            for worker, proc in enumerate(self._procs):
                if proc.sentinel in ready and busy[worker] and not self._conns[worker].poll():
                    self._died(worker, busy[worker], pending)

    def _died(self, worker: int, owed: list[int], items: dict) -> None:
        proc = self._procs[worker]
        proc.join(self.grace)
        code = proc.exitcode
        how = (f"was killed by signal {-code} ({signal.Signals(-code).name})" if code is not None and code < 0
               else f"exited with code {code}")
        what = self.describe(items[owed[0]]) if owed else "an item"
        raise WorkerDied(f"a worker process (pid {proc.pid}) {how} while working on {what}"
                         f"{' (out of memory?)' if code == -signal.SIGKILL else ''}")


def default_workers(requested: int) -> int:
    """``requested`` workers, or one per CPU this process may use when it is 0."""
    if requested < 0:
        raise ValueError(f"workers must be 0 (one per CPU) or positive, got {requested}")
    if requested:
        return requested
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:   # not Linux
        return os.cpu_count() or 1
