"""Balanced pairing: every pair gets votes at the same pace, sides alternate, counts survive a restart."""
from __future__ import annotations

import itertools
from collections import Counter

import pytest

from chatflow_plugin.evaluation.arena.pairing import BalancedPairing

MODELS = ["m1", "m2", "m3", "m4"]


def test_pairs_and_sides_stay_balanced_as_votes_come_in():
    pairing = BalancedPairing(MODELS, seed=0)
    for _ in range(6 * 10):
        a, b = pairing.draw(MODELS)
        pairing.close(a, b, voted=True)
    pairs = [frozenset(p) for p in itertools.combinations(MODELS, 2)]
    assert {pairing.votes[p] for p in pairs} == {10}
    for x, y in itertools.combinations(MODELS, 2):
        assert pairing.sides[(x, y)] == pairing.sides[(y, x)] == 5


def test_counts_from_the_votes_file_steer_new_rounds_to_the_missing_pairs():
    votes = Counter({frozenset(("m1", "m2")): 7, frozenset(("m1", "m3")): 7, frozenset(("m2", "m3")): 6})
    sides = Counter({("m2", "m3"): 6})
    pairing = BalancedPairing(["m1", "m2", "m3"], votes, sides, seed=1)
    a, b = pairing.draw(["m1", "m2", "m3"])
    assert (a, b) == ("m3", "m2")   # the pair with fewest votes, on the side it never had


def test_open_rounds_count_and_a_round_without_vote_gives_its_slot_back():
    pairing = BalancedPairing(["m1", "m2", "m3"], seed=2)
    drawn = [frozenset(pairing.draw(["m1", "m2", "m3"])) for _ in range(3)]
    assert len(set(drawn)) == 3   # three open rounds: three different pairs
    a, b = sorted(drawn[0])
    pairing.close(a, b, voted=False)
    pairing.close(a, b, voted=False)   # closing twice does not go negative
    assert pairing.open_rounds(a, b) == 0 and pairing.votes[drawn[0]] == 0
    assert frozenset(pairing.draw(["m1", "m2", "m3"])) == drawn[0]


def test_abandoned_rounds_stop_counting_after_open_seconds():
    pairing = BalancedPairing(["m1", "m2", "m3"], seed=3, open_seconds=0.0)
    first = frozenset(pairing.draw(["m1", "m2", "m3"]))
    assert pairing.open_rounds(*first) == 1
    seen = {frozenset(pairing.draw(["m1", "m2", "m3"])) for _ in range(30)}
    assert first in seen   # its open round no longer blocks it


def test_only_available_models_are_paired():
    pairing = BalancedPairing(MODELS, seed=4)
    for _ in range(20):
        assert set(pairing.draw(["m2", "m4"])) == {"m2", "m4"}
    with pytest.raises(ValueError, match="fewer than two"):
        pairing.draw(["m1"])
    with pytest.raises(ValueError, match="two distinct"):
        BalancedPairing(["m1", "m1"])
