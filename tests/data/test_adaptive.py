"""The adaptive policy: signals, smoothing, bounds, and decisions that depend only on recorded numbers."""
import json
import math

import pytest

from chatflow_plugin.data.adaptive import AdaptivePolicy, parse_policy
from chatflow_plugin.data.mixture import parse_mixture
from chatflow_plugin.errors import ChatflowError

P = {"en": 0.5, "zh": 0.3, "inst": 0.2}


def test_loss_signal_moves_weight_to_the_groups_with_higher_loss():
    policy = AdaptivePolicy("loss", every_samples=100, rate=1.0, smoothing=0.0)
    state, factors = policy.update(None, {"en": 2.0, "zh": 4.0, "inst": 3.0}, P)
    assert factors["zh"] > factors["inst"] > factors["en"]
    assert sum(P[g] * factors[g] for g in P) == pytest.approx(1.0)          # relative to the designed mixture
    # z = s / mean(s) - 1: en -1/3, zh +1/3, inst 0, times rate, then normalised
    raw = {g: math.exp(z) for g, z in {"en": -1 / 3, "zh": 1 / 3, "inst": 0.0}.items()}
    norm = sum(P[g] * raw[g] for g in P)
    assert factors == pytest.approx({g: raw[g] / norm for g in P})
    assert state["losses"] == {"en": 2.0, "zh": 4.0, "inst": 3.0}


def test_excess_loss_uses_the_reference_and_clips_at_zero():
    policy = AdaptivePolicy("excess_loss", every_samples=100, smoothing=0.0, reference={"en": 2.5, "zh": 2.0, "inst": 2.0})
    _, factors = policy.update(None, {"en": 2.0, "zh": 3.0, "inst": 2.5}, P)
    assert factors["zh"] > factors["inst"] > factors["en"]                  # en's excess is 0 (below reference)


def test_improvement_needs_a_previous_evaluation_and_favours_fast_learners():
    policy = AdaptivePolicy("improvement", every_samples=100, smoothing=0.0)
    state, factors = policy.update(None, {"en": 3.0, "zh": 5.0, "inst": 4.0}, P)
    assert factors == pytest.approx({g: 1.0 for g in P})                    # nothing to compare with yet
    state, factors = policy.update(state, {"en": 2.97, "zh": 4.0, "inst": 3.9}, P)
    assert factors["zh"] > factors["inst"] > factors["en"]


def test_bounds_and_smoothing():
    policy = AdaptivePolicy("loss", every_samples=100, rate=5.0, smoothing=0.5, min_factor=0.5, max_factor=2.0)
    state = None
    for _ in range(20):
        state, factors = policy.update(state, {"en": 1.0, "zh": 9.0, "inst": 1.0}, P)
        assert all(0.5 <= f <= 2.0 for f in factors.values())
    assert factors["zh"] == 2.0 and factors["en"] == 0.5
    smooth = AdaptivePolicy("loss", every_samples=100, smoothing=0.9)
    state, _ = smooth.update(None, {"en": 1.0, "zh": 1.0, "inst": 1.0}, P)
    state, _ = smooth.update(state, {"en": 1.0, "zh": 3.0, "inst": 1.0}, P)
    assert state["smoothed"]["zh"] == pytest.approx(0.9 * 1.0 + 0.1 * 3.0)


def test_a_group_without_loss_keeps_its_factor_and_decisions_use_rounded_losses():
    policy = AdaptivePolicy("loss", every_samples=100, smoothing=0.0)
    _, factors = policy.update({"factors": {"en": 1.0, "zh": 1.0, "inst": 1.7}}, {"en": 2.0, "zh": 3.0, "inst": None}, P)
    _, again = policy.update({"factors": {"en": 1.0, "zh": 1.0, "inst": 1.7}},
                             {"en": 2.0 + 1e-9, "zh": 3.0 - 1e-9, "inst": float("nan")}, P)
    assert factors == again
    # the state round-trips through JSON (checkpoints) and gives the same next decision
    state, _ = policy.update(None, {"en": 2.123456789, "zh": 3.0, "inst": 2.5}, P)
    a = policy.update(state, {"en": 2.0, "zh": 2.9, "inst": 2.6}, P)
    b = policy.update(json.loads(json.dumps(state)), {"en": 2.0, "zh": 2.9, "inst": 2.6}, P)
    assert a == b


def test_due_counts_multiples_of_every_samples():
    policy = AdaptivePolicy("loss", every_samples=100)
    assert [policy.due(s - 32, s) for s in (32, 96, 128, 192, 224)] == [False, False, True, False, True]


@pytest.mark.parametrize("adaptive, message", [
    ({"signal": "nope", "every_samples": 10}, r"m.json.adaptive.signal: expected one of"),
    ({"signal": "loss"}, r"m.json.adaptive.every_samples: expected a positive integer"),
    ({"signal": "loss", "every_samples": 10, "rate": 0}, r"adaptive.rate: must be > 0"),
    ({"signal": "loss", "every_samples": 10, "min_factor": 2}, r"adaptive.min_factor: must be > 0 and <= 1"),
    ({"signal": "excess_loss", "every_samples": 10}, r"adaptive.reference: the excess_loss signal needs"),
    ({"signal": "loss", "every_samples": 10, "reference": {"xx": 1}}, r"adaptive.reference: unknown group\(s\) \['xx'\]"),
    ({"signal": "loss", "every_samples": 10, "step": 3}, r"adaptive: unknown key\(s\) \['step'\]"),
])
def test_policy_errors_name_the_key(adaptive, message):
    data = {"name": "m", "T_grow": 10, "groups": [
        {"name": "en", "alpha": 1, "beta": 1, "sources": [{"name": "en", "kind": "corpus", "paths": ["x"]}]}],
        "adaptive": adaptive}
    with pytest.raises(ChatflowError, match=message):
        parse_mixture(data, where="m.json")


def test_policy_round_trips_through_the_mixture_file():
    data = {"name": "m", "T_grow": 10, "adaptive": {"signal": "improvement", "every_samples": 64, "rate": 0.5},
            "groups": [{"name": "en", "alpha": 1, "beta": 1, "sources": [{"name": "en", "kind": "corpus", "paths": ["x"]}]}]}
    spec = parse_mixture(data)
    assert spec.adaptive == parse_policy(data["adaptive"], "x", ["en"]) and spec.adaptive.rate == 0.5
    assert parse_mixture(spec.to_json()).adaptive == spec.adaptive
