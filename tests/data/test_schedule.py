import json
from pathlib import Path

import numpy as np
import pytest

from chatflow_plugin.data.mixture import load_mixture, parse_mixture
from chatflow_plugin.data.schedule import SHAPES, LinearGrowHold, Piecewise
from chatflow_plugin.errors import ChatflowError

ROOT = Path(__file__).resolve().parents[2]
TABLE1 = {"en_corpus": (0.60, 0.15), "zh_corpus": (0.05, 0.50), "parallel": (0.25, 0.0),
          "en_inst": (0.05, 0.10), "zh_inst": (0.0, 0.20), "code": (0.05, 0.05)}


@pytest.fixture(scope="module")
def table1():
    return load_mixture(ROOT / "models/mixtures/chatflow_table1.json")


def test_table1_file_matches_the_paper(table1):
    assert table1.group_names == list(TABLE1)
    assert {g.name: (g.schedule_params["alpha"], g.schedule_params["beta"]) for g in table1.groups} == TABLE1
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
    s = LinearGrowHold([2.0, 1.0], [1.0, 3.0], 100)
    np.testing.assert_allclose(s.probabilities(0), [2 / 3, 1 / 3])
    np.testing.assert_allclose(s.probabilities(50), [1.5 / 3.5, 2 / 3.5])
    np.testing.assert_allclose(s.probabilities(100), [0.25, 0.75])
    np.testing.assert_allclose(s.probabilities([0, 100]).sum(axis=1), 1.0)


@pytest.mark.parametrize("alpha, beta", [([0.6, 0.05, 0.25, 0.05, 0.0, 0.05], [0.15, 0.5, 0.0, 0.1, 0.2, 0.05]),
                                         ([2.0, 1.0], [1.0, 3.0]), ([1.0, 0.0], [0.0, 1.0]),
                                         ([1.0, 1.0], [1.0, 1.0 + 1e-9])])
def test_expected_counts_is_the_integral_of_p(alpha, beta):
    s = LinearGrowHold(alpha, beta, 1000)
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
        LinearGrowHold([1.0], [1.0], 0)
    with pytest.raises(ValueError):
        LinearGrowHold([0.0, 0.0], [1.0, 0.0], 10)


def test_tokens_unit_converts_t_grow(tmp_path, table1):
    data = json.loads((ROOT / "models/mixtures/chatflow_table1.json").read_text())
    data["schedule_unit"] = "tokens"
    data["T_grow"] = 5_000_000 * 2048
    path = tmp_path / "m.json"
    path.write_text(json.dumps(data))
    spec = load_mixture(path)
    assert spec.t_grow_samples == 5_000_000
    np.testing.assert_allclose(spec.schedule().probabilities(2_500_000), table1.schedule().probabilities(2_500_000))


# Every registered shape meets the contract the sampler relies on; a new shape adds its examples here.
TABLE1_ALPHA, TABLE1_BETA = [a for a, _ in TABLE1.values()], [b for _, b in TABLE1.values()]
EXAMPLES = {
    "linear_grow_hold": [LinearGrowHold(TABLE1_ALPHA, TABLE1_BETA, 1000), LinearGrowHold([2, 1], [1, 3], 250.5),
                         LinearGrowHold([1, 0, 0], [0, 0, 1], 3e6), LinearGrowHold([1, 1], [1, 1 + 1e-9], 10)],
    "piecewise": [
        Piecewise([0], [[1, 2, 3]]),                                                    # constant
        Piecewise([0, 300, 300, 700], [[3, 1, 0], [1, 2, 1], [0, 1, 5], [1, 1, 1]], "linear"),  # with a step
        Piecewise([0, 250, 900], [TABLE1_ALPHA, TABLE1_BETA, [0.05, 0.1, 0.0, 0.4, 0.4, 0.05]], "cosine"),
        Piecewise([0, 10, 10, 400, 1000], [[1, 0], [1, 1e-3], [0, 5], [2, 1], [1, 1 + 1e-7]],
                  ["cosine", "linear", "linear", "cosine"]),
        Piecewise([0, 500], [[1, 1], [1, 1 + 1e-9]], "cosine"),                        # rho ~ 1: the series
        Piecewise([0, 500], [[1e-6, 0], [0, 1e3]], "cosine"),                           # weights over 9 decades
    ],
}


def test_every_shape_has_contract_examples():
    assert set(EXAMPLES) == set(SHAPES)
    for name, shape in SHAPES.items():
        assert shape.shape == name and all(isinstance(s, shape) for s in EXAMPLES[name])


