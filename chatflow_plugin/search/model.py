"""The fitted model: from a schedule's derived features to each group's validation loss, measured honestly.

Features come from the schedule itself (through the :class:`~chatflow_plugin.data.schedule.Schedule`
interface, so every shape, and the reference and static mixtures, are points of one model), over a run of N
samples:

- ``exposure_k = E_k(N) / N``: group k's cumulative exposure, its share of the run's samples;
- ``late_k = (E_k(N) - E_k(N/2)) / (N/2)``: its share of the second half (the order: what the model saw last);
- ``log_k = log(exposure_k + 0.01)``: diminishing returns of more data of one group (Data Mixing Laws' curvature).

Candidates, simplest first: ridge regression (standardised features, unpenalised intercept) on ``exposure``,
``exposure+late`` and ``exposure+late+log``, each at penalties 1e-3 ... 10. Every candidate is scored by
leave-one-out cross-validation over the proxy runs (each run predicted by a model fitted without it, its
standardisation included); the one with the lowest mean over groups of LOO squared error / variance of the
group's losses is kept (ties: the simpler). The model is one per group, all of one candidate, refitted on every run.
A skill at or below 0 (1 - MSE / variance of the measured values) means the model predicts no better than the
proxies' mean: its choice is then not supported by it, and the report says so.

The reported quality is *nested* leave-one-out: each run is predicted by a model whose candidate was chosen, by
the same leave-one-out, and which was fitted, on the other runs only. So choosing among candidates does not flatter
it (the candidate table's own LOO figures are slightly optimistic for the kept one). Per group and for the
objective: Spearman's rank correlation and the root-mean-square error. The model has seen only the exposures the
proxies covered: :meth:`FittedModel.outside` measures how far a schedule lies beyond them (the optimiser does not
go there).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..data.schedule import Schedule
from ..errors import ChatflowError

FEATURE_SETS = ("exposure", "exposure+late", "exposure+late+log")
PENALTIES = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
LOG_FLOOR = 0.01
MIN_RUNS = 5


def schedule_features(schedule: Schedule, run_samples: float) -> dict[str, np.ndarray]:
    """Per group: exposure, late exposure and log exposure of a run of ``run_samples`` samples."""
    n = float(run_samples)
    counts = schedule.expected_counts(np.array([n / 2, n]))
    exposure = counts[1] / n
    late = (counts[1] - counts[0]) / (n / 2)
    return {"exposure": exposure, "late": late, "log": np.log(exposure + LOG_FLOOR)}


def design_matrix(rows: list[dict[str, np.ndarray]], feature_set: str) -> np.ndarray:
    parts = {"exposure": ("exposure",), "exposure+late": ("exposure", "late"),
             "exposure+late+log": ("exposure", "late", "log")}[feature_set]
    return np.array([np.concatenate([r[p] for p in parts]) for r in rows], dtype=np.float64)


@dataclass
class Ridge:
    """y ~ b + (x - mean) / scale . w, w penalised by ``penalty`` * |w|^2 (columns with no spread dropped); ``y``
    one column per group, all fitted at once."""

    penalty: float
    mean: np.ndarray = field(default=None)
    scale: np.ndarray = field(default=None)
    weights: np.ndarray = field(default=None)      # (features, groups)
    intercept: np.ndarray = field(default=None)    # (groups,)

    def fit(self, x: np.ndarray, y: np.ndarray) -> "Ridge":
        self.mean = x.mean(axis=0)
        spread = x.std(axis=0)
        self.scale = np.where(spread > 1e-12, spread, np.inf)        # a constant column contributes nothing
        z = (x - self.mean) / self.scale
        self.intercept = y.mean(axis=0)
        gram = z.T @ z + self.penalty * len(y) * np.eye(z.shape[1])
        self.weights = np.linalg.solve(gram, z.T @ (y - self.intercept))
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.intercept + ((x - self.mean) / self.scale) @ self.weights

    def to_json(self, column: int) -> dict:
        return {"penalty": self.penalty, "mean": self.mean.tolist(),
                "scale": [None if not math.isfinite(s) else s for s in self.scale.tolist()],
                "weights": self.weights[:, column].tolist(), "intercept": float(self.intercept[column])}


def loo_predictions(x: np.ndarray, y: np.ndarray, penalty: float) -> np.ndarray:
    """Each row's prediction (every column of ``y``) by a :class:`Ridge` fitted on every other row: all the
    folds at once (batched solves; the same fits as one :class:`Ridge` per fold)."""
    n, d = x.shape
    others = np.array([np.delete(np.arange(n), i) for i in range(n)]).reshape(n, n - 1)
    xs, ys = x[others], y[others]                                    # (n, n-1, d), (n, n-1, groups)
    mean = xs.mean(axis=1, keepdims=True)
    spread = xs.std(axis=1, keepdims=True)
    scale = np.where(spread > 1e-12, spread, np.inf)
    z = (xs - mean) / scale
    intercept = ys.mean(axis=1, keepdims=True)
    zt = np.swapaxes(z, 1, 2)
    weights = np.linalg.solve(zt @ z + penalty * (n - 1) * np.eye(d), zt @ (ys - intercept))
    return (intercept + ((x[:, None, :] - mean) / scale) @ weights)[:, 0, :]


def _relative_error(loo: np.ndarray, y: np.ndarray) -> float:
    """Mean over groups of the LOO squared error over the variance of the group's losses."""
    return float(np.mean(((loo - y) ** 2).mean(axis=0) / np.maximum(y.var(axis=0), 1e-12)))


