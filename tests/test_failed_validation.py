"""A command refused by its own validation leaves no new folder behind (neither the output nor the parent folders
it would have created, nor a marker-only folder) and leaves a folder the user already had as it was
(:func:`chatflow_plugin.outputs.undone_if_unused`, scripts/_common.sh ``make_output_dir``)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chatflow_plugin.cli import main as chatflow_main
from chatflow_plugin.errors import ChatflowError
from chatflow_plugin.outputs import MARKER, atomic_directory, output_lock, undone_if_unused

ROOT = Path(__file__).resolve().parents[1]


def _tree(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def _corpus_mixture(tmp: Path, groups=("corpus",)) -> Path:
    """A mixture of one-line JSONL sources, one group per kind in ``groups`` (the first source's second line is
    not JSON)."""
    raw = tmp / "raw"
    raw.mkdir(exist_ok=True)
    (raw / "g0.jsonl").write_text('{"text": "a line"}\nnot json\n', encoding="utf-8")
    for i in range(1, len(groups)):
        (raw / f"g{i}.jsonl").write_text('{"instruction": "say", "input": "", "output": "hi"}\n', encoding="utf-8")
    mixture = {"name": "t", "seq_length": 16, "T_grow": 40, "data_root": str(raw),
               "groups": [{"name": f"g{i}", "alpha": 0.5, "beta": 0.5,
                           "sources": [{"name": f"g{i}", "kind": kind, "paths": [f"g{i}.jsonl"]}]}
                          for i, kind in enumerate(groups)]}
    path = tmp / "mixture.json"
    path.write_text(json.dumps(mixture), encoding="utf-8")
    return path


# Each case: the command's arguments for an output at OUT, refused by validation. {mixture} is a mixture whose
# first source has a bad record; {spm} a tokenizer; {empty} an empty folder; {runs} a folder of a broken demo run.
CASES = {
    # refused inside the output's folder: a bad record under --on_bad_record fail, while tokenizing
    "preprocess": ["preprocess", "--mixture", "{mixture}", "--tokenizer", "{spm}", "--output_dir", "OUT",
                   "--on_bad_record", "fail", "--workers", "0"],
    "preprocess-split": ["preprocess", "--mixture", "{mixture}", "--tokenizer", "{spm}", "--output_dir", "OUT",
                         "--split", "heldout=0.5", "--on_bad_record", "fail", "--workers", "0"],
    # a run folder is created and marked before the dataset is read
    "train": ["train", "--dataset_dir", "{empty}", "--model_config", "tiny", "--output_dir", "OUT",
              "--train_steps", "1", "--warmup_steps", "0"],
    "clo-train": ["clo-train", "--model_path", "{empty}", "--data_dir", "{empty}", "--output_dir", "OUT"],
    # the demo's folder is created and marked before its data is split
    "demo": ["demo", "--quick", "--data_dir", "{empty}/no_such_corpora", "--output_dir", "OUT"],
    "search": ["search", "--output_dir", "OUT", "--dataset_dir", "{empty}", "--heldout_dir", "{empty}",
               "--objective", "mean(g0)", "--model_config", "tiny"],
    # refused once the mixture is read: no instruction group to make a second stage of
    "baselines": ["baselines", "--mixture", "{mixture}", "--run_samples", "100", "--output_dir", "OUT"],
    "demo-report": ["demo-report", "--runs_dir", "{runs}", "--output_dir", "OUT"],
    "expand-vocab": ["expand-vocab", "--tokenizer", "{spm}", "--output_tokenizer", "OUT", "--pieces", "{empty}"],
    "convert": ["convert", "hf2tp", "{empty}", "OUT"],
    "clo-data": ["clo-data", "--output_dir", "OUT", "--english", "{empty}/none.jsonl", "--target",
                 "{empty}/none.jsonl"],
    "eval": ["eval", "--data_dir", "{empty}", "--model_path", "{empty}", "--output", "OUT/results.json"],
    "figure1": ["figure1", "--run", "a={empty}", "--output", "OUT/figure1.png"],
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, spm_model) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("inputs")
    (tmp / "empty").mkdir()
    (tmp / "runs" / "dynamic_s0").mkdir(parents=True)      # a run folder holding no log
    return {"mixture": str(_corpus_mixture(tmp)), "spm": str(spm_model), "empty": str(tmp / "empty"),
            "runs": str(tmp / "runs")}


@pytest.mark.parametrize("name", list(CASES))
def test_a_refused_command_leaves_no_new_folder_and_the_users_folder_as_it_was(name, inputs, tmp_path, capsys):
    def argv(out: Path) -> list[str]:
        return [word.format(**inputs).replace("OUT", str(out)) for word in CASES[name]]

    new = tmp_path / "new"
    assert chatflow_main(argv(new / "parent" / "out")) == 2
    assert "error: " in capsys.readouterr().err
    assert not new.exists()                                   # neither the output nor its parent folders
    assert sorted(p.name for p in tmp_path.iterdir()) == []   # and no lock or temporary sibling

    mine = tmp_path / "mine"                                  # the user's folder, as the output or its parent
    mine.mkdir()
    (mine / "notes.txt").write_text("mine\n")
    before = _tree(mine)
    out = mine / "out" if any(word.startswith("OUT/") for word in CASES[name]) else mine
    assert chatflow_main(argv(out)) == 2
    assert _tree(mine) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_the_shared_mechanism_removes_only_what_it_made(tmp_path):
    # a failed atomic_directory: nothing under a new parent, no lock, no temporary folder
    with pytest.raises(ChatflowError):
        with atomic_directory(tmp_path / "a" / "b" / "out", "dataset"):
            raise ChatflowError("refused")
    assert list(tmp_path.iterdir()) == []
    # a folder marked in the block (a run folder) and then refused: gone; the user's empty folder: as it was
    for out in (tmp_path / "run", tmp_path / "user"):
        if out.name == "user":
            out.mkdir()
        with pytest.raises(KeyboardInterrupt):
            with output_lock(out):
                out.mkdir(exist_ok=True)
                (out / MARKER).write_text("{}")
                raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["user"] and list((tmp_path / "user").iterdir()) == []
    # once a result is written, nothing is removed; nor is a folder that existed and held a marker already
    with pytest.raises(ChatflowError):
        with undone_if_unused(tmp_path / "x" / "run"):
            (tmp_path / "x" / "run").mkdir(parents=True)
            (tmp_path / "x" / "run" / "log.jsonl").write_text("{}\n")
            raise ChatflowError("later")
    assert (tmp_path / "x" / "run" / "log.jsonl").is_file()
    (tmp_path / "user" / MARKER).write_text("{}")
    with pytest.raises(ChatflowError):
        with undone_if_unused(tmp_path / "user"):
            raise ChatflowError("refused")
    assert (tmp_path / "user" / MARKER).is_file()
    # success leaves everything
    with undone_if_unused(tmp_path / "ok"):
        (tmp_path / "ok").mkdir()
    assert (tmp_path / "ok").is_dir()


def test_a_failed_script_removes_the_empty_folders_it_made(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    env = dict(os.environ, PYTHON=sys.executable)
    done = subprocess.run(["bash", str(ROOT / "scripts" / "table1_schedule.sh"), "--mixture", str(bad),
                           "--output_dir", "new/table1"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode != 0 and "missing 'T_grow'" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json"]
    (tmp_path / "mine").mkdir()
    done = subprocess.run(["bash", str(ROOT / "scripts" / "table1_schedule.sh"), "--mixture", str(bad),
                           "--output_dir", "mine"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode != 0 and (tmp_path / "mine").is_dir()