@pytest.mark.parametrize("schedule", [s for examples in EXAMPLES.values() for s in examples],
                         ids=lambda s: f"{s.shape}-{s.n_groups}")
def test_schedule_contract(schedule):
    k, knots = schedule.n_groups, schedule.knots
    assert knots[0] == 0 and (np.diff(knots) >= 0).all()
    horizon = 1.5 * knots[-1] + 10
    t = np.linspace(0, horizon, 1001)
    p = schedule.probabilities(t)
    assert p.shape == (1001, k) and (p >= 0).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
    # p holds from the last knot on
    np.testing.assert_allclose(schedule.probabilities(knots[-1] + np.array([0.0, 1.0, 1e12])),
                               np.broadcast_to(schedule.probabilities(knots[-1]), (3, k)), atol=1e-12)
    # vectorised over any array shape of t
    counts = schedule.expected_counts(t)
    assert counts.shape == (1001, k)
    np.testing.assert_array_equal(schedule.expected_counts(t.reshape(7, 11, 13)), counts.reshape(7, 11, 13, k))
    np.testing.assert_array_equal(schedule.probabilities(t.reshape(7, 11, 13)), p.reshape(7, 11, 13, k))
    # E sums to t, never decreases and is the integral of p (midpoint rule on a 200x finer grid)
    np.testing.assert_allclose(counts.sum(axis=1), t, rtol=1e-12, atol=1e-9)
    assert (np.diff(counts, axis=0) >= -1e-9).all()
    fine = np.linspace(0, horizon, 1000 * 200 + 1)
    numeric = np.concatenate([np.zeros((1, k)), np.cumsum(
        schedule.probabilities((fine[1:] + fine[:-1]) / 2) * (fine[1] - fine[0]), axis=0)[199::200]])
    steps = int((np.diff(knots) == 0).sum())        # the midpoint rule smears a jump over one fine interval
    np.testing.assert_allclose(counts, numeric, atol=1e-6 * horizon + steps * (fine[1] - fine[0]))
    # from a time offset: the integral over [start, t], for scalar and array starts
    start = knots[-1] / 3
    np.testing.assert_allclose(schedule.expected_counts(t, start=start),
                               counts - schedule.expected_counts(start), atol=1e-9 * horizon)
    starts = t[::-1].copy()
    np.testing.assert_allclose(schedule.expected_counts(t, start=starts), counts - counts[::-1], atol=1e-9 * horizon)
    np.testing.assert_allclose(schedule.expected_counts(t, start=start).sum(axis=1), t - start,
                               atol=1e-9 * horizon)
    np.testing.assert_array_equal(schedule.expected_counts(t, start=0.0), counts)


def test_linear_grow_hold_from_mixture_params():
    s = LinearGrowHold.from_params({"T_grow": 2048 * 10.0}, [{"alpha": 1.0, "beta": 0.0}, {"alpha": 0.0, "beta": 1.0}],
                                   sample_size=2048)
    assert s.n_groups == 2 and s.t_grow == 10.0
    np.testing.assert_array_equal(s.knots, [0.0, 10.0])
    np.testing.assert_allclose(s.probabilities(5.0), [0.5, 0.5])


def test_every_shape_marks_its_times():
    # MixtureSpec.in_samples rewrites a mixture's times in samples through these marks (chatflow plan)
    for shape in SHAPES.values():
        assert any(p.time for p in [*shape.mixture_keys.values(), *shape.group_keys.values()]), shape.shape


def test_in_samples_rewrites_the_times_only(table1):
    converted = table1.in_samples(2048.0)
    assert converted.schedule_unit == "samples" and converted.t_grow == pytest.approx(5e6 / 2048)
    assert [g.schedule_params for g in converted.groups] == [g.schedule_params for g in table1.groups]
    t = np.array([0.0, 1000.0, 5e6 / 2048, 1e7])
    np.testing.assert_array_equal(converted.schedule().probabilities(t), table1.schedule(sample_size=2048).probabilities(t))
    assert table1.in_samples(1.0) == table1


def test_probabilities_are_monotone_between_knots():
    """The contract the exact minimum over an interval (catch-up bounds) relies on."""
    for schedule in (s for examples in EXAMPLES.values() for s in examples):
        knots = schedule.knots
        for lo, hi in zip(knots[:-1], knots[1:]):
            if hi == lo:
                continue
            p = schedule.probabilities(np.linspace(lo, hi, 501)[:-1])
            d = np.diff(p, axis=0)
            assert ((d >= -1e-12).all(axis=0) | (d <= 1e-12).all(axis=0)).all()
        lo, hi = 0.2 * knots[-1], 0.9 * knots[-1] + 5
        grid = schedule.probabilities(np.linspace(lo, hi, 20001)).min(axis=0)
        np.testing.assert_allclose(schedule.min_probabilities(lo, hi), grid, atol=1e-3)
        assert (schedule.min_probabilities(lo, hi) <= grid + 1e-12).all()


