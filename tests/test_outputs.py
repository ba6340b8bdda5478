"""chatflow_plugin.outputs: --force replaces only chatflow's own outputs, one writer per output, leftovers of
killed runs removed. (The commands' behaviour under these rules: tests/faults/.)"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from chatflow_plugin.errors import ChatflowError
from chatflow_plugin.outputs import (MARKER, atomic_directory, check_not_input, check_replaceable, lock_path,
                                     output_lock, read_marker, remove_leftovers, replace_directory, write_marker)


def _write(tmp, kind="dataset", **files):
    with atomic_directory(tmp, kind) as folder:
        for name, text in (files or {"a.bin": "a"}).items():
            (folder / name).write_text(text)


def test_an_output_is_marked_with_what_it_owns_and_appears_whole(tmp_path):
    out = tmp_path / "out"
    _write(out, **{"a.bin": "1", "manifest.json": "{}"})
    marker = read_marker(out)
    assert marker["kind"] == "dataset" and marker["owns"] == ["a.bin", "manifest.json"]
    assert marker["created_by"].startswith("chatflow-plugin ")
    assert sorted(os.listdir(tmp_path)) == ["out"]                     # no lock, no temporary folder left
    with pytest.raises(ChatflowError, match="already exists .pass --force"):
        _write(out)
    with atomic_directory(out, "dataset", force=True) as folder:
        (folder / "b.bin").write_text("2")
    assert sorted(os.listdir(out)) == [MARKER, "b.bin"]
    with pytest.raises(RuntimeError):                                   # a failed block changes nothing
        with atomic_directory(out, "dataset", force=True) as folder:
            (folder / "c.bin").write_text("3")
            raise RuntimeError("boom")
    assert sorted(os.listdir(out)) == [MARKER, "b.bin"] and sorted(os.listdir(tmp_path)) == ["out"]


def test_force_never_replaces_what_chatflow_did_not_write(tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "my_thesis.txt").write_text("years of work")
    with pytest.raises(ChatflowError, match=f"holds no {MARKER}: it is not a folder chatflow wrote"):
        check_replaceable(precious, "dataset")
    with pytest.raises(ChatflowError, match="not a folder chatflow wrote"):
        with atomic_directory(precious, "dataset", force=True):
            pass
    assert (precious / "my_thesis.txt").read_text() == "years of work"
    out = tmp_path / "out"
    _write(out)
    (out / "notes.txt").write_text("added by hand")                     # a foreign file inside an output
    with pytest.raises(ChatflowError, match=r"holds files chatflow did not write \(notes.txt\)"):
        check_replaceable(out, "dataset")
    (out / "notes.txt").unlink()
    with pytest.raises(ChatflowError, match="holds a chatflow dataset, not a hf-model"):
        check_replaceable(out, "hf-model")
    check_replaceable(out, "dataset")
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(ChatflowError, match="is a file, not a folder chatflow wrote"):
        check_replaceable(afile, "dataset")
    link = tmp_path / "link"
    link.symlink_to(out)
    with pytest.raises(ChatflowError, match="symbolic link"):
        check_replaceable(link, "dataset")
    empty = tmp_path / "empty"
    empty.mkdir()
    check_replaceable(empty, "dataset")                                 # nothing to lose
    check_replaceable(tmp_path / "absent", "dataset")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "empty", "link", "out", "precious"]


def test_run_markers_own_patterns(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    write_marker(run, "train-run", ["log.jsonl", "checkpoint-*"])
    for name in ("log.jsonl", "checkpoint-2", "checkpoint-40"):
        (run / name).mkdir()
    check_replaceable(run, "train-run")
    (run / "data.csv").write_text("mine")
    with pytest.raises(ChatflowError, match="data.csv"):
        check_replaceable(run, "train-run")


def test_an_output_is_never_an_input_of_its_run(tmp_path):
    data = tmp_path / "data"
    (data / "corpus").mkdir(parents=True)
    (data / "corpus" / "en.jsonl").write_text("{}\n")
    with pytest.raises(ChatflowError, match="holds .*en.jsonl, an input of this run"):
        check_not_input(data, [data / "corpus" / "en.jsonl"])
    with pytest.raises(ChatflowError, match="is .*tok.model, an input"):
        check_not_input(tmp_path / "tok.model", [tmp_path / "x" / ".." / "tok.model"])
    check_not_input(data / "out", [data / "corpus" / "en.jsonl", None, ""])   # beside an input is fine
    with pytest.raises(ChatflowError, match="an input of this run"):
        with atomic_directory(data, "dataset", force=True, inputs=[data / "corpus" / "en.jsonl"]):
            pass
    assert (data / "corpus" / "en.jsonl").is_file()


def test_a_second_writer_is_refused_naming_the_first(tmp_path):
    out = tmp_path / "out"
    with output_lock(out) as path:
        owner = json.loads(path.read_text())
        assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
        with pytest.raises(ChatflowError, match=rf"out is being written by process {os.getpid()} on .*lock"):
            with output_lock(out):
                pass
        child = subprocess.run([sys.executable, "-c", "from chatflow_plugin.outputs import output_lock\n"
                                f"with output_lock({str(out)!r}): pass"], capture_output=True, text=True)
        assert child.returncode == 1 and "is being written by process" in child.stderr
    assert not path.exists()                                            # released


def test_a_stale_lock_is_taken_over(tmp_path, capsys):
    out = tmp_path / "out"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock_path(out).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(),
                                          "started": "earlier", "command": "chatflow preprocess"}))
    with output_lock(out):
        assert json.loads(lock_path(out).read_text())["pid"] == os.getpid()
    assert "removed the stale lock" in capsys.readouterr().err
    # a live pid that belongs to another process start (the pid was reused) is stale too
    lock_path(out).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "process_start": "1"}))
    with output_lock(out):
        pass
    # a lock taken on another host cannot be checked: respected
    lock_path(out).write_text(json.dumps({"pid": 1, "host": "elsewhere-" + socket.gethostname()}))
    with pytest.raises(ChatflowError, match="on elsewhere-"):
        with output_lock(out):
            pass


def test_leftovers_of_killed_runs_are_removed_at_the_next_start(tmp_path):
    out = tmp_path / "out"
    for name in (".out.ab12cd34.partial", ".out.partial", ".out.old-123"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
    (tmp_path / ".out.zz99yy88.tmp").write_text("x")
    keep = [".outer.ab12cd34.partial", ".other.partial", "out.partial", ".out.lock.txt"]
    for name in keep:
        (tmp_path / name).mkdir()
    _write(out)
    assert sorted(os.listdir(tmp_path)) == sorted(keep + ["out"])
    assert remove_leftovers(tmp_path / "nowhere" / "x") == []


def test_replace_directory_over_a_file_leaves_nothing_behind(tmp_path):
    src, target = tmp_path / "new", tmp_path / "afile"
    src.mkdir()
    target.write_text("old")
    replace_directory(src, target)
    assert target.is_dir() and sorted(os.listdir(tmp_path)) == ["afile"]
