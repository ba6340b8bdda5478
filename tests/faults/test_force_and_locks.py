"""Nothing lost: --force replaces only chatflow's own outputs, never an input, and two writers never share an
output (issue 12, "Data loss")."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from fault_support import (assert_clean_error, assert_ok, cli, dataset_tree, hidden_leftovers, kill_after, start,
                           tree, wait_until_gone)
from test_preprocess import make_mixture

from chatflow_plugin.outputs import MARKER, lock_path


@pytest.fixture
def data(tmp_path):
    return make_mixture(tmp_path / "data")


def _preprocess(mixture, spm, out, *extra):
    return cli("preprocess", "--mixture", mixture, "--tokenizer", spm, "--output_dir", out, "--quiet", *extra)


def test_force_into_a_folder_holding_a_foreign_file_refuses_and_deletes_nothing(data, spm_model, tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "my_thesis.txt").write_text("years of work")
    assert_clean_error(_preprocess(data, spm_model, precious, "--force"), "preprocess",
                       f"{precious} holds no {MARKER}", "will not replace it")
    assert tree(precious) == {"my_thesis.txt": b"years of work"}
    # an output chatflow wrote, with a file added by hand: refused too
    out = tmp_path / "shards"
    assert_ok(_preprocess(data, spm_model, out))
    (out / "notes.txt").write_text("mine")
    assert_clean_error(_preprocess(data, spm_model, out, "--force"), "preprocess", "notes.txt")
    assert (out / "notes.txt").read_text() == "mine"
    (out / "notes.txt").unlink()
    before = dataset_tree(out)
    assert_ok(_preprocess(data, spm_model, out, "--force"))              # its own output: replaced
    assert dataset_tree(out) == before and hidden_leftovers(tmp_path, "shards") == []


def test_the_output_is_never_an_input_of_the_same_run(data, spm_model, tmp_path):
    corpora = tree(data.parent)
    assert_clean_error(_preprocess(data, spm_model, data.parent, "--force"), "preprocess", "an input of this run")
    assert_clean_error(_preprocess(data, spm_model, data.parent, "--force", "--data_dir", data.parent),
                       "preprocess", "an input of this run")
    assert tree(data.parent) == corpora


def test_force_over_a_regular_file_refuses_and_leaves_no_debris(data, spm_model, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert_clean_error(_preprocess(data, spm_model, afile, "--force"), "preprocess", "is a file")
    assert afile.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["afile", "data"]


def test_expand_vocab_never_overwrites_without_force_nor_its_own_input(spm_model, tmp_path):
    base = tmp_path / "base.model"
    base.write_bytes(spm_model.read_bytes())
    pieces = tmp_path / "pieces.txt"
    pieces.write_text("龘\n")
    args = ["expand-vocab", "--tokenizer", base, "--pieces", pieces]
    assert_clean_error(cli(*args, "--output_tokenizer", base), "expand-vocab", "is", "an input of this run")
    assert_clean_error(cli(*args, "--output_tokenizer", base, "--force"), "expand-vocab", "an input of this run")
    assert base.read_bytes() == spm_model.read_bytes()
    out = tmp_path / "out.model"
    out.write_text("my notes, not a tokenizer")
    assert_clean_error(cli(*args, "--output_tokenizer", out), "expand-vocab", "already exists (pass --force")
    assert_clean_error(cli(*args, "--output_tokenizer", out, "--force"), "expand-vocab", "is not a sentencepiece model")
    assert out.read_text() == "my notes, not a tokenizer"
    out.unlink()
    assert_ok(cli(*args, "--output_tokenizer", out))
    assert_ok(cli(*args, "--output_tokenizer", out, "--force"))               # its own output: replaced
    assert_clean_error(cli(*args, "--output_tokenizer", tmp_path / "o2.model", "--max_new_pieces", "-3",
                           "--corpus", pieces), "expand-vocab", "--max_new_pieces must be 0 or more, got -3")


def test_convert_force_refuses_a_foreign_folder(tmp_path):
    foreign = tmp_path / "hf"
    foreign.mkdir()
    (foreign / "README.md").write_text("my model card")
    tp = tmp_path / "tp.bin"
    tp.write_bytes(b"not read: the output is checked first")
    proc = cli("convert", "tp2hf", tp, foreign, "--force", "--tp_config", tmp_path / "none.json")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert tree(foreign) == {"README.md": b"my model card"}


def _big_mixture(root: Path, lines: int = 40000) -> Path:
    """A mixture whose preprocessing takes a few seconds on one worker (``lines`` more English records)."""
    mixture = make_mixture(root)
    with open(root / "en.jsonl", "a", encoding="utf-8") as handle:
        for i in range(lines):
            handle.write(json.dumps({"text": f"line {i} of a long corpus about rivers, mountains and schools."}) + "\n")
    return mixture


def _writing(mixture: Path, spm_model: Path, out: Path, workers: str):
    """A preprocess run into ``out``, returned once it holds the output's lock."""
    proc = start("preprocess", "--mixture", mixture, "--tokenizer", spm_model, "--output_dir", out,
                 "--workers", workers, "--quiet", "--chunk_mb", "0.05")
    deadline = time.time() + 60
    while not lock_path(out).exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert lock_path(out).exists(), "the run never took its lock"
    return proc