def _piecewise_table1(**top) -> dict:
    data = json.loads((ROOT / "models/mixtures/chatflow_table1.json").read_text())
    t_grow = data.pop("T_grow")
    data.update(schedule_shape="piecewise", knots=[0, t_grow], **top)
    for group in data["groups"]:
        group["weights"] = [group.pop("alpha"), group.pop("beta")]
    return data


def test_table1_as_two_knots_is_the_same_schedule_to_the_bit(table1):
    spec = parse_mixture(_piecewise_table1(), base_dir=ROOT / "models/mixtures")
    assert spec.schedule_shape == "piecewise" and spec.schedule_params == {"knots": (0.0, 5e6), "interpolation": "linear"}
    paper, two_knots = table1.schedule(), spec.schedule()
    t = np.concatenate([np.arange(0, 50_000), np.arange(4_990_000, 5_010_000), [12_345_678]]).astype(float)
    np.testing.assert_array_equal(two_knots.expected_counts(t), paper.expected_counts(t))
    np.testing.assert_array_equal(two_knots.knots, paper.knots)


def test_step_is_a_zero_length_ramp():
    s = Piecewise([0, 100, 100, 200], [[1, 0], [1, 0], [0, 1], [0, 1]])
    np.testing.assert_allclose(s.probabilities([99.999, 100, 150]), [[1, 0], [0, 1], [0, 1]])
    np.testing.assert_allclose(s.expected_counts([100, 130]), [[100, 0], [100, 30]])
    np.testing.assert_allclose(s.min_probabilities(50, 150), [0, 0])


def test_cosine_moves_slowly_at_both_ends():
    s = Piecewise([0, 100], [[1, 0], [0, 1]], "cosine")
    np.testing.assert_allclose(s.probabilities([0, 50, 100])[:, 1], [0, 0.5, 1], atol=1e-12)
    assert s.probabilities(5)[1] < 0.01 and s.probabilities(95)[1] > 0.99     # linear: 0.05 and 0.95
    np.testing.assert_allclose(s.expected_counts(100), [50, 50])       # symmetric ramp: half each


def test_tokens_unit_divides_knots(tmp_path):
    data = _piecewise_table1(schedule_unit="tokens")
    data["knots"] = [0, 2048 * 1000, 2048 * 3000]
    for group in data["groups"]:
        group["weights"].append(1.0)
    spec = parse_mixture(data, base_dir=ROOT / "models/mixtures")
    np.testing.assert_array_equal(spec.schedule().knots, [0, 1000, 3000])


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(knots=[5, 10]), r"m.json.knots: the first knot must be at 0"),
    (lambda d: d.update(knots=[0, 10, 5]), r"knots: knots must not decrease"),
    (lambda d: d.update(knots=[0, 5, 5, 5]), r"knots: a knot time may appear at most twice"),
    (lambda d: d.update(knots=[]), r"m.json.knots: expected a non-empty list"),
    (lambda d: d.update(knots=[0, -1]), r"m.json.knots: \[1\]: must be >= 0"),
    (lambda d: d.update(interpolation="spline"), r"m.json.interpolation: expected one of"),
    (lambda d: d.update(interpolation=["linear", "cosine"]), r"m.json.interpolation: expected one of .* \(1\)"),
    (lambda d: d["groups"][1].update(weights=[1]), r"m.json.groups\[1\] \(zh_corpus\).weights: expected one weight per knot"),
    (lambda d: d["groups"][1].update(alpha=1), r"groups\[1\] \(zh_corpus\): unknown key\(s\) \['alpha'\]"),
    (lambda d: d["groups"][0].pop("weights"), r"groups\[0\] \(en_corpus\): missing 'weights'"),
    (lambda d: [g.update(weights=[1, 0]) for g in d["groups"]], r"m.json.weights: every group's weight is 0 at knot 1"),
])
def test_piecewise_errors_name_file_group_and_key(change, message):
    data = _piecewise_table1()
    change(data)
    with pytest.raises(ChatflowError, match=message):
        parse_mixture(data, where="m.json", base_dir=ROOT / "models/mixtures")
