import json
from pathlib import Path

import numpy as np
import pytest

from chatflow_plugin.data.mixture import load_mixture
from chatflow_plugin.data.schedule import Schedule

ROOT = Path(__file__).resolve().parents[2]
TABLE1 = {"en_corpus": (0.60, 0.15), "zh_corpus": (0.05, 0.50), "parallel": (0.25, 0.0),
          "en_inst": (0.05, 0.10), "zh_inst": (0.0, 0.20), "code": (0.05, 0.05)}


@pytest.fixture(scope="module")
def table1():
    return load_mixture(ROOT / "models/mixtures/chatflow_table1.json")


def test_table1_file_matches_the_paper(table1):
    assert table1.group_names == list(TABLE1)
    assert {g.name: (g.alpha, g.beta) for g in table1.groups} == TABLE1
    assert table1.t_grow == 5_000_000 and table1.seq_length == 2048 and table1.schedule_unit == "samples"
    assert len(table1.sources) == 11


@pytest.mark.parametrize("t, expected", [
    (0, [0.60, 0.05, 0.25, 0.05, 0.0, 0.05]),
    (2_500_000, [0.375, 0.275, 0.125, 0.075, 0.10, 0.05]),
    (5_000_000, [0.15, 0.50, 0.0, 0.10, 0.20, 0.05]),
    (9_000_000, [0.15, 0.50, 0.0, 0.10, 0.20, 0.05]),
])
def test_table1_probabilities(table1, t, expected):
    np.testing.assert_allclose(table1.schedule().probabilities(t), expected, atol=1e-12)


def test_probabilities_normalise_unnormalised_weights():
    s = Schedule([2.0, 1.0], [1.0, 3.0], 100)
    np.testing.assert_allclose(s.probabilities(0), [2 / 3, 1 / 3])
    np.testing.assert_allclose(s.probabilities(50), [1.5 / 3.5, 2 / 3.5])
    np.testing.assert_allclose(s.probabilities(100), [0.25, 0.75])
    np.testing.assert_allclose(s.probabilities([0, 100]).sum(axis=1), 1.0)


@pytest.mark.parametrize("alpha, beta", [([0.6, 0.05, 0.25, 0.05, 0.0, 0.05], [0.15, 0.5, 0.0, 0.1, 0.2, 0.05]),
                                         ([2.0, 1.0], [1.0, 3.0]), ([1.0, 0.0], [0.0, 1.0]),
                                         ([1.0, 1.0], [1.0, 1.0 + 1e-9])])
def test_expected_counts_is_the_integral_of_p(alpha, beta):
    s = Schedule(alpha, beta, 1000)
    x = np.array([0, 1, 250, 999.5, 1000, 1700])
    # midpoint rule on a fine grid
    for xi, e in zip(x, s.expected_counts(x)):
        grid = np.linspace(0, xi, 200_001)
        mid = (grid[1:] + grid[:-1]) / 2
        numeric = s.probabilities(mid).sum(axis=0) * (grid[1] - grid[0]) if xi else np.zeros(len(alpha))
        np.testing.assert_allclose(e, numeric, atol=1e-6 * max(xi, 1))
        assert e.sum() == pytest.approx(xi, abs=1e-9 * max(xi, 1))


def test_schedule_rejects_bad_parameters():
    with pytest.raises(ValueError):
        Schedule([1.0], [1.0], 0)
    with pytest.raises(ValueError):
        Schedule([0.0, 0.0], [1.0, 0.0], 10)


def test_tokens_unit_converts_t_grow(tmp_path, table1):
    data = json.loads((ROOT / "models/mixtures/chatflow_table1.json").read_text())
    data["schedule_unit"] = "tokens"
    data["T_grow"] = 5_000_000 * 2048
    path = tmp_path / "m.json"
    path.write_text(json.dumps(data))
    spec = load_mixture(path)
    assert spec.t_grow_samples == 5_000_000
    np.testing.assert_allclose(spec.schedule().probabilities(2_500_000), table1.schedule().probabilities(2_500_000))
