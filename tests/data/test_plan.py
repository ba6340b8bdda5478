"""``chatflow plan``: run length, the step the schedule ends at, per-group and per-source counts, readings of the
schedule's times (samples / tokens / records through the manifest), warnings, the error, and the written mixture."""
import json
import math
from pathlib import Path

import numpy as np
import pytest

from chatflow_plugin import cli
from chatflow_plugin.data.batches import MixtureDataset
from chatflow_plugin.data.mixture import load_mixture
from chatflow_plugin.data.plan import DEFAULT_THROUGHPUT, PlanOptions, make_plan, run_plan
from chatflow_plugin.data.preprocess import preprocess
from chatflow_plugin.data.schedule import SHAPES, Param, positive
from chatflow_plugin.data.shards import ShardSet
from chatflow_plugin.errors import ChatflowError
from test_mixture import Switch, switch_mixture, write
from test_preprocess import make_mixture

ROOT = Path(__file__).resolve().parents[2]
TABLE1 = ROOT / "models" / "mixtures" / "chatflow_table1.json"


def plan(**kw):
    return make_plan(PlanOptions(**kw))[0]


def test_the_papers_run_read_as_packed_samples_never_reaches_beta(capsys):
    p = plan(mixture=str(TABLE1), global_batch_size=512, tokens=8e9, allow_partial_schedule=True)
    assert p["steps"] == math.ceil(8e9 / (512 * 2048)) == 7630
    assert p["samples"] == 7630 * 512 and p["tokens"] == 7630 * 512 * 2048
    assert p["t_grow_reached_at_step"] is None and p["schedule"]["final_mixture_at_sample"] == 5e6
    assert p["reading"]["schedule_unit"] == p["reading"]["as_written"] == "samples"
    # the figures: at the end the parallel group is still drawn, beta never reached
    schedule = load_mixture(TABLE1).schedule()
    assert list(p["p_end"].values()) == pytest.approx(schedule.probabilities(float(p["samples"])).tolist())
    assert p["p_end"]["parallel"] == pytest.approx(0.0547, abs=1e-4)
    assert p["p_start"] == pytest.approx({"en_corpus": 0.6, "zh_corpus": 0.05, "parallel": 0.25, "en_inst": 0.05,
                                          "zh_inst": 0.0, "code": 0.05})
    assert sum(g["samples"] for g in p["groups"].values()) == p["samples"]
    assert sum(g["share"] for g in p["groups"].values()) == pytest.approx(1.0)
    assert any("never reaches its final weights" in w for w in p["warnings"])
    # refused without --allow_partial_schedule, naming the way out
    code = cli.main(["plan", "--mixture", str(TABLE1), "--global_batch_size", "512", "--tokens", "8e9"])
    err = capsys.readouterr().err
    assert code == 2 and "chatflow plan: error:" in err and "--schedule_unit records" in err and "step 9,766" in err


def test_steps_and_tokens_give_the_same_plan_and_exactly_one_is_needed():
    by_steps = plan(mixture=str(TABLE1), global_batch_size=64, steps=100_000)
    by_tokens = plan(mixture=str(TABLE1), global_batch_size=64, tokens=100_000 * 64 * 2048)
    assert by_steps == by_tokens
    assert by_steps["t_grow_reached_at_step"] == math.ceil(5e6 / 64) == 78_125
    for kw in ({}, {"steps": 10, "tokens": 1e6}):
        with pytest.raises(ChatflowError, match="exactly one of --steps and --tokens"):
            plan(mixture=str(TABLE1), global_batch_size=64, **kw)
    with pytest.raises(ChatflowError, match="--global_batch_size must be positive"):
        plan(mixture=str(TABLE1), global_batch_size=0, steps=10)