def _select(designs: dict[str, np.ndarray], y: np.ndarray) -> tuple[tuple[str, float], dict]:
    """The candidate (feature set, penalty) of lowest LOO relative error on ``y`` (ties: the simpler), and each
    candidate's LOO predictions."""
    best, loos = None, {}
    for feature_set in FEATURE_SETS:
        for penalty in PENALTIES:
            loo = loo_predictions(designs[feature_set], y, penalty)
            loos[(feature_set, penalty)] = loo
            score = _relative_error(loo, y)
            if best is None or score < best[0] - 1e-12:
                best = (score, (feature_set, penalty))
    return best[1], loos


def nested_loo(designs: dict[str, np.ndarray], y: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
    """Each row predicted by the candidate :func:`_select` picks on the other rows, fitted on them; and how often
    each candidate was picked."""
    out, picked = np.empty(y.shape), {}
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        (feature_set, penalty), _ = _select({k: v[keep] for k, v in designs.items()}, y[keep])
        name = f"{feature_set}, {penalty:g}"
        picked[name] = picked.get(name, 0) + 1
        x = designs[feature_set]
        out[i] = Ridge(penalty).fit(x[keep], y[keep]).predict(x[i:i + 1])[0]
    return out, picked


def ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties given their mean rank."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    out = np.empty(len(values))
    sorted_values = values[order]
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and sorted_values[j + 1] == sorted_values[i]:
            j += 1
        out[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(a, b) -> float:
    """Spearman's rank correlation (NaN when either side has no spread)."""
    ra, rb = ranks(a), ranks(b)
    if len(ra) < 2 or ra.std() == 0 or rb.std() == 0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])


def rmse(a, b) -> float:
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


