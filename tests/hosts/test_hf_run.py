"""The run plumbing both HF trainers share: --resume, the run record's invariants, the run log, the
final save. (The trainers' own tests run it end to end: tests/hosts/test_hf_train.py, tests/clo/.)"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from chatflow_plugin.errors import ChatflowError  # noqa: E402
from chatflow_plugin.tokenizer import TokenizerFiles
from chatflow_plugin.hosts.hf.run import (RunLog, RunRecord, SavesTokenizerFiles,  # noqa: E402
                                          checkpoint_step, find_checkpoint, resume_help, save_final_model,
                                          start_run, world)


def _safetensors(path: Path, values: int = 4) -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": [values], "data_offsets": [0, 4 * values]}}).encode()
    path.write_bytes(len(header).to_bytes(8, "little") + header + bytes(4 * values))


def _checkpoint(folder: Path, step: int) -> Path:
    """A checkpoint as the Trainer leaves it complete: model, optimizer state, trainer_state.json last."""
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    _safetensors(path / "model.safetensors")
    torch.save({"state": {}, "param_groups": []}, path / "optimizer.pt")
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return path


def test_resume_auto_no_and_path(tmp_path):
    out, final = tmp_path / "run", tmp_path / "run" / "final"
    assert find_checkpoint("auto", out, out, final) is None              # nothing there yet
    assert find_checkpoint("no", out, out, final) is None
    _checkpoint(out, 2)
    newest = _checkpoint(out, 10)
    assert find_checkpoint("auto", out, out, final) == str(newest)       # by step, not by name
    assert checkpoint_step(newest) == 10
    with pytest.raises(ChatflowError, match=r"run already holds checkpoints \(.*checkpoint-10\); use --resume auto"):
        find_checkpoint("no", out, out, final)
    final.mkdir()
    with pytest.raises(ChatflowError, match="already exists and holds a finished run .* and already holds checkpoints"):
        find_checkpoint("no", out, out, final)
    assert find_checkpoint(str(out / "checkpoint-2"), out, out, final) == str(out / "checkpoint-2")
    with pytest.raises(ChatflowError, match="--resume .*: not a Trainer checkpoint"):
        find_checkpoint(str(tmp_path), out, out, final)
    (out / "checkpoint-2" / "trainer_state.json").write_text("{")
    with pytest.raises(ChatflowError, match="trainer_state.json: unreadable Trainer state"):
        checkpoint_step(out / "checkpoint-2")
    assert "no: start fresh" in resume_help() and "left as it is" in resume_help()


def test_run_record_invariants(tmp_path):
    record = RunRecord(tmp_path / "run.json", ("seed", "batch", "mixture"), section="settings", why="they matter")
    assert record.read() is None
    record.check({"seed": 1})                                   # no record: nothing to compare
    record.write({"settings": {"seed": 1, "batch": 4, "mixture": {"groups": list(range(40))}}, "other": "x"})
    record.check({"seed": 1, "batch": 4, "mixture": {"groups": list(range(40))}, "free": 9})
    with pytest.raises(ChatflowError, match=r"cannot resume with different settings \(seed: 1 -> 2, batch: 4 -> 8; "
                                            r"they matter\); use another --output_dir"):
        record.check({"seed": 2, "batch": 8, "mixture": {"groups": list(range(40))}})
    with pytest.raises(ChatflowError, match=r"settings \(mixture; they matter\)"):   # long values: the name only
        record.check({"seed": 1, "batch": 4, "mixture": {"groups": list(range(41))}})
    (tmp_path / "run.json").write_text("[1")
    with pytest.raises(ChatflowError, match="run.json: unreadable run record"):
        record.read()


def test_start_run_checks_invariants_only_with_something_to_continue(tmp_path):
    out = tmp_path / "run"
    record = RunRecord(out / "run.json", ("seed",))
    record.write({"seed": 1})
    marker = out / "final" / "config.json"
    start = start_run("auto", out, out, out / "final", marker, record, {"seed": 2})   # nothing to continue
    assert (start.checkpoint, start.step, start.finished) == (None, 0, False)
    _checkpoint(out, 3)
    with pytest.raises(ChatflowError, match=r"seed: 1 -> 2\); use another --output_dir"):
        start_run("auto", out, out, out / "final", marker, record, {"seed": 2})
    start = start_run("auto", out, out, out / "final", marker, record, {"seed": 1})
    assert (start.checkpoint, start.step, start.finished) == (str(out / "checkpoint-3"), 3, False)
    marker.parent.mkdir()
    marker.write_text("{}")
    assert start_run("auto", out, out, out / "final", marker, record, {"seed": 1}).finished
    with pytest.raises(ChatflowError, match="use --resume auto or somewhere else"):
        start_run("no", out, out, out / "final", marker, record, {"seed": 1}, elsewhere="somewhere else")


def test_run_log_restarts_at_a_step_and_keeps_csv_views(tmp_path):
    path = tmp_path / "log.jsonl"
    log = RunLog(path, {"train": tmp_path / "train.csv"})
    log.restart_at(0)
    assert path.read_text() == ""
    for step in (1, 2, 3):
        log.add({"kind": "train", "step": step, "loss": 1.0 / step, "loss_zh": float("nan")})
    log.add({"kind": "heldout", "step": 3, "heldout_en": 2.5})
    log.add({"kind": "summary", "step": 3})
    with open(path, "a") as handle:
        handle.write('{"kind": "train", "step": 4, "lo')               # cut by a crash
    assert json.loads(path.read_text().splitlines()[0])["loss_zh"] is None   # NaN is written as null
    resumed = RunLog(path, {"train": tmp_path / "train.csv"})
    resumed.restart_at(2)
    assert [(r["kind"], r["step"]) for r in map(json.loads, path.read_text().splitlines())] == [("train", 1), ("train", 2)]
    with open(tmp_path / "train.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["step"] for row in rows] == ["1", "2"] and rows[0]["loss_zh"] == ""
    plain = RunLog(tmp_path / "plain.jsonl")                            # clo-train: records without a kind
    plain.restart_at(0)
    plain.add({"step": 1, "epoch": 0.5, "loss": 3.0})
    assert json.loads((tmp_path / "plain.jsonl").read_text()) == {"step": 1, "epoch": 0.5, "loss": 3.0}


def test_run_log_appends_csv_rows_and_rewrites_only_for_a_new_column(tmp_path, monkeypatch):
    """The CSV view equals a fresh write of the records; a row with known columns is appended (constant time
    whatever the log's length), a new column rewrites the file."""
    import chatflow_plugin.hosts.hf.run as run_module
    from chatflow_plugin.files import write_csv

    rewrites = []
    monkeypatch.setattr(run_module, "write_csv", lambda path, rows: rewrites.append(len(rows)) or write_csv(path, rows))
    log = RunLog(tmp_path / "log.jsonl", {"train": tmp_path / "train.csv", "heldout": tmp_path / "heldout.csv"})
    log.restart_at(0)
    assert rewrites == [0, 0]
    for step in range(1, 201):
        record = {"kind": "train", "step": step, "loss": 1.0 / step, "grad_norm": None if step % 2 else 0.5}
        if step == 50:
            record["note"] = 'a "quoted", text'              # a new column: one rewrite
        if step == 60:
            del record["loss"]                               # a missing key: an empty cell, appended
        log.add(record)
        if step == 100:
            log.add({"kind": "heldout", "step": step, "heldout_en": 2.5})
    assert rewrites == [0, 0, 1, 50, 1]
    expected = tmp_path / "expected.csv"
    write_csv(expected, [{k: v for k, v in r.items() if k != "kind"} for r in log.records if r["kind"] == "train"])
    assert (tmp_path / "train.csv").read_text() == expected.read_text()
    with open(tmp_path / "train.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 200 and rows[49]["note"] == 'a "quoted", text' and rows[59]["loss"] == "" and rows[0]["note"] == ""


class _Saver:
    """Stands in for the base Trainer: writes a 'model' and remembers what the directory held first."""

    def __init__(self, main: bool = True):
        self.main = main
        self.args = type("Args", (), {"should_save": main, "output_dir": "unused"})()
        self.seen: list[list[str]] = []

    def is_world_process_zero(self) -> bool:
        return self.main

    def save_model(self, output_dir=None, _internal_call=False):
        path = Path(output_dir)
        path.mkdir(parents=True, exist_ok=True)
        self.seen.append(sorted(p.name for p in path.iterdir()))
        if self.main:
            (path / "config.json").write_text("{}")


class _Trainer(SavesTokenizerFiles, _Saver):
    pass


def test_final_model_has_tokenizer_first_record_and_replaces_an_old_one(tmp_path):
    source = tmp_path / "start"
    source.mkdir()
    (source / "tokenizer.model").write_bytes(b"spm")
    (source / "tokenizer_config.json").write_text("{}")
    files = TokenizerFiles.read(source)
    assert set(files.files) == {"tokenizer.model", "tokenizer_config.json"}
    final = tmp_path / "run" / "final"
    final.mkdir(parents=True)
    (final / "stale.bin").write_text("old")
    (tmp_path / "run" / ".final.partial").mkdir()                      # left by a killed save
    (tmp_path / "run" / ".final.partial" / "junk").write_text("x")
    trainer = _Trainer()
    trainer.tokenizer_files = files
    save_final_model(trainer, final, "summary.json", {"steps": 4})
    assert trainer.seen == [["tokenizer.model", "tokenizer_config.json"]]   # the tokenizer before the model
    assert sorted(p.name for p in final.iterdir()) == ["config.json", "summary.json", "tokenizer.model",
                                                         "tokenizer_config.json"]
    assert json.loads((final / "summary.json").read_text()) == {"steps": 4}
    assert sorted(p.name for p in final.parent.iterdir()) == ["final"]  # no partial or old copy left
    other = _Trainer(main=False)                                       # another rank: saves, renames nothing
    other.tokenizer_files = files
    save_final_model(other, tmp_path / "elsewhere" / "final")
    assert not (tmp_path / "elsewhere" / "final").exists()


def test_world_is_torchruns(monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert world() == (3, 4)
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert world() == (0, 1)
