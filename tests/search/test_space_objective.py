"""The search space (bounds, design, mixtures it writes) and the objective's language, without training."""
from __future__ import annotations

import json

import numpy as np
import pytest

from chatflow_plugin.data.mixture import load_mixture
from chatflow_plugin.errors import ChatflowError
from chatflow_plugin.search.objective import parse_constraint, parse_objective
from chatflow_plugin.search.space import (Range, at_scale, default_space, halton, mixture_json, parse_space,
                                          reference_values)
from search_support import GROUPS, mixture_spec


def test_default_space_searches_alpha_beta_and_t_grow():
    space = default_space(mixture_spec())
    assert space.free == ["T_grow", "alpha.en", "beta.en", "alpha.zh", "beta.zh", "alpha.inst", "beta.inst"]
    values = space.values(np.zeros(7))
    assert values["T_grow"] == pytest.approx(0.1) and values["alpha.en"] == 0.0
    assert space.values(np.ones(7))["beta.zh"] == 1.0


def test_fixed_values_ranges_and_defaults():
    space = parse_space({"T_grow": 0.5, "default": {"alpha": [0.1, 0.2]}, "groups": {"inst": {"beta": 0.3}}},
                        mixture_spec())
    assert space.free == ["alpha.en", "beta.en", "alpha.zh", "beta.zh", "alpha.inst"]
    values = space.values(np.full(5, 0.5))
    assert values["T_grow"] == 0.5 and values["beta.inst"] == 0.3 and values["alpha.en"] == pytest.approx(0.15)


def test_the_design_fills_the_cube_and_a_longer_one_keeps_the_shorter():
    a, b = halton(16, 5, seed=3), halton(40, 5, seed=3)
    assert np.array_equal(a, b[:16])
    assert ((b >= 0) & (b < 1)).all()
    for j in range(5):                         # every projection covers each fifth of the range
        assert len(set((b[:, j] * 5).astype(int))) == 5
    assert not np.array_equal(halton(16, 5, seed=4), a)


@pytest.mark.parametrize("data, message", [
    ({"shape": "cosine"}, "shape"),
    ({"T_grow": [0.0, 0.5]}, "T_grow"),
    ({"T_grow": [0.5, 0.2]}, "above high"),
    ({"groups": {"xx": {}}}, "unknown key"),
    ({"groups": {"en": {"gamma": 1}}}, "unknown key"),
    ({"default": {"alpha": 0, "beta": [0, 1]}}, "every group's alpha is 0"),
    ({"shape": "piecewise", "knots": [0, [0.5, 0.7], [0.6, 0.9]]}, "overlap"),
    ({"shape": "piecewise", "knots": [0.1, 1]}, "first knot"),
    ({"shape": "piecewise", "knots": [0, 1], "groups": {"en": {"weights": [1]}}}, "one weight"),
])
def test_bad_spaces_are_clear_errors(data, message):
    with pytest.raises(ChatflowError, match=message):
        parse_space(data, mixture_spec(), where="space.json")


def test_a_mixture_written_from_a_point_loads_in_the_reference_unit(tmp_path):
    spec = mixture_spec()
    space = default_space(spec)
    values = space.values(np.full(space.dimensions, 0.5))
    data = mixture_json(spec, space, values, 1000, "chosen", "test", unit="tokens")
    path = tmp_path / "m.json"
    path.write_text(json.dumps(data))
    loaded = load_mixture(path)
    assert loaded.schedule_unit == "tokens" and loaded.t_grow == pytest.approx(values["T_grow"] * 1000 * 32)
    assert loaded.t_grow_samples == pytest.approx(values["T_grow"] * 1000)
    assert [s.name for _, s in loaded.sources] == GROUPS
    assert loaded.groups[1].schedule_params["beta"] == values["beta.zh"]


def test_piecewise_space_writes_a_piecewise_mixture(tmp_path):
    spec = mixture_spec()
    space = parse_space({"shape": "piecewise", "knots": [0, [0.2, 0.4], 1.0], "interpolation": "cosine",
                         "default": {"weights": [0.1, 1]}}, spec)
    assert space.free[0] == "knot.1" and space.dimensions == 1 + 3 * 3
    values = space.values(np.full(space.dimensions, 0.25))
    data = mixture_json(spec, space, values, 200, "pw", "test")
    path = tmp_path / "pw.json"
    path.write_text(json.dumps(data))
    loaded = load_mixture(path)
    assert loaded.schedule_shape == "piecewise" and loaded.schedule_params["knots"] == pytest.approx([0, 50, 200])
    assert np.allclose(loaded.schedule().probabilities(120.0), space.schedule(values, 200).probabilities(120.0))


def test_the_reference_at_the_proxies_scale_and_as_parameters():
    spec = mixture_spec()                             # T_grow 60 samples, written for a run of 600
    small = at_scale(spec, 0.1)
    assert small.t_grow == pytest.approx(6.0)
    values = reference_values(default_space(spec), small, 60)
    assert values["T_grow"] == pytest.approx(0.1) and values["alpha.en"] == 0.7


def test_objective_and_constraints_in_group_names():
    objective = parse_objective("mean(zh, inst)", GROUPS)
    assert objective.value({"en": 9, "zh": 2, "inst": 4}) == 3
    weighted = parse_objective("0.7 * zh + 0.3*inst - en", GROUPS)
    assert weighted.value({"en": 1, "zh": 2, "inst": 4}) == pytest.approx(1.4 + 1.2 - 1)
    relative = parse_constraint("en <= reference + 0.02", GROUPS)
    assert relative.excess({"en": 5.05}, {"en": 5.0}) == pytest.approx(0.03)
    absolute = parse_constraint("mean(en, inst) <= 5.5", GROUPS)
    assert absolute.excess({"en": 5, "inst": 5}, None) == -0.5


@pytest.mark.parametrize("text, message", [
    ("mean(zh, ja)", "'ja' is not a group"), ("", "give the loss"), ("zh *", "expected"), ("zh zh", "expected '\\+'"),
])
def test_bad_objectives_name_the_problem(text, message):
    with pytest.raises(ChatflowError, match=message):
        parse_objective(text, GROUPS)


@pytest.mark.parametrize("text", ["en <=", "en <= reference * 2", "en < 3", "en <= 3 4"])
def test_bad_constraints_name_the_problem(text):
    with pytest.raises(ChatflowError, match="--constraint"):
        parse_constraint(text, GROUPS)