def test_reading_the_times_in_tokens_or_in_assumed_records():
    tokens = plan(mixture=str(TABLE1), global_batch_size=512, tokens=8e9, schedule_unit="tokens")
    assert tokens["schedule"]["final_mixture_at_sample"] == pytest.approx(5e6 / 2048)
    assert tokens["reading"]["times"]["T_grow"] == {"as_written": 5e6, "samples": pytest.approx(5e6 / 2048)}
    records = plan(mixture=str(TABLE1), global_batch_size=512, tokens=8e9, schedule_unit="records",
                   records_per_sample=10.0)
    assert records["schedule"]["final_mixture_at_sample"] == pytest.approx(5e5)
    assert records["t_grow_reached_at_step"] == math.ceil(5e5 / 512) == 977
    assert records["p_end"] == pytest.approx({"en_corpus": 0.15, "zh_corpus": 0.5, "parallel": 0.0, "en_inst": 0.1,
                                              "zh_inst": 0.2, "code": 0.05})
    assert records["reading"]["records_per_sample_from"] == "assumed: --records_per_sample"
    with pytest.raises(ChatflowError, match="needs the dataset's records per sample"):
        plan(mixture=str(TABLE1), global_batch_size=512, tokens=8e9, schedule_unit="records")
    with pytest.raises(ChatflowError, match="only applies to --schedule_unit records"):
        plan(mixture=str(TABLE1), global_batch_size=512, tokens=8e9, records_per_sample=3.0)


def test_gpu_hours_from_the_default_throughput_and_the_gpus():
    p = plan(mixture=str(TABLE1), global_batch_size=512, tokens=8e9, schedule_unit="records", records_per_sample=10,
             gpus=16)
    h = p["gpu_hours"]
    assert DEFAULT_THROUGHPUT == pytest.approx(2e12 / (184_320 * 3600))
    assert h["gpu_hours"] == pytest.approx(p["tokens"] / DEFAULT_THROUGHPUT / 3600)
    assert h["hours"] == pytest.approx(h["gpu_hours"] / 16) and "Touvron" in h["throughput_from"]
    mine = plan(mixture=str(TABLE1), global_batch_size=512, tokens=8e9, schedule_unit="records", records_per_sample=10,
                tokens_per_second_per_gpu=1000.0)["gpu_hours"]
    assert mine["gpu_hours"] == pytest.approx(p["tokens"] / 1000 / 3600) and mine["hours"] is None
    assert mine["throughput_from"] == "--tokens_per_second_per_gpu"


@pytest.fixture
def dataset(tmp_path, spm_model):
    mixture = make_mixture(tmp_path / "data")
    out = tmp_path / "shards"
    preprocess(load_mixture(mixture), spm_model, out, workers=1)
    return mixture, out


def test_records_reading_uses_the_manifest_and_the_written_mixture_trains_the_same(dataset, tmp_path):
    mixture, out = dataset
    written = tmp_path / "run" / "mixture.json"
    run_plan(PlanOptions(dataset_dir=str(out), global_batch_size=8, steps=50, schedule_unit="records",
                         write_mixture=str(written), output=str(tmp_path / "plan.json"), json=True))
    p = json.loads((tmp_path / "plan.json").read_text())
    assert p["mixture_for_training"] == str(written)
    run_spec = load_mixture(written)
    # rho from first principles: records per window of each source, sources by token share, groups by their
    # fraction of the growth phase's draws (T_grow = 200 records as written)
    manifest = json.loads((out / "manifest.json").read_text())
    spec = load_mixture(mixture)
    per_group = {}
    for group in spec.groups:
        infos = [s for s in manifest["sources"] if s["group"] == group.name]
        tokens = sum(s["tokens"] for s in infos)
        per_group[group.name] = sum(s["tokens"] / tokens * s["records"] / s["windows"] for s in infos)
    f = spec.schedule(sample_size=1.0).expected_counts(200.0) / 200.0
    rho = float(f @ np.array([per_group[g] for g in spec.group_names]))
    r = p["reading"]
    assert r["records_per_sample"] == pytest.approx(rho) and r["records_per_sample_by_group"] == pytest.approx(per_group)
    assert "manifest.json" in r["records_per_sample_from"]
    assert p["schedule"]["final_mixture_at_sample"] == pytest.approx(200 / rho)
    assert run_spec.schedule_unit == "samples" and run_spec.t_grow == pytest.approx(200 / rho)
    # per-source counts are what the sampler draws; tokens and epochs follow
    ds = MixtureDataset(ShardSet(out), spec=run_spec)
    drawn = np.bincount(ds.sampler.draw(np.arange(p["samples"])).source, minlength=len(ds.source_names))
    assert [p["sources"][n]["samples"] for n in ds.source_names] == drawn.tolist()
    for name, s in p["sources"].items():
        assert s["tokens"] == s["samples"] * 64 and s["epochs"] == pytest.approx(s["samples"] / s["windows"])
    for group, g in p["groups"].items():
        assert g["samples"] == sum(s["samples"] for s in p["sources"].values() if s["group"] == group)
    # the written mixture: the file's groups and weights, times in samples
    assert "records per sample" in json.loads(written.read_text())["description"]
    np.testing.assert_allclose(run_spec.schedule().probabilities([0.0, 200 / rho / 2, 1e6]),
                               spec.schedule(sample_size=rho).probabilities([0.0, 200 / rho / 2, 1e6]))


