"""HF backend: elastic resume, global-batch and mixture changes from a checkpoint, adaptive mixing that resumes
exactly; every change in the run's history (record, log, checkpoints) and in `chatflow mixture --run`."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")

from chatflow_plugin.cli import main as chatflow_main  # noqa: E402
from chatflow_plugin.data.batches import MixtureDataset  # noqa: E402
from chatflow_plugin.data.revisions import load_mixture_file  # noqa: E402
from chatflow_plugin.data.runstate import read_state  # noqa: E402
from chatflow_plugin.data.shards import ShardSet  # noqa: E402
from chatflow_plugin.errors import ChatflowError  # noqa: E402
from chatflow_plugin.hosts.hf.train import train  # noqa: E402
from test_hf_train import (RECORD_SCRIPT, _options, _read_jsonl, _record_samples, dataset, heldout,  # noqa: E402,F401
                           stop_after, torchrun_train)


def _steps(seen: list[list[int]], per_step: int) -> list[list[int]]:
    """Micro-batches read -> the samples of each optimizer step."""
    flat = [t for batch in seen for t in batch]
    return [flat[i:i + per_step] for i in range(0, len(flat), per_step)]


def test_another_layout_with_the_same_global_batch_reads_the_same_samples(dataset, tmp_path, monkeypatch):
    seen = _record_samples(monkeypatch)
    train(_options(dataset, tmp_path / "straight", train_steps=6, save_every=3))
    straight = _steps(seen, 4)
    seen.clear()
    out = tmp_path / "elastic"
    train(_options(dataset, out, train_steps=3, save_every=3))                       # 2 x 2 accumulation
    train(_options(dataset, out, train_steps=6, save_every=3, micro_batch_size=4, gradient_accumulation_steps=1))
    assert _steps(seen, 4) == straight
    history = json.loads((out / "chatflow_run.json").read_text())["history"]
    assert [(h["step"], h["what"], h["old"], h["new"]) for h in history] == [     # a longer run is recorded too
        (3, "train_steps", 3, 6), (3, "micro_batch_size", 2, 4), (3, "gradient_accumulation_steps", 2, 1)]
    assert read_state(out / "checkpoint-6" / "chatflow_state.json")["history"] == history
    assert [r["samples"] for r in _read_jsonl(out / "log.jsonl") if r["kind"] == "train"] == [4, 8, 12, 16, 20, 24]


def test_a_changed_global_batch_continues_at_the_exact_sample(dataset, tmp_path, monkeypatch):
    seen = _record_samples(monkeypatch)
    out = tmp_path / "run"
    train(_options(dataset, out, train_steps=3, save_every=3))
    train(_options(dataset, out, train_steps=5, micro_batch_size=3, allow_change=["global_batch"]))
    assert _steps(seen[:6], 4) + _steps(seen[6:], 6) == [list(range(i, i + 4)) for i in (0, 4, 8)] + \
        [list(range(12, 18)), list(range(18, 24))]
    log = _read_jsonl(out / "log.jsonl")
    assert [r["samples"] for r in log if r["kind"] == "train"] == [4, 8, 12, 18, 24]
    changes = {r["what"]: r for r in log if r["kind"] == "change"}
    assert set(changes) == {"global_batch", "micro_batch_size", "train_steps"}
    change = changes["global_batch"]
    assert (change["step"], change["old"], change["new"], change["sample"]) == (3, 4, 6, 12)
    assert json.loads((out / "train_summary.json").read_text())["samples"] == 24


def test_a_mixture_change_keeps_the_past_and_follows_the_new_mixture(dataset, tmp_path, monkeypatch, capsys):
    seen = _record_samples(monkeypatch)
    out = tmp_path / "run"
    train(_options(dataset, out, train_steps=3, save_every=3))
    data = json.loads(next((dataset.parent).glob("data_mixture.json")).read_text())
    data["groups"][2].update(alpha=5.0, beta=5.0)                      # far more instructions from now on
    changed = tmp_path / "more_instructions.json"
    changed.write_text(json.dumps(data))
    with pytest.raises(ChatflowError, match=r"mixture.*--allow_change mixture"):
        train(_options(dataset, out, train_steps=6, mixture=str(changed)))
    seen.clear()
    train(_options(dataset, out, train_steps=6, mixture=str(changed), allow_change=["mixture"]))
    assert [t for batch in seen for t in batch] == list(range(12, 24))
    shards = ShardSet(dataset)
    original = MixtureDataset(shards).batch(np.arange(24))
    history = load_mixture_file(changed)
    state = read_state(out / "final" / "chatflow_state.json")
    assert [(h["what"], h["step"], h["sample"], h.get("by")) for h in state["history"]] == [
        ("train_steps", 3, 12, None), ("mixture", 3, 12, str(changed))]
    from chatflow_plugin.data.runstate import history_of
    revised = MixtureDataset(shards, spec=history_of(state, "final")).batch(np.arange(24))
    np.testing.assert_array_equal(revised["tokens"][:12], original["tokens"][:12])        # the past is kept
    assert (revised["group"][12:] == 2).sum() > (original["group"][12:] == 2).sum()
    assert history.groups[2].schedule_params["alpha"] == 5.0
    # the history, as `chatflow mixture --run RUN` shows it and exports it
    exported = tmp_path / "history.json"
    assert chatflow_main(["mixture", "--run", str(out), "--export", str(exported)]) == 0
    shown = capsys.readouterr().out
    assert "mixture revisions (2)" in shown and f"step       3  sample         12  by {changed}" in shown
    np.testing.assert_array_equal(MixtureDataset(shards, spec=load_mixture_file(exported)).batch(np.arange(24))["tokens"],
                                  revised["tokens"])
    # resuming again with the same mixture changes no more than the run's length
    train(_options(dataset, out, train_steps=7, mixture=str(changed)))
    assert [h["what"] for h in read_state(out / "final" / "chatflow_state.json")["history"]] == [
        "train_steps", "mixture", "train_steps"]


def _adaptive_mixture(dataset: Path, tmp_path: Path) -> Path:
    data = json.loads(next(dataset.parent.glob("data_mixture.json")).read_text())
    data["adaptive"] = {"signal": "loss", "every_samples": 8, "rate": 2.0, "smoothing": 0.3}
    path = tmp_path / "adaptive.json"
    path.write_text(json.dumps(data))
    return path


def test_an_adaptive_run_killed_and_resumed_is_identical(dataset, heldout, tmp_path, monkeypatch):
    mixture = _adaptive_mixture(dataset, tmp_path)
    kw = dict(train_steps=6, save_every=2, mixture=str(mixture), heldout_dir=str(heldout), heldout_windows=4)
    seen = _record_samples(monkeypatch)
    straight = tmp_path / "straight"
    train(_options(dataset, straight, **kw))
    reference = list(seen)
    seen.clear()
    resumed = tmp_path / "resumed"
    stop_after(monkeypatch, 3)                 # killed after step 3: the newest checkpoint is step 2
    assert train(_options(dataset, resumed, **kw))["stopped_early_at"] == 3
    killed = list(seen)
    seen.clear()
    train(_options(dataset, resumed, **kw))
    assert killed[:4] + seen == reference       # steps 1-2, then 3-6 again from checkpoint-2
    a = read_state(straight / "final" / "chatflow_state.json")
    b = read_state(resumed / "final" / "chatflow_state.json")
    strip = lambda h: [{k: v for k, v in e.items() if k != "time"} for e in h]   # noqa: E731
    assert strip(a["history"]) == strip(b["history"]) and a["adaptive"] == b["adaptive"]
    assert [e["step"] for e in a["history"]] == [2, 4, 6] and all(e["by"] == "adaptive" for e in a["history"])
    assert a["history"][0]["new"]["factors"] != a["history"][1]["new"]["factors"]
    losses = lambda run: [r["loss"] for r in _read_jsonl(run / "log.jsonl") if r["kind"] == "train"]  # noqa: E731
    assert losses(straight) == losses(resumed)
    # the final history, re-run as a fixed schedule, reads the same samples in the same groups
    fixed = tmp_path / "fixed.json"
    assert chatflow_main(["mixture", "--run", str(straight), "--export", str(fixed)]) == 0
    shards = ShardSet(dataset)
    flat = [t for batch in reference for t in batch]
    np.testing.assert_array_equal(
        MixtureDataset(shards, spec=load_mixture_file(fixed)).batch(flat)["tokens"],
        MixtureDataset(shards, spec=load_mixture_file(fixed)).batch(np.arange(24))["tokens"])
    seen.clear()
    train(_options(dataset, tmp_path / "replay", train_steps=6, mixture=str(fixed)))
    assert seen == reference
    groups_replay = [r for r in _read_jsonl(tmp_path / "replay" / "log.jsonl") if r["kind"] == "train"][-1]
    groups_straight = [r for r in _read_jsonl(straight / "log.jsonl") if r["kind"] == "train"][-1]
    assert {k: v for k, v in groups_replay.items() if k.startswith("mix_")} == \
        {k: v for k, v in groups_straight.items() if k.startswith("mix_")}


def test_an_adaptive_mixture_needs_heldout_data(dataset, tmp_path):
    with pytest.raises(ChatflowError, match="adaptive policy, which needs held-out losses: give --heldout_dir"):
        train(_options(dataset, tmp_path / "run", mixture=str(_adaptive_mixture(dataset, tmp_path))))


@pytest.mark.slow
def test_a_run_saved_on_two_ranks_resumes_on_one_reading_the_same_samples(dataset, tmp_path):
    """Done-when of issue 15: an HF run saved on 2 ranks resumes on 1 rank (same global batch) and its next steps
    read exactly the samples an uninterrupted 2-rank run would have."""
    from test_hf_train import TINY_CONFIG

    script = tmp_path / "record.py"
    script.write_text(RECORD_SCRIPT, encoding="utf-8")
    common = ["--dataset_dir", str(dataset), "--model_config", str(TINY_CONFIG), "--log_every", "1", "--threads", "1",
              "--quiet", "--save_every", "2", "--warmup_steps", "0"]
    straight, elastic = tmp_path / "straight", tmp_path / "elastic"
    torchrun_train(script, ["--output_dir", str(straight), "--train_steps", "4", "--micro_batch_size", "2", *common], 2)
    torchrun_train(script, ["--output_dir", str(elastic), "--train_steps", "4", "--micro_batch_size", "2", *common], 2,
              stop_at=2)                                      # stopped (as if killed) after checkpoint-2
    torchrun_train(script, ["--output_dir", str(elastic), "--train_steps", "4", "--micro_batch_size", "2",
                       "--gradient_accumulation_steps", "2", *common], 1)

    def per_step(folder: Path, ranks: int, micro_per_step: int) -> list[list[int]]:
        files = sorted(folder.glob("seen_*.json"))
        runs = {}
        for f in files:
            rank, count = map(int, f.stem.split("_")[1:])
            runs.setdefault(count, {})[rank] = json.loads(f.read_text())
        return runs

    ref = per_step(straight, 2, 1)
    (ref_runs,) = ref.values()
    two_rank_steps = [sorted(ref_runs[0][i] + ref_runs[1][i]) for i in range(4)]
    assert two_rank_steps == [list(range(4 * i, 4 * i + 4)) for i in range(4)]
    runs = per_step(elastic, 0, 0)
    one_rank = runs[4][0]                      # the single-process resume read 4 micro-batches (2 steps x 2)
    assert [sorted(one_rank[0] + one_rank[1]), sorted(one_rank[2] + one_rank[3])] == two_rank_steps[2:]
    state = read_state(elastic / "final" / "chatflow_state.json")
    assert state["world_size"] == 1 and state["samples_done"] == 16
    assert [(h["what"], h["old"], h["new"]) for h in state["history"]] == [("gradient_accumulation_steps", 1, 2),
                                                                          ("world_size", 2, 1)]
    straight_loss = [r["loss"] for r in _read_jsonl(straight / "log.jsonl") if r["kind"] == "train"]
    elastic_loss = [r["loss"] for r in _read_jsonl(elastic / "log.jsonl") if r["kind"] == "train"]
    assert np.allclose(straight_loss, elastic_loss, rtol=1e-4, atol=1e-4)


def test_a_zero_checkpoint_on_another_number_of_processes_is_refused_before_the_model_is_built(dataset, tmp_path):
    from chatflow_plugin.data.runstate import first_mixture, write_state

    from chatflow_plugin.hosts.hf.train import RUN_KIND
    from chatflow_plugin.outputs import write_marker

    out = tmp_path / "run"
    checkpoint = out / "checkpoint-2"
    checkpoint.mkdir(parents=True)
    write_marker(out, RUN_KIND, RUN_KIND.entries())       # a run folder, as chatflow train leaves it
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    (checkpoint / "config.json").write_text("{}")        # complete as the resume looks at it: DeepSpeed's
    (checkpoint / "global_step2").mkdir()                 # folder holds the weights and optimizer states
    shards = ShardSet(dataset)
    write_state(checkpoint / "chatflow_state.json", step=2, samples_done=8, global_batch=4, micro_batch_size=1,
                gradient_accumulation_steps=2, world_size=2, dataset=str(dataset),
                mixture=first_mixture(MixtureDataset(shards).history), history=[], adaptive=None)
    zero = tmp_path / "zero1.json"
    zero.write_text(json.dumps({"zero_optimization": {"stage": 1}, "train_micro_batch_size_per_gpu": "auto"}))
    with pytest.raises(ChatflowError, match=r"checkpoint-2/global_step2 was saved by 2 data-parallel ranks and this run "
                                            r"has 1.*ds_to_universal.*continues at sample 8"):
        train(_options(dataset, out, train_steps=4, micro_batch_size=2, gradient_accumulation_steps=2,
                       deepspeed=str(zero)))
