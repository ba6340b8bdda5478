"""Resume after a fault: an incomplete newest checkpoint is skipped, a damaged one named, and a resume that would
change the run's meaning is refused unless allowed, then recorded (issue 12, "Hangs and tracebacks", "Silently
wrong"; issue 21)."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from fault_support import assert_clean_error, cli
from test_hf_train import _options, make_dataset

from chatflow_plugin.data.shards import MANIFEST, seal_manifest
from chatflow_plugin.errors import ChatflowError
from chatflow_plugin.files import file_checksum
from chatflow_plugin.hosts.hf.run import checkpoint_problem, last_complete_checkpoint
from chatflow_plugin.hosts.hf.train import train

pytest.importorskip("transformers")
TINY = Path(__file__).resolve().parents[2] / "models" / "hf" / "demo_tiny.json"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, spm_model) -> Path:
    return make_dataset(tmp_path_factory.mktemp("resume_data"), spm_model)


@pytest.fixture(scope="module")
def straight(dataset, tmp_path_factory) -> Path:
    """An uninterrupted 6-step run, checkpoints every 2 steps."""
    out = tmp_path_factory.mktemp("straight") / "run"
    train(_options(dataset, out, train_steps=6, save_every=2, save_total_limit=3))
    return out


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file
    return load_file(str(folder / "model.safetensors"))


def _as_if_killed_while_saving(run: Path, step: int, how: str) -> None:
    """A finished run turned into one killed during the save at ``step``."""
    shutil.rmtree(run / "final")
    (run / "train_summary.json").unlink()
    folder = run / f"checkpoint-{step}"
    if how == "no trainer state":
        (folder / "trainer_state.json").unlink()
    elif how == "torn trainer state":
        (folder / "trainer_state.json").write_text('{"global_step": ')
    elif how == "truncated weights":
        data = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif how == "no optimizer":
        (folder / "optimizer.pt").unlink()


@pytest.mark.parametrize("how", ["no trainer state", "torn trainer state", "truncated weights", "no optimizer"])
def test_an_incomplete_newest_checkpoint_is_skipped_and_the_run_ends_as_an_uninterrupted_one(
        dataset, straight, tmp_path, capsys, how):
    run = tmp_path / "run"
    shutil.copytree(straight, run)
    _as_if_killed_while_saving(run, 6, how)
    assert checkpoint_problem(run / "checkpoint-6") is not None and checkpoint_problem(run / "checkpoint-4") is None
    summary = train(_options(dataset, run, train_steps=6, save_every=2, save_total_limit=3))
    err = capsys.readouterr().err
    assert f"{run / 'checkpoint-6'} is incomplete" in err and f"resuming from {run / 'checkpoint-4'}" in err
    assert summary["resumed_from"] == str(run / "checkpoint-4")
    expected, got = _weights(straight / "final"), _weights(run / "final")
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert checkpoint_problem(run / "checkpoint-6") is None            # saved again, whole


def test_every_rank_picks_the_same_checkpoint_and_only_rank_0_speaks(straight, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    shutil.copytree(straight, run)
    (run / "checkpoint-6" / "trainer_state.json").unlink()
    monkeypatch.setenv("RANK", "1")
    assert last_complete_checkpoint(run) == str(run / "checkpoint-4")
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("RANK", "0")
    assert last_complete_checkpoint(run) == str(run / "checkpoint-4") and "incomplete" in capsys.readouterr().err


def test_resume_from_a_named_incomplete_checkpoint_is_refused(dataset, straight, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(straight, run)
    _as_if_killed_while_saving(run, 6, "truncated weights")
    proc = cli("train", "--dataset_dir", dataset, "--output_dir", run, "--model_config",
               Path(__file__).resolve().parents[2] / "models" / "hf" / "demo_tiny.json", "--train_steps", "6",
               "--micro_batch_size", "2", "--gradient_accumulation_steps", "2", "--learning_rate", "3e-3",
               "--warmup_steps", "0", "--quiet", "--resume", run / "checkpoint-6")
    assert_clean_error(proc, "train", "checkpoint-6: the checkpoint is incomplete (model.safetensors is truncated")


def _interrupted(dataset: Path, straight: Path, tmp_path: Path) -> Path:
    """The straight run as if stopped after its step-4 checkpoint."""
    run = tmp_path / "run"
    shutil.copytree(straight, run)
    shutil.rmtree(run / "final")
    shutil.rmtree(run / "checkpoint-6")
    (run / "train_summary.json").unlink()
    return run


def test_changing_the_objective_on_resume_needs_allow_change_and_is_recorded(dataset, straight, tmp_path):
    run = _interrupted(dataset, straight, tmp_path)
    with pytest.raises(ChatflowError, match=r"would change the run's meaning \(loss: 'all' -> 'response_only'\); "
                                            r"pass --allow_change loss"):
        train(_options(dataset, run, train_steps=6, save_every=2, loss="response_only"))
    with pytest.raises(ChatflowError, match="--allow_change bogus: not a setting a resumed run may change"):
        train(_options(dataset, run, train_steps=6, save_every=2, loss="response_only", allow_change=["bogus"]))
    train(_options(dataset, run, train_steps=6, save_every=2, loss="response_only", allow_change=["loss"]))
    record = json.loads((run / "chatflow_run.json").read_text())
    assert record["loss"] == "response_only"
    [entry] = record["history"]
    assert (entry["step"], entry["what"], entry["old"], entry["new"]) == (4, "loss", "all", "response_only")
    assert entry["time"][:4].isdigit()
    # the changed setting is now the run's: resuming with it again is no change
    shutil.rmtree(run / "final")
    train(_options(dataset, run, train_steps=8, save_every=2, loss="response_only"))
    history = json.loads((run / "chatflow_run.json").read_text())["history"]
    assert [h["what"] for h in history] == ["loss", "train_steps"]


def test_an_allowed_learning_rate_change_takes_effect_from_the_resumed_step(dataset, straight, tmp_path):
    run = _interrupted(dataset, straight, tmp_path)
    with pytest.raises(ChatflowError, match=r"learning_rate: 0.003 -> 0.001"):
        train(_options(dataset, run, train_steps=6, save_every=2, learning_rate=1e-3))
    train(_options(dataset, run, train_steps=6, save_every=2, learning_rate=1e-3, allow_change=["learning_rate"]))
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    rates = {r["step"]: r["learning_rate"] for r in records if r.get("kind") == "train"}
    cosine = lambda peak, step: peak * 0.5 * (1 + math.cos(math.pi * (step - 1) / 6))  # noqa: E731
    assert [rates[s] for s in (1, 2, 3, 4)] == pytest.approx([cosine(3e-3, s) for s in (1, 2, 3, 4)])
    assert [rates[s] for s in (5, 6)] == pytest.approx([cosine(1e-3, s) for s in (5, 6)])   # not the old peak's
    assert json.loads((run / "chatflow_run.json").read_text())["history"][0]["what"] == "learning_rate"


def test_a_resume_onto_other_data_with_the_same_shape_needs_allow_change(dataset, straight, tmp_path):
    run = _interrupted(dataset, straight, tmp_path)
    other = tmp_path / "other_data"
    shutil.copytree(dataset, other)
    tokens = other / "zh.tokens.bin"
    values = np.fromfile(tokens, dtype=np.uint16)
    values[::-1].tofile(tokens)                                         # new content, same windows
    manifest = json.loads((other / MANIFEST).read_text())
    next(s for s in manifest["sources"] if s["name"] == "zh")["tokens_checksum"] = file_checksum(tokens)
    (other / MANIFEST).write_text(json.dumps(seal_manifest(manifest)))
    with pytest.raises(ChatflowError, match=r"would change the run's meaning \(dataset.*pass --allow_change dataset"):
        train(_options(other, run, train_steps=6, save_every=2))
    train(_options(other, run, train_steps=6, save_every=2, allow_change=["dataset"]))
    [entry] = json.loads((run / "chatflow_run.json").read_text())["history"]
    assert entry["what"] == "dataset" and entry["old"] != entry["new"]


# -- issue 21: what a resumed run must not silently take or change ---------------------------------------------------

def test_resuming_with_another_model_size_is_refused_naming_the_setting(dataset, straight, tmp_path):
    run = _interrupted(dataset, straight, tmp_path)
    bigger = tmp_path / "bigger.json"
    bigger.write_text(json.dumps(dict(json.loads(TINY.read_text()), hidden_size=128)))
    with pytest.raises(ChatflowError, match=r"cannot resume with different settings \(hidden_size: 64 -> 128, "
                                            r"head_dim: 16 -> 32"):
        train(_options(dataset, run, train_steps=6, save_every=2, model_config=str(bigger)))


@pytest.mark.parametrize("setting, value, refusal", [
    ("init_seed", 1, r"cannot resume with different settings \(init_seed: 0 -> 1"),
    ("bf16", True, r"would change the run's meaning \(bf16: False -> True\); pass --allow_change bf16"),
], ids=["init_seed", "bf16"])
def test_init_seed_and_precision_are_settings_of_the_run(dataset, straight, tmp_path, setting, value, refusal):
    run = _interrupted(dataset, straight, tmp_path)
    with pytest.raises(ChatflowError, match=refusal):
        train(_options(dataset, run, train_steps=6, save_every=2, **{setting: value}))
    if setting == "bf16":
        train(_options(dataset, run, train_steps=6, save_every=2, bf16=True, allow_change=["bf16"]))
        record = json.loads((run / "chatflow_run.json").read_text())
        assert record["bf16"] is True and [(h["what"], h["old"], h["new"]) for h in record["history"]] == \
            [("bf16", False, True)]


def test_a_refused_mixture_change_names_what_changed(dataset, straight, tmp_path):
    run = _interrupted(dataset, straight, tmp_path)
    mixture = json.loads((dataset / MANIFEST).read_text())["mixture"]
    mixture["groups"][1]["beta"] = 0.6                                  # same name 't', other contents
    edited = tmp_path / "t.json"
    edited.write_text(json.dumps(mixture))
    with pytest.raises(ChatflowError, match=r"\(mixture 't': groups\[1\]\.beta: 0\.5 -> 0\.6\); .*--allow_change "
                                            r"mixture") as caught:
        train(_options(dataset, run, train_steps=6, save_every=2, mixture=str(edited)))
    assert "'t' -> 't'" not in str(caught.value)


def _rng_payload(path: Path) -> None:
    class Payload:
        def __reduce__(self):
            return (print, ("code from the checkpoint ran",))
    torch.save({"python": Payload()}, path)


@pytest.mark.parametrize("name, damage", [
    ("optimizer.pt", lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 3])),
    ("rng_state.pth", _rng_payload),
    ("scheduler.pt", lambda p: p.write_bytes(b"not a torch file at all")),
], ids=["truncated optimizer", "rng state with code", "garbage scheduler"])
def test_a_damaged_or_malicious_state_file_on_resume_is_named_with_the_checkpoint_to_use(
        dataset, straight, tmp_path, capsys, name, damage):
    run = tmp_path / "run"
    shutil.copytree(straight, run)
    shutil.rmtree(run / "final")                                        # stopped after its step-6 checkpoint
    (run / "train_summary.json").unlink()
    damage(run / "checkpoint-6" / name)
    with pytest.raises(ChatflowError) as caught:
        train(_options(dataset, run, train_steps=8, save_every=2, save_total_limit=3))
    message = str(caught.value)
    assert message.startswith(f"{run / 'checkpoint-6' / name}: cannot be loaded: ") and "\n" not in message
    assert f"{run / 'checkpoint-4'} is complete and loads: resume from it with --resume {run / 'checkpoint-4'}" \
        in message
    assert "code from the checkpoint ran" not in capsys.readouterr().out
