"""Nothing lost: --force replaces only chatflow's own outputs, never an input, and two writers never share an
output (issue 12, "Data loss"; issue 21, "Data lost or changed")."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from fault_support import (assert_clean_error, assert_ok, cli, dataset_tree, hidden_leftovers, kill_after,
                           round_params, start, tree, wait_until_gone)
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
    from chatflow_plugin.clo.train import RUN_KIND
    from chatflow_plugin.errors import ChatflowError
    from chatflow_plugin.hosts.hf.run import run_directory

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "results.csv").write_text("keep")
    with pytest.raises(ChatflowError, match="holds no .chatflow-output.json"):
        with run_directory(mine, RUN_KIND, replace=True):
            pass
    assert (mine / "results.csv").read_text() == "keep"
    run = tmp_path / "run"
    with run_directory(run, RUN_KIND):
        (run / "run.json").write_text("{}")
        (run / "checkpoints").mkdir()
    with run_directory(run, RUN_KIND, replace=True):
        assert sorted(os.listdir(run)) == [MARKER]


def test_demo_force_replaces_only_a_demo_folder(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "paper.tex").write_text("draft")
    assert_clean_error(cli("demo", "--quick", "--output_dir", mine, "--force"), "demo", "holds no .chatflow-output.json")
    assert tree(mine) == {"paper.tex": b"draft"}


# -- issue 21: ownership bounded by what the kind writes, folders chatflow did not write, output inside an input ------

TINY = Path(__file__).resolve().parents[2] / "models" / "hf" / "demo_tiny.json"


def test_train_never_adopts_a_folder_it_did_not_write(tmp_path, spm_model, data):
    shards = tmp_path / "shards"
    assert_ok(_preprocess(data, spm_model, shards))
    mine = tmp_path / "mine"
    (mine / "final").mkdir(parents=True)
    (mine / "final" / "paper.tex").write_text("the paper")
    (mine / "checkpoint-1").mkdir()
    (mine / "checkpoint-1" / "mine.txt").write_text("mine")
    (mine / "log.jsonl").write_text('{"my": "log"}\n')
    before = tree(mine)
    proc = cli("train", "--dataset_dir", shards, "--output_dir", mine, "--model_config", TINY, "--train_steps", "1",
               "--micro_batch_size", "1", "--quiet")
    assert_clean_error(proc, "train", f"{mine} holds entries chatflow did not write where a train-run writes its own",
                       "checkpoint-1/", "final/", "log.jsonl")
    assert tree(mine) == before and not (mine / MARKER).exists()


def test_demo_never_adopts_a_folder_it_did_not_write_and_says_what_it_leaves(tmp_path):
    mine = tmp_path / "mine"
    (mine / "report").mkdir(parents=True)
    (mine / "report" / "notes.md").write_text("my report")
    assert_clean_error(cli("demo", "--quick", "--output_dir", mine), "demo", "report/")
    assert tree(mine) == {"report/notes.md": b"my report"} and not (mine / MARKER).exists()
    beside = tmp_path / "beside"
    beside.mkdir()
    (beside / "paper.tex").write_text("draft")
    proc = cli("demo", "--quick", "--output_dir", beside, "--data_dir", tmp_path / "absent")
    assert_clean_error(proc, "demo", "data folder not found")            # stops early: the folder was opened
    assert f"{beside} holds entries chatflow did not write (paper.tex)" in proc.stderr
    # refused before any result: the marker it added is taken back (docs/reliability.md, a refusal leaves
    # nothing behind), the user's file untouched
    assert tree(beside) == {"paper.tex": b"draft"}
    proc = cli("demo", "--quick", "--output_dir", beside, "--stop_after", "foundation", "--foundation_cache",
               tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr[-2000:]
    marker = json.loads((beside / MARKER).read_text())                  # a demo that ran claims only its own
    assert "paper.tex" not in marker["owns"] and (beside / "paper.tex").read_text() == "draft"
    assert_clean_error(cli("demo", "--quick", "--output_dir", beside, "--force"), "demo", "paper.tex")
    assert (beside / "paper.tex").read_text() == "draft"


def test_force_checks_the_type_of_each_owned_entry(data, spm_model, tmp_path):
    out = tmp_path / "shards"
    assert_ok(_preprocess(data, spm_model, out))
    (out / "zh.tokens.bin").unlink()
    (out / "zh.tokens.bin").mkdir()                                       # the user's folder at a name the marker owns
    (out / "zh.tokens.bin" / "thesis.txt").write_text("years of work")
    assert_clean_error(_preprocess(data, spm_model, out, "--force"), "preprocess", "zh.tokens.bin/")
    assert (out / "zh.tokens.bin" / "thesis.txt").read_text() == "years of work"


def test_force_over_a_split_dataset_checks_each_part(data, spm_model, tmp_path):
    out = tmp_path / "shards"
    split = ("--split", "train:0.5,valid:0.5", "--workers", "1")
    assert_ok(_preprocess(data, spm_model, out, *split))
    assert (out / "train" / MARKER).is_file() and (out / "valid" / MARKER).is_file()   # each part a dataset
    assert_ok(_preprocess(data, spm_model, out, "--force", *split))                    # its own: replaced
    assert_ok(_preprocess(data, spm_model, out, "--force"))                            # by one without a split too
    assert_ok(_preprocess(data, spm_model, out, "--force", *split))
    (out / "valid" / "notes.txt").write_text("mine")                      # the user's file inside a part
    assert_clean_error(_preprocess(data, spm_model, out, "--force", *split), "preprocess", "valid/notes.txt")
    assert (out / "valid" / "notes.txt").read_text() == "mine"
    (out / "valid" / "notes.txt").unlink()
    (out / "valid" / MARKER).unlink()                                     # a part without its marker is not ours
    assert_clean_error(_preprocess(data, spm_model, out, "--force", *split), "preprocess", "valid/")
    assert (out / "valid" / "manifest.json").is_file()


def test_a_marker_written_by_hand_claims_only_what_its_kind_writes(data, spm_model, tmp_path):
    out = tmp_path / "looks_like_a_dataset"
    out.mkdir()
    (out / "results.csv").write_text("keep")
    (out / "manifest.json").write_text("{}")
    (out / MARKER).write_text(json.dumps({"kind": "dataset", "created_by": "me", "owns": ["*"]}))
    assert_clean_error(_preprocess(data, spm_model, out, "--force"), "preprocess", "results.csv")
    assert (out / "results.csv").read_text() == "keep"
    run = tmp_path / "run"
    run.mkdir()
    (run / "paper.tex").write_text("draft")
    (run / MARKER).write_text(json.dumps({"kind": "train-run", "created_by": "me", "owns": ["*", "paper*"]}))
    from chatflow_plugin.errors import ChatflowError
    from chatflow_plugin.hosts.hf.run import run_directory
    from chatflow_plugin.hosts.hf.train import RUN_KIND
    with pytest.raises(ChatflowError, match=r"did not write \(paper.tex\)"):
        with run_directory(run, RUN_KIND, replace=True):
            pass
    assert (run / "paper.tex").read_text() == "draft"


def test_no_output_inside_an_input_folder(data, spm_model, tmp_path):
    raw = data.parent
    corpora = tree(raw)
    assert_clean_error(_preprocess(data, spm_model, raw / "out", "--data_root", raw), "preprocess",
                       f"--output_dir {raw / 'out'} is inside {raw}, an input folder of this run")
    globbed = tmp_path / "globbed.json"
    spec = json.loads(data.read_text())
    spec["data_root"] = str(raw)
    spec["groups"][0]["sources"][0]["paths"] = ["*.jsonl"]                # a pattern scans the folder
    globbed.write_text(json.dumps(spec))
    assert_clean_error(_preprocess(globbed, spm_model, raw / "out"), "preprocess", "an input folder of this run")
    assert tree(raw) == corpora
    shards = tmp_path / "shards"
    assert_ok(_preprocess(data, spm_model, shards))
    before = tree(shards)
    assert_clean_error(cli("train", "--dataset_dir", shards, "--output_dir", shards / "sub", "--model_config", TINY,
                           "--train_steps", "1", "--quiet"), "train", "is inside", "an input folder of this run")
    assert tree(shards) == before
    from test_hostile_input import _tiny_hf_model
    hf = _tiny_hf_model(tmp_path / "hf")
    model = tree(hf)
    assert_clean_error(cli("convert", "hf2tp", hf, hf / "tp", "--tokenizer", spm_model, "--quiet"), "convert",
                       "is inside", "an input folder of this run")
    assert tree(hf) == model


def test_a_lock_without_an_owner_record_is_taken_over_once_old(data, spm_model, tmp_path):
    from chatflow_plugin.outputs import UNREADABLE_LOCK_AGE

    out = tmp_path / "shards"
    for content in ("", "{}", '{"pid": "x"}', "\0\0garbage"):
        lock_path(out).write_text(content)                                # a writer killed while creating it
        assert_clean_error(_preprocess(data, spm_model, out, "--force"), "preprocess", "holds no owner record",
                           f"once it is {UNREADABLE_LOCK_AGE:.0f} s old")
        old = time.time() - UNREADABLE_LOCK_AGE - 5
        os.utime(lock_path(out), (old, old))
        done = assert_ok(_preprocess(data, spm_model, out, "--force"))
        assert f"removed the lock {lock_path(out)}: it holds no owner record" in done.stderr, content
        assert not lock_path(out).exists()


@pytest.mark.parametrize("round_", round_params(5))
def test_concurrent_expand_vocab_runs_into_one_output_one_wins_the_others_are_refused(spm_model, tmp_path, round_):
    pieces = tmp_path / "pieces.txt"
    pieces.write_text("龘\n靐\n")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(chr(0x4E00 + (i * 7 + round_) % 2000) for i in range(60000)), encoding="utf-8")
    out = tmp_path / "out.model"
    runs = [start("expand-vocab", "--base_model", spm_model, "--pieces", pieces, "--corpus", corpus,
                  "--max_new_pieces", str(10 + k), "--output_model", out, "--report", tmp_path / f"r{k}.json", "--quiet")
            for k in range(3)]
    results = [(proc.wait(300), proc.communicate()[1]) for proc in runs]
    won = [k for k, (code, _) in enumerate(results) if code == 0]
    assert len(won) == 1, results                                          # never two writers of one output
    for k, (code, err) in enumerate(results):
        if k != won[0]:
            assert code == 2 and "Traceback" not in err, err
            assert "is being written by process" in err or "already exists (pass --force" in err, err
    report = json.loads((tmp_path / f"r{won[0]}.json").read_text())
    from chatflow_plugin.tokenizer import load_sentencepiece
    assert load_sentencepiece(out).get_piece_size() == report["size"]     # the output is the winner's
    assert not lock_path(out).exists() and hidden_leftovers(tmp_path, "out.model") == []


def test_baselines_never_overwrite_the_users_mixtures(tmp_path, data):
    mine = tmp_path / "mixtures"
    mine.mkdir()
    (mine / "static.json").write_text('{"my": "mixture"}')
    args = ["baselines", "--mixture", data, "--run_samples", "400", "--output_dir", mine]
    assert_clean_error(cli(*args), "baselines", "static.json")
    assert tree(mine) == {"static.json": b'{"my": "mixture"}'}
    (mine / "static.json").rename(mine / "mine.json")
    done = assert_ok(cli(*args))
    assert "mine.json" in done.stderr and (mine / "mine.json").read_text() == '{"my": "mixture"}'
    assert sorted(json.loads((mine / MARKER).read_text())["owns"])[:2] == [".*.tmp", "baselines.json"]
    assert_ok(cli(*args))                                                 # its own folder: written again
