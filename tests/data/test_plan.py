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
from chatflow_plugin.data.plan import DEFAULT_THROUGHPUT, THROUGHPUT_SOURCE, PlanOptions, make_plan, run_plan
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


PAPER_SIZES = ["en_corpus=10", "zh_corpus=24.5", "parallel=3.2", "en_inst=6.7", "zh_inst=9.1", "code=2"]  # Table 1, GB


def test_the_papers_compute_reaches_t_grow_at_step_9766_and_reads_its_8b_tokens_several_times():
    """The paper's run read literally: T_grow = 5M packed samples, two weeks on 16 A100s (5,376 GPU-hours) at the
    planner's throughput, over "about 50GB data containing 8B tokens" split by Table 1's sizes."""
    p = plan(mixture=str(TABLE1), global_batch_size=512, gpu_hours=16 * 14 * 24, gpus=16, data_tokens=8e9,
             data_sizes=PAPER_SIZES)
    tokens = 5376 * 3600 * DEFAULT_THROUGHPUT
    assert p["steps"] == math.floor(tokens / (512 * 2048)) == 55_631
    assert p["length"] == {"from": "gpu_hours", "gpu_hours": 5376, "tokens": pytest.approx(tokens),
                           "tokens_per_second_per_gpu": DEFAULT_THROUGHPUT, "throughput_from": THROUGHPUT_SOURCE}
    assert p["schedule_unit"] == p["reading"]["schedule_unit"] == p["reading"]["as_written"] == "samples"
    assert p["t_grow_reached_at_step"] == math.ceil(5e6 / 512) == 9766 and p["schedule"]["final_mixture_at_sample"] == 5e6
    assert p["p_end"] == pytest.approx({"en_corpus": 0.15, "zh_corpus": 0.5, "parallel": 0.0, "en_inst": 0.1,
                                        "zh_inst": 0.2, "code": 0.05})
    assert p["gpu_hours"]["hours"] == pytest.approx(336.0, abs=0.1)
    # per-group epochs over the stated data: 8B tokens split as Table 1's GB
    sizes = {"en_corpus": 10, "zh_corpus": 24.5, "parallel": 3.2, "en_inst": 6.7, "zh_inst": 9.1, "code": 2}
    for name, g in p["groups"].items():
        assert g["data_tokens"] == pytest.approx(8e9 * sizes[name] / sum(sizes.values()))
        assert g["epochs"] == pytest.approx(g["tokens"] / g["data_tokens"])
    assert p["data"]["tokens"] == 8e9 and p["data"]["epochs"] == pytest.approx(p["tokens"] / 8e9) and p["data"]["epochs"] > 7
    assert "--data_sizes" in p["data"]["from"]
    over = sorted(n for n, g in p["groups"].items() if g["epochs"] > 4)
    assert over == ["code", "en_corpus", "en_inst", "zh_corpus", "zh_inst"]          # parallel stops at T_grow
    warned = "\n".join(p["warnings"])
    assert all(f"group {n!r} is read" in warned for n in over) and "'parallel'" not in warned


def test_eight_billion_trained_tokens_end_before_t_grow_and_are_refused(capsys):
    p = plan(mixture=str(TABLE1), global_batch_size=512, tokens=8e9, allow_partial_schedule=True)
    assert p["steps"] == math.ceil(8e9 / (512 * 2048)) == 7630 and p["length"] == {"from": "tokens", "tokens": 8e9}
    assert p["samples"] == 7630 * 512 and p["tokens"] == 7630 * 512 * 2048
    assert p["t_grow_reached_at_step"] is None and p["schedule"]["final_mixture_at_sample"] == 5e6
    # at the end the parallel group is still drawn, beta never reached
    schedule = load_mixture(TABLE1).schedule()
    assert list(p["p_end"].values()) == pytest.approx(schedule.probabilities(float(p["samples"])).tolist())
    assert p["p_end"]["parallel"] == pytest.approx(0.0547, abs=1e-4)
    assert p["p_start"] == pytest.approx({"en_corpus": 0.6, "zh_corpus": 0.05, "parallel": 0.25, "en_inst": 0.05,
                                          "zh_inst": 0.0, "code": 0.05})
    assert sum(g["samples"] for g in p["groups"].values()) == p["samples"]
    assert sum(g["share"] for g in p["groups"].values()) == pytest.approx(1.0)
    assert any("never reaches its final weights" in w for w in p["warnings"])
    assert "data" not in p and "epochs" not in p["groups"]["en_corpus"]      # no data size stated
    # refused without --allow_partial_schedule, naming the way out
    code = cli.main(["plan", "--mixture", str(TABLE1), "--global_batch_size", "512", "--tokens", "8e9"])
    err = capsys.readouterr().err
    assert code == 2 and "chatflow plan: error:" in err and "--allow_partial_schedule" in err and "step 9,766" in err


