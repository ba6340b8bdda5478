"""One worker thread per model: it loads the model, then answers one request at a time, in arrival order.

So a model never runs two generations at once (memory stays bounded on a GPU), and every waiting
request knows how many are ahead of it (:attr:`Job.ahead`), which the page shows. Models load one after
another (a shared lock) so that two large checkpoints are never read into memory at the same time.

A model that fails to load, or raises while generating, does not take the server down: the worker
records a one-line message (the model's name and path blanked out, so that the page never unblinds a
round) and prints the full traceback to the server's stderr.
"""
from __future__ import annotations

import collections
import sys
import threading
import traceback
from typing import Callable

from ...errors import ChatflowError
from .chat import ConversationTooLong, Reply, SamplingSettings, generate_reply, template_kind

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"


class QueueFull(ChatflowError):
    """More requests wait for a model than ``--max_queue``."""


class Job:
    """One answer requested from one model; read its fields, wait on ``listener`` for changes."""

    def __init__(self, messages: list[dict], settings: SamplingSettings, listener: threading.Event):
        self.messages, self.settings, self.listener = messages, settings, listener
        self.state = QUEUED
        self.ahead = 0            # jobs before this one in its model's queue (the running one included)
        self.text = ""            # visible answer so far
        self.error = ""
        self.too_long = False     # failed because the conversation no longer fits the model's context
        self.reply: Reply | None = None
        self.cancelled = threading.Event()

    @property
    def finished(self) -> bool:
        return self.state in (DONE, FAILED, CANCELLED)

    def cancel(self) -> None:
        self.cancelled.set()
        self.changed()

    def changed(self) -> None:
        self.listener.set()


class ModelWorker:
    def __init__(self, name: str, path: str, loader: Callable[[], tuple], template: str = "auto",
                 load_lock: threading.Lock | None = None, max_queue: int = 32):
        self.name, self.path, self.loader, self.requested_template = name, str(path), loader, template
        self.load_lock = load_lock or threading.Lock()
        self.max_queue = max_queue
        self.state = "waiting"    # waiting (to load) | loading | ready | failed
        self.error = ""
        self.template = ""        # the template kind in use once loaded
        self.model = self.tokenizer = None
        self._queue: collections.deque[Job] = collections.deque()
        self._running: Job | None = None
        self._cv = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"arena-{name}", daemon=True)

    # -- public -----------------------------------------------------------------------------------

    def start(self) -> "ModelWorker":
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        with self._cv:
            self._stopping = True
            for job in self._queue:
                job.cancel()
            if self._running is not None:
                self._running.cancel()
            self._cv.notify_all()
        self._thread.join(timeout)

    @property
    def available(self) -> bool:
        """Can be paired: loaded or still loading (not failed)."""
        return self.state != "failed"

    def waiting(self) -> int:
        with self._cv:
            return len(self._queue) + (self._running is not None)

    def submit(self, messages: list[dict], settings: SamplingSettings, listener: threading.Event) -> Job:
        job = Job([dict(m) for m in messages], settings, listener)
        with self._cv:
            if self.state == "failed":
                self._finish(job, FAILED, error="this model failed to load")
                return job
            if len(self._queue) >= self.max_queue:
                raise QueueFull(f"{len(self._queue)} requests already wait for one of the models; try again shortly")
            self._queue.append(job)
            job.ahead = len(self._queue) - 1 + (self._running is not None)
            self._cv.notify_all()
        job.changed()
        return job

    def public_message(self, exc: BaseException) -> str:
        """One line about ``exc`` that does not name the model."""
        text = (str(exc).strip().splitlines() or [""])[0][:300]
        for secret in sorted({self.path, self.name}, key=len, reverse=True):
            text = text.replace(secret, "<model>")
        return f"{type(exc).__name__}: {text}" if not isinstance(exc, ChatflowError) else text

    # -- the thread -------------------------------------------------------------------------------

    def _load(self) -> None:
        with self.load_lock:
            if self._stopping:
                return
            self.state = "loading"
            try:
                self.model, self.tokenizer = self.loader()
                self.template = template_kind(self.tokenizer, self.requested_template)
            except Exception as exc:   # noqa: BLE001 - any failure becomes a message, the server goes on
                print(f"chatflow arena: model {self.name} ({self.path}) failed to load:", file=sys.stderr)
                traceback.print_exc(file=sys.stderr)
                self.error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                with self._cv:
                    self.state = "failed"
                    while self._queue:
                        self._finish(self._queue.popleft(), FAILED, error="this model failed to load")
                return
            self.state = "ready"
            print(f"chatflow arena: model {self.name} ready ({self.template} template)", file=sys.stderr, flush=True)

    def _next(self) -> Job | None:
        with self._cv:
            while not self._queue and not self._stopping:
                self._cv.wait()
            if self._stopping:
                return None
            job = self._queue.popleft()
            self._running = job if not job.cancelled.is_set() else None
            for i, waiting in enumerate(self._queue):
                waiting.ahead = i + (self._running is not None)
                waiting.changed()
        return job

    def _run(self) -> None:
        self._load()
        while not self._stopping:
            job = self._next()
            if job is None:
                break
            if job.cancelled.is_set():
                self._finish(job, CANCELLED)
                continue
            job.state, job.ahead = RUNNING, 0
            job.changed()

            def on_text(text: str, job: Job = job) -> None:
                job.text = text
                job.changed()

            try:
                reply = generate_reply(self.model, self.tokenizer, self.template, job.messages, job.settings,
                                       on_text, job.cancelled)
            except ConversationTooLong as exc:
                job.too_long = True
                self._finish(job, FAILED, error=str(exc))
            except Exception as exc:   # noqa: BLE001
                print(f"chatflow arena: model {self.name} failed to generate:", file=sys.stderr)
                traceback.print_exc(file=sys.stderr)
                self._finish(job, FAILED, error=self.public_message(exc))
            else:
                job.reply, job.text = reply, reply.text
                self._finish(job, CANCELLED if reply.stop == "cancelled" else DONE)
            with self._cv:
                self._running = None
                for i, waiting in enumerate(self._queue):
                    waiting.ahead = i
                    waiting.changed()

    @staticmethod
    def _finish(job: Job, state: str, error: str = "") -> None:
        job.state, job.error = state, error
        job.changed()