@dataclass
class FittedModel:
    """One ridge model per group (all of the chosen candidate, fitted at once), with its cross-validated quality."""

    groups: list[str]
    feature_set: str
    penalty: float
    ridge: Ridge
    candidates: list[dict]       # every candidate's LOO score
    quality: dict                # nested LOO quality, per group and for the objective
    loo: np.ndarray              # (runs, groups) nested LOO predictions
    low: np.ndarray = None       # the proxies' smallest and largest exposure and late exposure per group: the
    high: np.ndarray = None      # region the model has seen (:meth:`outside`)

    def outside(self, rows: list[dict[str, np.ndarray]]) -> np.ndarray:
        """How far each row's exposures lie outside the range the proxies covered (0: inside), summed over groups."""
        x = design_matrix(rows, "exposure+late")
        return (np.clip(self.low - x, 0, None) + np.clip(x - self.high, 0, None)).sum(axis=1)

    def predict(self, rows: list[dict[str, np.ndarray]]) -> np.ndarray:
        """(len(rows), groups) predicted validation losses."""
        return self.ridge.predict(design_matrix(rows, self.feature_set))

    def to_json(self) -> dict:
        return {"feature_set": self.feature_set, "penalty": self.penalty, "groups": self.groups,
                "models": {g: self.ridge.to_json(k) for k, g in enumerate(self.groups)},
                "candidates": self.candidates, "quality": self.quality}


def _scores(predicted: np.ndarray, measured: np.ndarray) -> dict:
    """Spearman, RMSE, the spread (sd) of the measured values and the skill over predicting their mean
    (1 - MSE / variance: 1 perfect, <= 0 no better than the mean)."""
    error, spread = rmse(predicted, measured), float(np.std(measured))
    return {"spearman": spearman(predicted, measured), "rmse": error, "spread": spread,
            "skill": 1.0 - error ** 2 / spread ** 2 if spread > 0 else math.nan}


def _quality(predicted: np.ndarray, losses: np.ndarray, groups: list[str],
             objective: Callable[[np.ndarray], float]) -> dict:
    measured_objective = np.array([objective(r) for r in losses])
    predicted_objective = np.array([objective(r) for r in predicted])
    return {"objective": _scores(predicted_objective, measured_objective),
            "groups": {g: _scores(predicted[:, k], losses[:, k]) for k, g in enumerate(groups)}}


def fit_model(rows: list[dict[str, np.ndarray]], losses: np.ndarray, groups: list[str],
              objective: Callable[[np.ndarray], float]) -> FittedModel:
    """Choose and fit the model (see the module docstring). ``losses``: (runs, groups) measured validation losses;
    ``objective``: a row of group losses -> the objective, for the objective's cross-validated quality."""
    losses = np.asarray(losses, dtype=np.float64)
    if len(rows) < MIN_RUNS:
        raise ChatflowError(f"the model needs at least {MIN_RUNS} finished proxy runs, got {len(rows)}")
    if not np.isfinite(losses).all():
        bad = sorted({groups[j] for j in np.argwhere(~np.isfinite(losses))[:, 1]})
        raise ChatflowError(f"proxy runs have no finite validation loss for group(s) {bad}: are they in the "
                            f"held-out set?")
    designs = {feature_set: design_matrix(rows, feature_set) for feature_set in FEATURE_SETS}
    (feature_set, penalty), loos = _select(designs, losses)
    candidates = []
    for (fs, p), loo in loos.items():
        q = _quality(loo, losses, groups, objective)["objective"]
        candidates.append({"feature_set": fs, "penalty": p, "relative_error": _relative_error(loo, losses),
                           "objective_spearman": q["spearman"], "objective_rmse": q["rmse"]})
    nested, picked = nested_loo(designs, losses)
    quality = {"runs": len(rows), "method": "nested leave-one-out over the proxy runs (each run predicted by a "
                                            "model chosen among the candidates and fitted without it)",
               **_quality(nested, losses, groups, objective),
               "kept_candidate_loo": _quality(loos[(feature_set, penalty)], losses, groups, objective)["objective"],
               "picked_without_each_run": dict(sorted(picked.items(), key=lambda kv: -kv[1]))}
    seen = designs["exposure+late"]
    return FittedModel(list(groups), feature_set, penalty, Ridge(penalty).fit(designs[feature_set], losses),
                       candidates, quality, nested, seen.min(axis=0), seen.max(axis=0))