def test_a_stated_data_size_without_a_split_reads_every_group_equally_and_bad_sizes_are_named():
    p = plan(mixture=str(TABLE1), global_batch_size=512, steps=20_000, data_tokens=8e9)
    epochs = {g["epochs"] for g in p["groups"].values()}
    assert max(epochs) == pytest.approx(min(epochs)) == pytest.approx(p["tokens"] / 8e9)
    assert "in proportion to each group's draws" in p["data"]["from"]
    assert not any("is read" in w for w in p["warnings"])              # 2.6 epochs: under 4
    strict = plan(mixture=str(TABLE1), global_batch_size=512, steps=20_000, data_tokens=8e9, max_epochs=2)
    assert sum("is read" in w for w in strict["warnings"]) == 6
    for sizes, message in ((PAPER_SIZES[:-1], "no size for group\\(s\\) code"),
                           (PAPER_SIZES + ["code=3"], "group 'code' is given twice"),
                           (PAPER_SIZES[:-1] + ["kode=2"], "the mixture has no group 'kode'"),
                           (PAPER_SIZES[:-1] + ["code=-1"], "expected NAME=SIZE with a size >= 0"),
                           (PAPER_SIZES[:-1] + ["code"], "expected NAME=SIZE")):
        with pytest.raises(ChatflowError, match=message):
            plan(mixture=str(TABLE1), global_batch_size=512, steps=20_000, data_tokens=8e9, data_sizes=sizes)
    with pytest.raises(ChatflowError, match="give --data_tokens too"):
        plan(mixture=str(TABLE1), global_batch_size=512, steps=20_000, data_sizes=PAPER_SIZES)
    zero = plan(mixture=str(TABLE1), global_batch_size=512, steps=20_000, data_tokens=8e9,
                data_sizes=PAPER_SIZES[:-1] + ["code=0"])
    assert zero["groups"]["code"]["epochs"] is None and any("'code' is drawn from but" in w for w in zero["warnings"])


def test_steps_and_tokens_give_the_same_plan_and_exactly_one_is_needed():
    by_steps = plan(mixture=str(TABLE1), global_batch_size=64, steps=100_000)
    by_tokens = plan(mixture=str(TABLE1), global_batch_size=64, tokens=100_000 * 64 * 2048)
    assert by_steps.pop("length") == {"from": "steps"} and by_tokens.pop("length")["from"] == "tokens"
    assert by_steps == by_tokens
    assert by_steps["t_grow_reached_at_step"] == math.ceil(5e6 / 64) == 78_125
    for kw in ({}, {"steps": 10, "tokens": 1e6}, {"tokens": 1e6, "gpu_hours": 10.0}):
        with pytest.raises(ChatflowError, match="exactly one of --steps, --tokens and --gpu_hours"):
            plan(mixture=str(TABLE1), global_batch_size=64, **kw)
    with pytest.raises(ChatflowError, match="less than one step"):
        plan(mixture=str(TABLE1), global_batch_size=64, gpu_hours=1e-3)
    by_hours = plan(mixture=str(TABLE1), global_batch_size=64, gpu_hours=100.0, tokens_per_second_per_gpu=1000.0)
    assert by_hours["steps"] == math.floor(100 * 3600 * 1000 / (64 * 2048))
    assert by_hours["length"]["throughput_from"] == "--tokens_per_second_per_gpu"
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
        windows = sum(s["windows"] for s in p["sources"].values() if s["group"] == group)
        assert g["data_tokens"] == windows * 64 and g["epochs"] == pytest.approx(g["samples"] / windows)
    assert p["data"]["tokens"] == sum(s["windows"] for s in p["sources"].values()) * 64
    assert "manifest.json" in p["data"]["from"]
    with pytest.raises(ChatflowError, match="with --dataset_dir it is measured"):
        plan(dataset_dir=str(out), global_batch_size=8, steps=50, data_tokens=8e9)
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
    args = ["plan", "--mixture", str(TABLE1), "--global_batch_size", "512", "--gpu_hours", "5376", "--gpus", "16",
            "--data_tokens", "8e9", "--data_sizes", *PAPER_SIZES]
    assert cli.main(args + ["--output", str(tmp_path / "plan.json")]) == 0
    text = capsys.readouterr().out
    assert "length: 5,376 GPU-hours at 3,014 tokens/s per GPU (LLaMA-2-7B's pretraining" in text
    assert "T_grow = 5,000,000 samples" in text and "reached at step 9,766 (18% of the run)" in text
    assert "read 7.29 times in all" in text and "336.0 h on 16 GPUs" in text
    written = json.loads((tmp_path / "plan.json").read_text())
    assert cli.main(args + ["--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == written
    for key in ("samples", "tokens", "global_batch_size", "steps", "t_grow_reached_at_step", "p_start", "p_end",
                "groups", "warnings", "gpu_hours", "reading", "length", "data"):
        assert key in printed
    assert printed["t_grow_reached_at_step"] == 9766 and printed["steps"] == 55_631