def test_warnings_name_overused_underused_and_undrawn(dataset):
    _, out = dataset
    long = plan(dataset_dir=str(out), global_batch_size=64, steps=400)
    warned = "\n".join(long["warnings"])
    over = [n for n, s in long["sources"].items() if s["epochs"] > 4]
    assert over and all(f"source {n!r} is read" in warned for n in over)
    short = plan(dataset_dir=str(out), global_batch_size=1, steps=3, allow_partial_schedule=True)
    warned = "\n".join(short["warnings"])
    undrawn = [g for g, c in short["groups"].items() if c["samples"] == 0]
    assert undrawn and all(f"group {g!r} has weight in the schedule but the run draws none" in warned for g in undrawn)
    under = [n for n, s in short["sources"].items() if s["epochs"] < 0.01]
    assert under and all(f"source {n!r}: the run uses" in warned for n in under)
    strict = plan(dataset_dir=str(out), global_batch_size=1, steps=3, allow_partial_schedule=True, max_epochs=0.0)
    read = [n for n, s in strict["sources"].items() if s["epochs"] > 0]
    assert read and all(any(f"source {n!r} is read" in w and "epochs > 0" in w for w in strict["warnings"]) for n in read)


def test_any_registered_shape_is_planned_and_its_times_must_be_marked(tmp_path, monkeypatch):
    monkeypatch.setitem(SHAPES, "switch", Switch)
    path = write(tmp_path, switch_mixture())
    p = plan(mixture=str(path), global_batch_size=4, steps=20)
    assert p["schedule"] == {"shape": "switch", "final_mixture_at_sample": 64.0} and p["t_grow_reached_at_step"] == 16
    assert p["p_start"] == pytest.approx({"en": 0.9, "zh": 0.1})
    assert p["p_end"] == pytest.approx({"en": 0.9 / 3.9, "zh": 3.0 / 3.9})
    with pytest.raises(ChatflowError, match="does not mark all its times"):
        plan(mixture=str(path), global_batch_size=4, steps=20, schedule_unit="tokens")

    class Marked(Switch):
        mixture_keys = {**Switch.mixture_keys, "T_switch": Param(positive, time=True)}

    monkeypatch.setitem(SHAPES, "switch", Marked)
    p = plan(mixture=str(path), global_batch_size=4, steps=20, schedule_unit="records", records_per_sample=4.0)
    assert p["schedule"]["final_mixture_at_sample"] == 16.0 and p["t_grow_reached_at_step"] == 4


def test_cli_prints_text_or_json_and_writes_the_plan(tmp_path, capsys):
    args = ["plan", "--mixture", str(TABLE1), "--global_batch_size", "512", "--tokens", "8e9", "--schedule_unit",
            "records", "--records_per_sample", "10.85", "--gpus", "16"]
    assert cli.main(args + ["--output", str(tmp_path / "plan.json")]) == 0
    text = capsys.readouterr().out
    assert "T_grow = 5,000,000 records = 460,829 samples" in text and "reached at step 901" in text
    assert "GPU-hours: 737" in text and "46.1 h on 16 GPUs" in text
    written = json.loads((tmp_path / "plan.json").read_text())
    assert cli.main(args + ["--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == written
    for key in ("samples", "tokens", "global_batch_size", "steps", "t_grow_reached_at_step", "p_start", "p_end",
                "groups", "warnings", "gpu_hours", "reading"):
        assert key in printed
    assert printed["t_grow_reached_at_step"] == 901
