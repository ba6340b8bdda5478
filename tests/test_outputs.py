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
from chatflow_plugin.outputs import (MARKER, OutputKind, atomic_directory, check_not_input, check_replaceable,
                                     foreign_entries, lock_path, output_folder, output_lock, read_marker,
                                     remove_leftovers, replace_directory, write_marker)


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


RUN = OutputKind("train-run", files=("log.jsonl", ".*.tmp"), folders=("final", "checkpoint-*"))


def test_run_markers_own_patterns(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    write_marker(run, RUN, ["log.jsonl", "final", "checkpoint-*"])
    (run / "log.jsonl").write_text("{}\n")
    for name in ("final", "checkpoint-2", "checkpoint-40"):
        (run / name).mkdir()
    check_replaceable(run, RUN)
    (run / "data.csv").write_text("mine")
    with pytest.raises(ChatflowError, match="data.csv"):
        check_replaceable(run, RUN)


def test_ownership_is_bounded_by_the_kind_names_and_entry_types(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "paper.tex").write_text("mine")
    write_marker(run, RUN, ["*", "paper.tex", "log.jsonl", "final"])           # a marker written by hand
    assert foreign_entries(run, read_marker(run)["owns"], RUN) == ["paper.tex"]
    (run / "paper.tex").unlink()
    (run / "log.jsonl").mkdir()                                                 # a folder where a file is written
    (run / "log.jsonl" / "notes.txt").write_text("mine")
    (run / "final").write_text("mine")                                          # a file where a folder is written
    assert foreign_entries(run, read_marker(run)["owns"], RUN) == ["final", "log.jsonl/"]
    with pytest.raises(ChatflowError, match=r"did not write \(final, log.jsonl/\)"):
        check_replaceable(run, RUN)
    # a kind given by name only: its marker's patterns claim nothing
    write_marker(run, "train-run", ["*"])
    assert foreign_entries(run, ["*"], "train-run") == ["final", "log.jsonl/"]


def test_a_dataset_owns_its_manifest_and_the_files_it_lists(tmp_path):
    from chatflow_plugin.data.shards import DATASET_KIND

    out = tmp_path / "shards"
    with atomic_directory(out, DATASET_KIND) as folder:
        (folder / "zh.tokens.bin").write_bytes(b"12")
        (folder / "manifest.json").write_text(json.dumps({"sources": [{"tokens_file": "zh.tokens.bin",
                                                                        "mask_file": None}]}))
    check_replaceable(out, DATASET_KIND)
    (out / "zh.tokens.bin").unlink()
    (out / "zh.tokens.bin").mkdir()                                             # the user's folder at that name
    (out / "zh.tokens.bin" / "thesis.txt").write_text("years of work")
    with pytest.raises(ChatflowError, match=r"zh.tokens.bin/"):
        check_replaceable(out, DATASET_KIND)
    (out / "zh.tokens.bin" / "thesis.txt").unlink()
    (out / "zh.tokens.bin").rmdir()
    (out / "notes.bin").write_text("x")
    write_marker(out, DATASET_KIND, ["*", "notes.bin", "manifest.json"])        # not a file the manifest lists
    with pytest.raises(ChatflowError, match=r"notes.bin"):
        check_replaceable(out, DATASET_KIND)


def test_a_folder_filled_over_time_never_adopts_the_users_entries(tmp_path, capsys):
    mine = tmp_path / "mine"
    (mine / "final").mkdir(parents=True)
    (mine / "final" / "paper.tex").write_text("draft")
    (mine / "log.jsonl").write_text("my log\n")
    with pytest.raises(ChatflowError, match=r"holds entries chatflow did not write where a train-run writes its "
                                            r"own \(final/, log.jsonl\)"):
        with output_folder(mine, RUN):
            pass
    assert read_marker(mine) is None and (mine / "log.jsonl").read_text() == "my log\n"
    beside = tmp_path / "beside"
    beside.mkdir()
    (beside / "slurm-42.out").write_text("scheduler log")
    with output_folder(beside, RUN):
        (beside / "log.jsonl").write_text("")
    assert "slurm-42.out" in capsys.readouterr().err
    assert read_marker(beside)["owns"] == list(RUN.entries())
    with pytest.raises(ChatflowError, match="slurm-42.out"):                   # never replaced with --force
        with output_folder(beside, RUN, replace=True):
            pass
    assert (beside / "slurm-42.out").read_text() == "scheduler log"
    with pytest.raises(ChatflowError, match="holds a chatflow train-run, not a demo"):
        with output_folder(beside, OutputKind("demo", files=("generations.json",), folders=())):
            pass


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
    import threading

    out = tmp_path / "out"
    with output_lock(out) as path:
        owner = json.loads(path.read_text())
        assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
        with output_lock(out):                                          # the holder may take it again
            pass
        assert path.exists()
        refused = []

        def other_thread():
            try:
                with output_lock(out):
                    pass
            except ChatflowError as exc:
                refused.append(str(exc))
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        assert refused and "another thread of this process" in refused[0]
        child = subprocess.run([sys.executable, "-c", "from chatflow_plugin.outputs import output_lock\n"
                                f"with output_lock({str(out)!r}): pass"], capture_output=True, text=True)
        assert child.returncode == 1 and f"is being written by process {os.getpid()} on" in child.stderr
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


def test_the_file_that_makes_a_folder_load_is_written_after_everything_else(tmp_path, monkeypatch):
    """A kill at any moment never leaves a .partial folder holding it: the marker is completed before it."""
    from chatflow_plugin import files, outputs

    written = []
    original = os.replace
    monkeypatch.setattr(files.os, "replace", lambda a, b: written.append(os.path.basename(b)) or original(a, b))
    with atomic_directory(tmp_path / "shards", "dataset") as folder:
        (folder / "en.tokens.bin").write_bytes(b"12")
        outputs.write_last(folder, "manifest.json", "{}")
        (partial,) = [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    assert written[-3:] == [MARKER, "manifest.json", "shards"]          # then only the folder's rename
    assert read_marker(tmp_path / "shards")["owns"] == ["en.tokens.bin", "manifest.json"]
    assert not partial.exists() and sorted(os.listdir(tmp_path)) == ["shards"]
