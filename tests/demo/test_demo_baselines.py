"""Ablation baselines as mixture files: static = time-average of the dynamic schedule; two matched stages."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from chatflow_plugin.cli import main as chatflow_main
from chatflow_plugin.data.baselines import (instruction_groups, static_mixture, time_average_shares,
                                       two_stage_mixtures)
from chatflow_plugin.errors import ChatflowError
from chatflow_plugin.data.mixture import load_mixture, parse_mixture
from chatflow_plugin.data.sampler import realized_group_counts

TABLE1 = Path(__file__).resolve().parents[2] / "models" / "mixtures" / "chatflow_table1.json"


def test_static_mixture_matches_the_dynamic_runs_expected_samples():
    spec = load_mixture(TABLE1)
    n = 12_000_000                      # longer than T_grow (5M): growth phase, then constant beta
    shares = time_average_shares(spec, n)
    assert sum(shares.values()) == pytest.approx(1.0)
    static = parse_mixture(static_mixture(spec, n))
    assert [s.name for _, s in static.sources] == [s.name for _, s in spec.sources]   # sources kept
    assert np.allclose(static.schedule().expected_counts(float(n)), spec.schedule().expected_counts(float(n)))
    assert np.allclose(static.schedule().probabilities(0.0), static.schedule().probabilities(float(n)))
    # zh_inst has alpha 0 in Table 1: the time average still gives it its share
    assert shares["zh_inst"] > 0 and spec.schedule().probabilities(0.0)[spec.group_names.index("zh_inst")] == 0


def test_two_stages_split_the_static_shares_by_group_kind():
    spec = load_mixture(TABLE1)
    n = 100_000
    assert instruction_groups(spec) == ["en_inst", "zh_inst"]
    first, second, n2 = two_stage_mixtures(spec, n)
    shares = time_average_shares(spec, n)
    assert n2 == round(n * (shares["en_inst"] + shares["zh_inst"]))
    c1 = realized_group_counts(parse_mixture(first).schedule(), n - n2)
    c2 = realized_group_counts(parse_mixture(second).schedule(), n2)
    static = realized_group_counts(parse_mixture(static_mixture(spec, n)).schedule(), n)
    assert np.abs(c1 + c2 - static).max() <= 2
    names = spec.group_names
    assert c1[names.index("en_inst")] == c2[names.index("en_corpus")] == 0


def test_baselines_reject_what_cannot_be_split(tmp_path):
    spec = load_mixture(TABLE1)
    with pytest.raises(ChatflowError, match="positive"):
        time_average_shares(spec, 0)
    data = json.loads(TABLE1.read_text())
    data["groups"] = [g for g in data["groups"] if g["name"] not in ("en_inst", "zh_inst")]
    with pytest.raises(ChatflowError, match="no group made only of instruction"):
        two_stage_mixtures(parse_mixture(data), 1000)


def test_cli_writes_the_four_mixture_files(tmp_path, capsys):
    assert chatflow_main(["baselines", "--mixture", str(TABLE1), "--run_samples", "50000", "--output_dir", str(tmp_path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["stage1_samples"] + info["stage2_samples"] == 50000
    for name in ("dynamic", "static", "stage1", "stage2"):
        load_mixture(tmp_path / f"{name}.json")       # every file is a valid mixture


def test_baselines_of_any_shape_and_the_paper_files_unchanged(tmp_path):
    """A piecewise (or adaptive) dynamic mixture has static and two-stage baselines too, matched the same way;
    a paper mixture's baseline files are what they always were (alpha = beta, its T_grow, its key order)."""
    paper = load_mixture(TABLE1)
    static_paper = static_mixture(paper, 100_000)
    assert list(static_paper) == list(paper.to_json()) and static_paper["T_grow"] == 5_000_000
    assert list(static_paper["groups"][0]) == ["name", "alpha", "beta", "language", "sources"]
    data = json.loads(TABLE1.read_text())
    data.pop("T_grow")
    data.update(schedule_shape="piecewise", knots=[0, 30_000, 30_000, 80_000], interpolation="cosine",
                adaptive={"signal": "loss", "every_samples": 1000})
    for g in data["groups"]:
        g["weights"] = [g.pop("alpha"), g.pop("beta"), g["beta"] if "beta" in g else 0.1, 0.2]
    spec = parse_mixture(data, base_dir=TABLE1.parent)
    n = 100_000
    static = parse_mixture(static_mixture(spec, n))
    assert static.schedule_shape == "linear_grow_hold" and static.adaptive is None
    assert np.allclose(static.schedule().expected_counts(float(n)), spec.schedule().expected_counts(float(n)))
    first, second, n2 = two_stage_mixtures(spec, n)
    c1 = realized_group_counts(parse_mixture(first).schedule(), n - n2)
    c2 = realized_group_counts(parse_mixture(second).schedule(), n2)
    assert np.abs(c1 + c2 - realized_group_counts(spec.schedule(), n)).max() <= 3
