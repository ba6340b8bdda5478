"""The arena's vote file: lines `chatflow elo` reads, no line lost or torn under concurrent writers or a kill."""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chatflow_plugin.errors import ChatflowError
from chatflow_plugin.evaluation.arena.votes import VoteStore
from chatflow_plugin.evaluation.elo import read_votes

ROOT = Path(__file__).resolve().parents[2]


def vote(i: int, writer: str = "w", pad: int = 0) -> dict:
    a, b = ("m1", "m2") if i % 2 else ("m2", "m3")
    return {"model_a": a, "model_b": b, "winner": ["a", "b", "tie", "tie (bothbad)"][i % 4],
            "conversation_a": [{"role": "user", "content": "问题\n" + "x" * pad}], "writer": writer, "i": i}


def lines(path: Path) -> list[dict]:
    raw = path.read_bytes()
    assert raw == b"" or raw.endswith(b"\n")   # empty: a writer killed before its first vote (a loaded machine)
    return [json.loads(line) for line in raw.decode("utf-8").splitlines()]


def test_votes_are_lines_that_elo_reads_and_a_restart_continues_the_file(tmp_path):
    path = tmp_path / "sub" / "votes.jsonl"
    store = VoteStore(path)
    for i in range(4):
        store.append(vote(i))
    store = VoteStore(path)   # a restart
    store.append(vote(4))
    got = lines(path)
    assert [r["i"] for r in got] == [0, 1, 2, 3, 4] and got[0]["conversation_a"][0]["content"].startswith("问题\n")
    votes, problems = read_votes(path, strict=True)
    assert len(votes) == 5 and not problems and list(votes.score_a) == [1.0, 0.0, 0.5, 0.5, 1.0]
    pairs, sides = store.pair_counts()
    assert pairs[frozenset(("m1", "m2"))] == 2 and pairs[frozenset(("m2", "m3"))] == 3
    assert sides[("m2", "m3")] == 3 and sides[("m3", "m2")] == 0 and store.count() == 5


def test_bad_winner_and_unusable_paths_are_refused(tmp_path):
    store = VoteStore(tmp_path / "v.jsonl")
    with pytest.raises(ChatflowError, match="winner 'draw'"):
        store.append({"model_a": "x", "model_b": "y", "winner": "draw"})
    assert store.count() == 0
    with pytest.raises(ChatflowError, match="is a directory"):
        VoteStore(tmp_path)
    other = tmp_path / "notes.txt"
    other.write_text("these are my notes\nnot votes\n", encoding="utf-8")
    with pytest.raises(ChatflowError, match="not a votes file"):
        VoteStore(other)
    assert other.read_text(encoding="utf-8") == "these are my notes\nnot votes\n"


def test_a_torn_last_line_is_moved_aside_before_the_next_vote(tmp_path, capsys):
    path = tmp_path / "v.jsonl"
    store = VoteStore(path)
    store.append(vote(0))
    with open(path, "ab") as handle:   # a writer killed mid-line
        handle.write(b'{"model_a": "m1", "model_b": "m2", "win')
    store.append(vote(1))
    assert [r["i"] for r in lines(path)] == [0, 1]
    assert len(store.repaired) == 1 and store.repaired[0].read_bytes() == b'{"model_a": "m1", "model_b": "m2", "win'
    assert "torn line" in capsys.readouterr().err
    with open(path, "ab") as handle:   # torn again, then the server restarts
        handle.write(b'{"model_a"')
    VoteStore(path)
    assert [r["i"] for r in lines(path)] == [0, 1]


def _writer(path: str, writer: str, n: int, pad: int) -> None:
    store = VoteStore(path)
    for i in range(n):
        store.append(vote(i, writer, pad))


def test_parallel_processes_and_threads_lose_no_line_and_tear_none(tmp_path):
    """Lines far above PIPE_BUF (4 KiB) from 4 processes x 3 threads at once: all there, all whole."""
    import threading

    path = tmp_path / "v.jsonl"
    n, pad = 40, 20_000
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), f"p{k}", n, pad)) for k in range(4)]
    for p in procs:
        p.start()
    threads = [threading.Thread(target=_writer, args=(str(path), f"t{k}", n, pad)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    got = lines(path)
    assert len(got) == 7 * n
    for writer in [f"p{k}" for k in range(4)] + [f"t{k}" for k in range(3)]:
        assert [r["i"] for r in got if r["writer"] == writer] == list(range(n))   # in order, none lost
    assert all(len(r["conversation_a"][0]["content"]) == 3 + pad for r in got)


KILLED_WRITER = """
import sys
from chatflow_plugin.evaluation.arena.votes import VoteStore
store = VoteStore(sys.argv[1])
i = 0
while True:
    store.append({"model_a": "m1", "model_b": "m2", "winner": "a", "i": i, "pad": "y" * 30000})
    print(i, flush=True)   # acknowledged only once the line is durable
    i += 1
"""


def test_a_writer_killed_at_any_moment_leaves_only_whole_lines_and_every_acknowledged_vote(tmp_path):
    path = tmp_path / "v.jsonl"
    acked = 0
    for k, delay in enumerate((0.35, 0.5, 0.6, 0.75, 0.9)):
        proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                                cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        time.sleep(delay + 0.013 * k)
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        acked += len(out.split())
        VoteStore(path)   # what a restarted server does first
        got = lines(path)   # every line parses
        assert acked <= len(got) <= acked + k + 1   # each acknowledged vote is there (an unacknowledged one may be)
    assert acked > 0
    read_votes(path, strict=True)
