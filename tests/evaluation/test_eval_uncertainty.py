"""Standard errors of the headline averages and paired tests between two models."""
from __future__ import annotations

from math import comb

import numpy as np
import pytest

from chatflow_plugin.evaluation.uncertainty import Outcomes, mcnemar_exact, paired_test, stderr


def _outcomes(correct, subjects=None, average="micro", points=None) -> Outcomes:
    correct = np.asarray(correct, dtype=float)
    subjects = np.zeros(len(correct), dtype=np.int64) if subjects is None else np.asarray(subjects)
    possible = np.ones(len(correct)) if points is None else np.asarray(points, dtype=float)
    return Outcomes([f"q{i}" for i in range(len(correct))], subjects, correct * possible, possible, average)


def test_micro_stderr_is_the_sample_standard_error():
    rng = np.random.default_rng(0)
    x = (rng.random(500) < 0.3).astype(float)
    se, how = stderr(_outcomes(x))
    p = x.mean()
    assert se == pytest.approx(np.sqrt(p * (1 - p) / (len(x) - 1)))   # lm-evaluation-harness's acc_stderr
    assert "sample standard error" in how


def test_macro_bootstrap_stderr_matches_the_analytic_value():
    rng = np.random.default_rng(1)
    sizes, rates = [40, 200, 80, 15], [0.2, 0.5, 0.7, 0.4]
    subjects = np.repeat(np.arange(4), sizes)
    x = np.concatenate([(rng.random(n) < r).astype(float) for n, r in zip(sizes, rates)])
    o = _outcomes(x, subjects, "macro")
    se, how = stderr(o, n_boot=4000, seed=3)
    # mean of subject means: var = sum(p_s (1 - p_s) / n_s) / S^2 (plug-in, as the bootstrap estimates)
    p = np.array([x[subjects == s].mean() for s in range(4)])
    analytic = np.sqrt(np.sum(p * (1 - p) / np.array(sizes))) / 4
    assert se == pytest.approx(analytic, rel=0.06) and "bootstrap" in how
    assert o.headline() == pytest.approx(p.mean())
    assert stderr(o, n_boot=500, seed=3) == stderr(o, n_boot=500, seed=3)   # seeded: reproducible


def test_points_average_weights_questions_by_points():
    o = _outcomes([1, 0, 1], average="points", points=[6, 6, 2])
    assert o.headline() == pytest.approx(8 / 14)
    se, _ = stderr(o, n_boot=2000)
    assert 0.1 < se < 0.45


def test_mcnemar_exact_p_values():
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(5, 5) == 1.0
    expected = 2 * sum(comb(12, i) for i in range(3)) / 2 ** 12   # b=10, c=2
    assert mcnemar_exact(10, 2) == pytest.approx(expected) == pytest.approx(0.0386, abs=1e-4)
    assert mcnemar_exact(2, 10) == mcnemar_exact(10, 2)


def test_paired_test_on_identical_and_on_different_models():
    rng = np.random.default_rng(2)
    subjects = np.repeat(np.arange(3), [100, 150, 50])
    a = (rng.random(300) < 0.6).astype(float)
    same = paired_test(_outcomes(a, subjects, "macro"), _outcomes(a, subjects, "macro"), n_boot=500)
    assert same["diff"] == 0 and same["p_bootstrap"] == 1.0 and same["mcnemar"] == {"a_only": 0, "b_only": 0, "p": 1.0}
    worse = a.copy()
    flip = np.flatnonzero(a == 1)[:45]   # B loses 45 questions A got right
    worse[flip] = 0
    test = paired_test(_outcomes(a, subjects, "micro"), _outcomes(worse, subjects, "micro"), n_boot=1000)
    assert test["diff"] == pytest.approx(45 / 300)
    assert test["ci95"][0] > 0 and test["p_bootstrap"] < 0.01 and test["mcnemar"]["a_only"] == 45
    assert test["mcnemar"]["p"] < 1e-10
    # small noisy difference: not significant
    noisy = a.copy()
    noisy[np.flatnonzero(a == 1)[:3]] = 0
    noisy[np.flatnonzero(a == 0)[:2]] = 1
    test = paired_test(_outcomes(a, subjects), _outcomes(noisy, subjects), n_boot=1000)
    assert test["p_bootstrap"] > 0.3 and test["mcnemar"]["p"] == pytest.approx(1.0)


def test_paired_test_uses_the_common_questions_and_skips_mcnemar_for_partial_credit():
    a = _outcomes([1, 0, 1, 1])
    b = Outcomes(["q1", "q2", "q3", "x"], np.zeros(4, dtype=np.int64), np.array([1.0, 1, 0, 1]), np.ones(4), "micro")
    test = paired_test(a, b, n_boot=200)
    assert test["n"] == 3 and test["diff"] == pytest.approx((0 + 1 + 1) / 3 - (1 + 1 + 0) / 3)
    partial = Outcomes(["q0", "q1"], np.zeros(2, dtype=np.int64), np.array([3.0, 6]), np.array([6.0, 6]), "points")
    assert "mcnemar" not in paired_test(partial, partial, n_boot=100)


def test_paired_t_interval_over_seeds():
    from chatflow_plugin.evaluation.uncertainty import paired_t_interval, t95

    d = paired_t_interval([-0.05, -0.04, -0.06])
    assert d["n"] == 3 and abs(d["mean"] + 0.05) < 1e-12 and abs(d["sd"] - 0.01) < 1e-12
    half = 4.303 * 0.01 / 3 ** 0.5
    assert abs(d["low"] - (-0.05 - half)) < 1e-12 and abs(d["high"] - (-0.05 + half)) < 1e-12
    assert d["excludes_zero"]
    assert not paired_t_interval([-0.05, 0.04, -0.01])["excludes_zero"]
    assert paired_t_interval([0.3])["low"] is None
    assert t95(11) == t95(10) and t95(500) == 1.96