def test_a_second_writer_of_one_output_is_refused_naming_the_first(tmp_path, spm_model):
    mixture = _big_mixture(tmp_path / "big")
    out = tmp_path / "shards"
    first = _writing(mixture, spm_model, out, "1")
    second = _preprocess(mixture, spm_model, out, "--force")
    assert_clean_error(second, "preprocess", f"is being written by process {first.pid}", str(lock_path(out)))
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert (out / "manifest.json").is_file() and not lock_path(out).exists()


def test_a_lock_left_by_a_killed_writer_is_recovered(tmp_path, spm_model):
    mixture = _big_mixture(tmp_path / "big", lines=400000)     # still running after 0.5 s with two workers
    out = tmp_path / "shards"
    proc = _writing(mixture, spm_model, out, "2")
    cut, err = kill_after(proc, 0.5, signal.SIGKILL)
    assert cut and lock_path(out).exists() and not out.exists()
    assert wait_until_gone(str(out)) == []                                # its workers followed it
    assert "BrokenPipeError" not in err and "Traceback" not in err
    done = assert_ok(_preprocess(mixture, spm_model, out))
    assert "removed the stale lock" in done.stderr
    assert not lock_path(out).exists() and hidden_leftovers(tmp_path, "shards") == []


def test_train_refuses_its_dataset_or_another_outputs_folder_as_output_dir(tmp_path, spm_model, data):
    shards = tmp_path / "shards"
    assert_ok(_preprocess(data, spm_model, shards))
    before = tree(shards)
    args = ["train", "--dataset_dir", shards, "--model_config", Path(__file__).resolve().parents[2] /
            "models" / "hf" / "demo_tiny.json", "--train_steps", "1", "--micro_batch_size", "1", "--quiet"]
    assert_clean_error(cli(*args, "--output_dir", shards), "train", "an input of this run")
    assert tree(shards) == before
    other = tmp_path / "other_dataset"
    assert_ok(_preprocess(data, spm_model, other))
    assert_clean_error(cli(*args, "--output_dir", other), "train", "holds a chatflow dataset, not a train-run")


def test_clo_train_force_replaces_only_a_clo_run(tmp_path):
    from chatflow_plugin.errors import ChatflowError
    from chatflow_plugin.hosts.hf.run import run_directory

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "results.csv").write_text("keep")
    with pytest.raises(ChatflowError, match="holds no .chatflow-output.json"):
        with run_directory(mine, "clo-run", ("run.json",), replace=True):
            pass
    assert (mine / "results.csv").read_text() == "keep"
    run = tmp_path / "run"
    with run_directory(run, "clo-run", ("run.json", "checkpoints")):
        (run / "run.json").write_text("{}")
    with run_directory(run, "clo-run", ("run.json", "checkpoints"), replace=True):
        assert sorted(os.listdir(run)) == [MARKER]


def test_demo_force_replaces_only_a_demo_folder(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "paper.tex").write_text("draft")
    assert_clean_error(cli("demo", "--quick", "--output_dir", mine, "--force"), "demo", "holds no .chatflow-output.json")
    assert tree(mine) == {"paper.tex": b"draft"}
