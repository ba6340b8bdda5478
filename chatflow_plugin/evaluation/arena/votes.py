"""The arena's vote file: the JSONL that ``chatflow elo`` reads, one complete line per vote.

Appending is safe under concurrent voters and a kill at any moment:

* each vote is one ``json.dumps`` line (newlines inside texts are escaped), written with ``os.write`` on a
  descriptor opened ``O_APPEND`` while holding an exclusive ``flock`` on the file, so lines from threads of
  one server, or from several servers sharing the file, never interleave;
* the line is ``fsync``-ed before :meth:`VoteStore.append` returns, and only then does the page say the
  vote is saved: an acknowledged vote survives a crash;
* a writer killed in the middle of a line (or a full disk) can leave a torn last line. Before every
  append, and when the store opens, a file that does not end in a newline is repaired: the torn fragment
  (a vote never acknowledged) is copied to ``VOTES.torn-<time>-<pid>`` and cut off, so the next vote
  starts on a line of its own and ``chatflow elo`` never sees a corrupt line. A failed write is cut off
  the same way before the error is reported.

A restart appends to the same file, which must be a votes file: absent, empty, or starting with a vote record
(or the beginning of one, a first write cut short). Anything else (a text file, a model's ``config.json``) is
refused before the server starts, untouched: the store never repairs or appends to a file it did not write.
``flock`` is advisory and local: several servers may share a votes file on one machine's file system, not over
NFS.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

from ...files import atomic_file
from ...errors import ChatflowError
from ..elo import read_votes

# how every vote line starts (rounds.vote_record's first key): recognises a first record cut short
VOTE_START = re.compile(rb'^\{\s*"model_a"\s*:')
# the page's four buttons -> the winner spelling that ``chatflow elo`` reads (Chatbot Arena's for "both bad")
WINNERS = {"a": "a", "b": "b", "tie": "tie", "bothbad": "tie (bothbad)"}
SCHEMA = 1   # version of the fields written by rounds.vote_record


class VoteStore:
    """Append-only votes file; see the module docstring for the guarantees."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if self.path.is_dir():
            raise ChatflowError(f"--votes {self.path}: is a directory, expected a JSONL file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.repaired: list[Path] = []   # side files holding torn fragments cut off by this store
        with self._locked() as fd:
            self._check_votes_file(fd)
            self._repair(fd)

    # -- writing ----------------------------------------------------------------------------------

    def append(self, record: dict) -> None:
        """Write ``record`` as one line and make it durable; raises ChatflowError if it cannot be saved."""
        if record.get("winner") not in WINNERS.values():
            raise ChatflowError(f"vote winner {record.get('winner')!r} is not one of {sorted(WINNERS.values())}")
        data = (json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
        with self._locked() as fd:
            self._repair(fd)
            start = os.fstat(fd).st_size
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            except OSError as exc:
                try:   # leave no partial line behind (e.g. disk full)
                    os.ftruncate(fd, start)
                except OSError:
                    pass
                raise ChatflowError(f"{self.path}: could not save the vote ({exc.strerror or exc})") from None

    # -- reading ----------------------------------------------------------------------------------

    def pair_counts(self) -> tuple[Counter, Counter]:
        """(votes per unordered pair, times each model sat on side A of each pair) of the valid lines so far."""
        pairs: Counter = Counter()
        sides: Counter = Counter()
        if not self.path.exists() or self.path.stat().st_size == 0:
            return pairs, sides
        try:
            votes, problems = read_votes(self.path)
        except ChatflowError as exc:
            if "no valid votes" in str(exc):
                raise ChatflowError(f"--votes {self.path}: has no valid vote line; is it a votes file? ({exc})") from None
            raise
        if problems:
            print(f"chatflow arena: {self.path}: {len(problems)} malformed line(s) left as they are (first: "
                  f"{problems[0]}); `chatflow elo` skips them", file=sys.stderr)
        for a, b in zip(votes.a.tolist(), votes.b.tolist()):
            pairs[frozenset((votes.models[a], votes.models[b]))] += 1
            sides[(votes.models[a], votes.models[b])] += 1
        return pairs, sides

    def count(self) -> int:
        """Lines in the file (every line this store wrote is one vote)."""
        if not self.path.exists():
            return 0
        with open(self.path, "rb") as handle:
            return sum(1 for line in handle if line.strip())

    # -- plumbing ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        """A descriptor of the file opened for appending, held under the thread lock and an exclusive flock."""
        with self._lock:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            except OSError as exc:
                raise ChatflowError(f"--votes {self.path}: cannot open for appending ({exc.strerror})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield fd
            finally:
                os.close(fd)   # also releases the flock

    def _check_votes_file(self, fd: int) -> None:
        """Refuse a file that is not a votes file (see the module docstring), before anything is written to it."""
        head = os.pread(fd, 1 << 20, 0)
        text = head.lstrip(b"\r\n\t ")
        if not text:
            return
        first, newline, _ = text.partition(b"\n")
        if first.startswith(b"\xef\xbb\xbf"):
            first = first[3:]
        try:
            record = json.loads(first)
        except ValueError:       # not JSON (or not UTF-8); a first record cut short is recognised by its start
            record = None
            if not newline and len(head) < 1 << 20 and VOTE_START.match(first):
                return
        if isinstance(record, dict) and {"model_a", "model_b", "winner"} <= set(record):
            return
        shown = first[:60].decode("utf-8", "replace")
        raise ChatflowError(f"--votes {self.path}: not a votes file (its first line, {shown!r}, is not a vote "
                            f"record); give a new file or one `chatflow arena` wrote")

    def _repair(self, fd: int) -> None:
        """Cut a torn last line (no trailing newline) off the file, keeping a copy of it beside the file."""
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return
        keep = size
        while keep > 0:   # scan back for the last newline
            chunk = os.pread(fd, min(65536, keep), keep - min(65536, keep))
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                keep = keep - len(chunk) + cut + 1
                break
            keep -= len(chunk)
        fragment = os.pread(fd, size - keep, keep)
        side = self.path.with_name(f"{self.path.name}.torn-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
        with atomic_file(side, "wb") as handle:
            handle.write(fragment)
        os.ftruncate(fd, keep)
        os.fsync(fd)
        self.repaired.append(side)
        print(f"chatflow arena: {self.path} ended in a torn line of {len(fragment)} bytes (a write cut short); "
              f"moved it to {side}", file=sys.stderr)
