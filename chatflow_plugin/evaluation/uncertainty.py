"""Uncertainty of a benchmark's headline number and paired tests between two models.

Per question the evaluation keeps ``earned`` and ``possible`` (1 and 0/1 for accuracy; exam points
for GAOKAO) and its subject. The headline averages are

* ``micro``: sum(earned) / sum(possible) with possible = 1, the plain mean of 0/1 outcomes;
* ``macro``: the mean over subjects of each subject's accuracy;
* ``points``: sum(earned) / sum(possible) with exam points (GAOKAO's scoring rate).

Standard error: for ``micro`` the sample standard error of the mean, sqrt(s^2 / n) with s^2 the
unbiased variance (what lm-evaluation-harness reports as ``acc_stderr``); otherwise the standard
deviation of the statistic over bootstrap resamples of the questions, drawn with replacement within
each subject (the subject set and sizes are fixed by the benchmark).

Paired comparison of models A and B on the same questions: a paired bootstrap (the same resampled
questions for both) gives the standard error and 95 % percentile interval of A - B and the two-sided
p-value 2 min(P*(d <= 0), P*(d >= 0)); for 0/1 outcomes also McNemar's exact test on the discordant
questions (A right and B wrong: b, the reverse: c; two-sided binomial p with p = 1/2).

Paired differences over seeds (training runs of two designs, one pair per seed): :func:`paired_t_interval`, the
mean difference with its 95 % Student-t interval.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import exp, lgamma, log

import numpy as np


@dataclass
class Outcomes:
    """Per-question results of one model on one benchmark under one protocol (aligned by ``ids``)."""
    ids: list[str]            # question locations
    subjects: np.ndarray      # subject index per question
    earned: np.ndarray
    possible: np.ndarray
    average: str              # "micro" | "macro" | "points"

    def headline(self) -> float:
        return float(headline(self.earned[None, :], self.possible[None, :], self.subjects, self.average)[0])


def headline(earned: np.ndarray, possible: np.ndarray, subjects: np.ndarray, average: str) -> np.ndarray:
    """The headline average of each row of (resamples, questions) arrays."""
    if average == "macro":
        per_subject = [earned[:, subjects == s].sum(1) / possible[:, subjects == s].sum(1) for s in np.unique(subjects)]
        return np.mean(per_subject, axis=0)
    return earned.sum(1) / possible.sum(1)


def _bootstrap(outcomes: list[Outcomes], subjects: np.ndarray, n_boot: int, seed: int, chunk: int = 100) -> np.ndarray:
    """(len(outcomes), n_boot) headline averages over resamples of the questions drawn with replacement
    within each subject, the same resamples for every element of ``outcomes`` (aligned questions)."""
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(subjects == s) for s in np.unique(subjects)]
    values = np.empty((len(outcomes), n_boot))
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        idx = np.empty((m, len(subjects)), dtype=np.int64)
        for members in groups:
            idx[:, members] = members[rng.integers(0, len(members), size=(m, len(members)))]
        for j, o in enumerate(outcomes):
            values[j, start:start + m] = headline(o.earned[idx], o.possible[idx], o.subjects, o.average)
    return values


def stderr(o: Outcomes, n_boot: int = 1000, seed: int = 0) -> tuple[float | None, str]:
    """(standard error of the headline average, how it was computed); None when undefined."""
    n = len(o.ids)
    if n < 2:
        return None, "undefined (fewer than 2 questions)"
    if o.average == "micro":
        return float(np.std(o.earned / o.possible, ddof=1) / np.sqrt(n)), "sample standard error of the mean"
    if n_boot < 2:
        return None, "not computed (bootstrap disabled)"
    values = _bootstrap([o], o.subjects, n_boot, seed)[0]
    return float(np.std(values, ddof=1)), f"bootstrap: {n_boot} resamples of the questions within subjects, seed {seed}"


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b and c discordant pairs."""
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0
    log_half = n * log(0.5)
    tail = sum(exp(lgamma(n + 1) - lgamma(i + 1) - lgamma(n - i + 1) + log_half) for i in range(k + 1))
    return min(1.0, 2 * tail)


def paired_test(a: Outcomes, b: Outcomes, n_boot: int = 1000, seed: int = 0) -> dict:
    """A - B on the questions both were scored on (see the module docstring)."""
    common = sorted(set(a.ids) & set(b.ids))
    pos_a, pos_b = {q: i for i, q in enumerate(a.ids)}, {q: i for i, q in enumerate(b.ids)}
    ia, ib = np.array([pos_a[q] for q in common], dtype=np.int64), np.array([pos_b[q] for q in common], dtype=np.int64)
    if len(common) < 2:
        return {"n": len(common), "diff": None}
    sub = Outcomes(common, a.subjects[ia], a.earned[ia], a.possible[ia], a.average)
    other = Outcomes(common, b.subjects[ib], b.earned[ib], b.possible[ib], b.average)
    out = {"n": len(common), "diff": sub.headline() - other.headline()}
    if n_boot >= 2:
        both = _bootstrap([sub, other], sub.subjects, n_boot, seed)
        deltas = both[0] - both[1]
        out.update(diff_stderr=float(np.std(deltas, ddof=1)),
                   ci95=[float(np.percentile(deltas, 2.5)), float(np.percentile(deltas, 97.5))],
                   p_bootstrap=min(1.0, 2 * min(float(np.mean(deltas <= 0)), float(np.mean(deltas >= 0)))),
                   bootstrap=f"{n_boot} paired resamples of the questions within subjects, seed {seed}")
    right_a, right_b = sub.earned == sub.possible, other.earned == other.possible
    binary = np.all((sub.earned == 0) | right_a) and np.all((other.earned == 0) | right_b)
    if binary:
        nb, nc = int(np.sum(right_a & ~right_b)), int(np.sum(~right_a & right_b))
        out["mcnemar"] = {"a_only": nb, "b_only": nc, "p": mcnemar_exact(nb, nc)}
    return out


# Two-sided 95% quantiles of Student's t by degrees of freedom (n - 1 seeds); beyond the table, the normal's.
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
       12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}


def t95(dof: int) -> float:
    """The two-sided 95 % Student-t quantile for ``dof`` degrees of freedom (the next smaller tabulated one, a
    little wider, between table entries; 1.96 from 120 on)."""
    if dof >= 120:
        return 1.96
    return T95[max(k for k in T95 if k <= dof)] if dof >= 1 else float("nan")


def paired_t_interval(differences) -> dict:
    """Mean of paired per-seed differences, their sample standard deviation and 95 % t interval (``low``,
    ``high``; None with fewer than 2 pairs); ``excludes_zero`` says whether the interval does."""
    d = np.asarray(list(differences), dtype=np.float64)
    n = len(d)
    mean = float(d.mean()) if n else float("nan")
    if n < 2:
        return {"n": n, "mean": mean, "sd": None, "low": None, "high": None, "excludes_zero": False}
    sd = float(d.std(ddof=1))
    half = t95(n - 1) * sd / np.sqrt(n)
    return {"n": n, "mean": mean, "sd": sd, "low": mean - half, "high": mean + half,
            "excludes_zero": bool(mean - half > 0 or mean + half < 0)}
