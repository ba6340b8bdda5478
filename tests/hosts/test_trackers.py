"""Experiment trackers and the console: what TensorBoard (and W&B, MLflow, trackio where installed) receive equals
log.jsonl, value by value; a missing tracker is a clean error naming its extra; one readable line per logging
step and nothing from DeepSpeed."""
from __future__ import annotations

import glob
import json
import math
import os
import struct
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("tensorboard")

from chatflow_plugin.cli import main as chatflow_main  # noqa: E402
from chatflow_plugin.errors import ChatflowError  # noqa: E402
from chatflow_plugin.hosts import trackers as trackers_module  # noqa: E402
from chatflow_plugin.hosts.hf.console import Console, number  # noqa: E402
from chatflow_plugin.hosts.hf.train import TrainOptions, train  # noqa: E402
from chatflow_plugin.hosts.trackers import parse_report_to, scalars  # noqa: E402
from test_hf_train import TINY_CONFIG, make_dataset  # noqa: E402


@pytest.fixture(scope="module")
def data(tmp_path_factory, spm_model):
    root = tmp_path_factory.mktemp("trackers")
    return make_dataset(root, spm_model), make_dataset(root, spm_model, n_docs=30, seed=99, name="held"), root


def _options(dataset: Path, out: Path, **kw) -> TrainOptions:
    base = dict(dataset_dir=str(dataset), output_dir=str(out), model_config=str(TINY_CONFIG), train_steps=4,
                micro_batch_size=2, gradient_accumulation_steps=1, learning_rate=3e-3, log_every=1, warmup_steps=0,
                threads=1, quiet=True)
    base.update(kw)
    return TrainOptions(**base)


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def _expected(run: Path) -> dict[tuple[str, int], float]:
    """Every scalar the trackers must hold, by (tag, step), from log.jsonl under the one rule."""
    out = {}
    for record in _log(run):
        if record.get("kind") == "summary":
            continue
        step, values = scalars(record)
        out.update({(tag, step): value for tag, value in values.items()})
    return out


def _tensorboard(folder: Path) -> dict[tuple[str, int], float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found = {}
    for events in sorted(folder.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            for event in acc.Scalars(tag):
                found[(tag, event.step)] = event.value
    return found


def _same(expected: dict, found: dict, rel: float = 1e-6) -> None:
    missing = sorted(k for k in expected if k not in found)
    assert not missing, missing[:5]
    wrong = [(k, expected[k], found[k]) for k in expected
             if not math.isclose(expected[k], found[k], rel_tol=rel, abs_tol=1e-7)]
    assert not wrong, wrong[:5]


def test_report_to_values_and_missing_trackers(monkeypatch):
    assert parse_report_to([]) == [] and parse_report_to(["none"]) == []
    assert parse_report_to(["tensorboard"]) == ["tensorboard"]
    assert parse_report_to(["tensorboard,tensorboard"]) == ["tensorboard"]
    with pytest.raises(ChatflowError, match="unknown tracker"):
        parse_report_to(["comet"])
    with pytest.raises(ChatflowError, match="cannot be combined"):
        parse_report_to(["none", "tensorboard"])
    monkeypatch.setattr(trackers_module, "_installed", lambda name: name == "tensorboard")
    assert parse_report_to(["all"]) == ["tensorboard"]
    for name in ("wandb", "mlflow", "trackio"):
        with pytest.raises(ChatflowError, match=rf"--report_to {name} needs the {name} package: pip install "
                                                rf"'chatflow-plugin\[{name}\]'"):
            parse_report_to([f"tensorboard,{name}"])


def test_a_missing_tracker_stops_the_command_before_it_trains(data, tmp_path, monkeypatch, capsys):
    dataset, _, _ = data
    monkeypatch.setattr(trackers_module, "_installed", lambda name: False)
    code = chatflow_main(["train", "--dataset_dir", str(dataset), "--model_config", str(TINY_CONFIG), "--output_dir",
                          str(tmp_path / "run"), "--train_steps", "2", "--report_to", "wandb"])
    err = capsys.readouterr().err
    assert code == 2 and "chatflow-plugin[wandb]" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_tensorboard_events_equal_log_jsonl_through_a_resume_with_a_mixture_change(data, tmp_path):
    dataset, heldout, root = data
    run = tmp_path / "run"
    common = dict(heldout_dir=str(heldout), heldout_every=2, report_to=["tensorboard"])
    train(_options(dataset, run, train_steps=4, save_every=2, **common))
    mixture = json.loads((dataset / "manifest.json").read_text())["mixture"]
    mixture["groups"][0]["beta"] = 0.05                                 # another mixture from the resumed sample on
    mixture["name"] = "changed"
    (tmp_path / "changed.json").write_text(json.dumps(mixture))
    train(_options(dataset, run, train_steps=6, save_every=2, mixture=str(tmp_path / "changed.json"),
                   allow_change=["mixture"], **common))
    expected = _expected(run)
    found = _tensorboard(run / "tensorboard")
    tags = {tag for tag, _ in expected}
    assert {"train/loss", "train/loss_en", "train/p_zh", "train/mix_inst", "train/epochs_en", "train/learning_rate",
            "train/tokens", "train/samples", "heldout/heldout_zh", "change/mixture"} <= tags
    assert ("change/mixture", 4) in expected
    _same(expected, found)
    # nothing else: the second session's events after step 4 replace none, and no step is logged twice apart
    assert {k for k in found if k[0].startswith(("train/", "heldout/"))} == \
        {k for k in expected if k[0].startswith(("train/", "heldout/"))}


def _wandb_history(run: Path) -> dict[tuple[str, int], float]:
    """The history rows of the offline W&B run file (the leveldb-style log of ``Record`` protobufs W&B writes)."""
    from wandb.proto import wandb_internal_pb2

    path = glob.glob(str(run / "wandb" / "offline-run-*" / "run-*.wandb"))[0]
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B"
    pos, block, records, pending = 7, 32768, [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 1:
            records.append(chunk)
        elif kind in (2, 3):
            pending += chunk
        elif kind == 4:
            records.append(pending + chunk)
            pending = b""
    found = {}
    for raw in records:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "history":
            row = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            for key, value in row.items():
                if not key.startswith("_") and isinstance(value, (int, float)):
                    found[(key, row["_step"])] = float(value)
    return found


@pytest.mark.slow
def test_wandb_mlflow_and_trackio_get_the_log_offline(data, tmp_path):
    for name in ("wandb", "mlflow", "trackio"):
        if not trackers_module._installed(name):
            pytest.skip(f"{name} is not installed")
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "MLFLOW_", "TRACKIO_"))}
    env.update(TRACKIO_DIR=str(tmp_path / "trackio"), WANDB_DIR=str(tmp_path / "wandb_home"))
    dataset, heldout, _ = data
    run = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "chatflow_plugin.cli", "train", "--dataset_dir", str(dataset), "--model_config",
                    str(TINY_CONFIG), "--output_dir", str(run), "--train_steps", "3", "--micro_batch_size", "2",
                    "--log_every", "1", "--threads", "1", "--heldout_dir", str(heldout), "--quiet",
                    "--report_to", "wandb,mlflow", "--report_to", "trackio"], env=env, check=True, capture_output=True)
    expected = _expected(run)
    _same(expected, _wandb_history(run), rel=1e-9)                  # W&B's offline run folder
    assert glob.glob(str(run / "wandb" / "offline-run-*"))           # offline: nothing sent anywhere

    import mlflow
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{run / 'mlflow.db'}")
    run_id = json.loads((run / "trackers.json").read_text())["mlflow"]
    found = {(m.key, m.step): m.value for tag in {t for t, _ in expected}
             for m in client.get_metric_history(run_id, tag)}
    _same(expected, found, rel=1e-9)

    script = ("import json, sys, trackio.sqlite_storage as s; "
              "print(json.dumps(s.SQLiteStorage.get_logs('chatflow', sys.argv[1])))")
    logs = json.loads(subprocess.run([sys.executable, "-c", script, run.name], capture_output=True, text=True,
                                     check=True, env=env).stdout)
    found = {(k, row["step"]): float(v) for row in logs for k, v in row.items() if "/" in k}
    _same(expected, found, rel=1e-9)


def test_console_prints_one_readable_line_per_step_and_nothing_from_deepspeed(data, tmp_path, capfd):
    dataset, heldout, _ = data
    train(_options(dataset, tmp_path / "run", train_steps=4, log_every=2, heldout_dir=str(heldout), quiet=False))
    out, err = capfd.readouterr()
    text = out + err
    lines = [line.split("\r")[-1].strip() for line in text.splitlines() if "step " in line and " | " in line]
    train_lines = [line for line in lines if "| loss " in line]
    assert [line.split(" | ")[0] for line in train_lines] == ["step 2/4", "step 4/4"]
    assert " s/step " in train_lines[0] and " tok/s" in train_lines[0]
    for group in ("en", "zh", "inst"):
        assert f" {group} " in train_lines[0]
    assert "ep " in train_lines[0] and "(p 0." in train_lines[0]
    assert any("held-out en " in line for line in lines)
    assert "{'loss'" not in text and "'learning_rate'" not in text       # no Trainer dictionaries
    assert "real_accelerator" not in text and "DeepSpeed" not in text   # DeepSpeed is not used: not imported


def test_console_numbers_are_numbers():
    assert number("tokens", 1234567) == "1,234,567" and number("learning_rate", 0.0003) == "3.00e-04"
    assert number("loss", 3.14159) == "3.1416" and number("p_en", 0.5) == "0.500" and number("loss", None) == "-"
    lines = []
    console = Console(10, ["en"], write=lines.append)
    console.start(0, 0)
    console.log({"kind": "train", "step": 1, "loss": 2.0, "learning_rate": 1e-4, "tokens": 100, "loss_en": 2.0,
                 "p_en": 1.0, "epochs_en": 0.5, "mix_en": 1.0, "samples": 1})
    console.log({"kind": "heldout", "step": 1, "heldout_en": 2.5, "samples": 1, "tokens": 100})
    assert lines[0].startswith("step 1/10 | loss 2.0000 | lr 1.00e-04 | ") and "en 2.0000 (p 1.000, ep 0.50)" in lines[0]
    assert lines[1] == "step 1/10 | held-out en 2.5000"


def test_clo_train_reports_to_tensorboard(tmp_path, spm_model):
    from chatflow_plugin.clo.train import CLOTrainOptions, run_training
    from test_clo_support import tiny_llama_dir, triples_dir

    model, triples = tiny_llama_dir(tmp_path / "model", spm_model), triples_dir(tmp_path / "data", n=6)
    run = tmp_path / "clo"
    run_training(CLOTrainOptions(model=str(model), data=str(triples), output_dir=str(run), train_steps=3,
                                 log_every=1, micro_batch_size=2, max_length=48, use_cpu=True, quiet=True,
                                 report_to=["tensorboard"]))
    expected = _expected(run)
    assert ("train/loss", 1) in expected and ("train/nll", 3) in expected
    _same(expected, _tensorboard(run / "tensorboard"))
