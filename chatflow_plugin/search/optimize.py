"""The best schedule of the search space under the objective, on the fitted model.

Two deterministic steps over the unit cube of the space's free parameters:

1. a space-filling scan: ``candidates`` points of a scrambled Halton sequence (its own seed, not the proxies'),
   each scored by the model's predicted group losses;
2. a pattern search from the best three: each coordinate moved up and down by a step (0.1 of its range, halved
   down to 0.005) while that improves the score.

The scan includes the proxies' own design points. A point is *feasible* when every constraint holds on the
predicted losses with a safety margin (relative constraints against the model's prediction for the reference
schedule, so that the model's bias cancels; the margin, e.g. the model's cross-validated error of the constraint's
expression, keeps an optimum that presses against a bound from crossing it by no more than the model's error)
and the model has seen its exposures: every group's exposure and late exposure lie within
the range the proxy runs covered (a ridge model extrapolated to a corner of the space, say a group never drawn,
predicts what no run measured). Feasible points are ranked by the objective; if none is feasible, the point of
least total excess is returned and marked infeasible.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from .model import FittedModel, schedule_features
from .objective import Constraint, Expression
from .space import SearchSpace, halton

STEPS = (0.1, 0.05, 0.02, 0.01, 0.005)
MAX_SWEEPS = 25
STARTS = 3


@dataclass
class Choice:
    """The chosen point: its parameters, predicted group losses, objective and constraint excesses."""

    u: np.ndarray
    values: dict[str, float]
    predicted: dict[str, float]
    objective: float
    excess: list[float]          # predicted value minus bound, per constraint (<= 0: held)
    margins: list[float]         # the safety margin each had to keep (feasible: excess <= -margin)
    feasible: bool
    evaluations: int

    def to_json(self) -> dict:
        return {"parameters": self.values, "predicted_validation_loss": self.predicted,
                "predicted_objective": self.objective, "constraint_excess": self.excess,
                "constraint_margins": self.margins,
                "feasible": self.feasible, "model_evaluations": self.evaluations}


class _Scorer:
    def __init__(self, space: SearchSpace, model: FittedModel, run_samples: float, objective: Expression,
                 constraints: Sequence[Constraint], reference: Mapping[str, float] | None, margins: Sequence[float]):
        self.space, self.model, self.run_samples = space, model, run_samples
        self.objective, self.constraints, self.reference = objective, constraints, reference
        self.margins = np.asarray(margins, dtype=np.float64).reshape(len(constraints))
        self.evaluations = 0

    def __call__(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(scores, objectives, excess (n, constraints), predicted losses (n, groups)); lower scores are better;
        an undrawable point scores +inf."""
        rows, ok = [], []
        for u in points:
            try:
                rows.append(schedule_features(self.space.schedule(self.space.values(u), self.run_samples),
                                              self.run_samples))
                ok.append(True)
            except ValueError:
                ok.append(False)
        self.evaluations += len(points)
        n, groups = len(points), self.model.groups
        predicted = np.full((n, len(groups)), np.nan)
        if rows:
            predicted[np.array(ok)] = self.model.predict(rows)
        losses = [dict(zip(groups, p)) for p in predicted]
        objectives = np.array([self.objective.value(l) if good else np.inf for l, good in zip(losses, ok)])
        excess = np.array([[c.excess(l, self.reference) if good else np.inf for c in self.constraints]
                           for l, good in zip(losses, ok)]).reshape(n, len(self.constraints))
        outside = np.full(n, np.inf)
        if rows:
            outside[np.array(ok)] = self.model.outside(rows)
        total = np.clip(excess + self.margins, 0, None).sum(axis=1)
        scores = np.where(outside > 1e-9, 2e6 + outside, np.where(total > 0, 1e6 + total, objectives))
        return scores, objectives, excess, predicted


def optimize(space: SearchSpace, model: FittedModel, run_samples: float, objective: Expression,
             constraints: Sequence[Constraint], reference: Mapping[str, float] | None, seed: int,
             candidates: int = 4096, design: np.ndarray | None = None,
             margins: Sequence[float] | None = None) -> Choice:
    """The best point of ``space`` (see the module docstring); ``reference``: the model's predicted losses for
    the reference schedule, for relative constraints; ``design``: the proxies' unit-cube points, scanned too;
    ``margins``: each constraint's safety margin (default none)."""
    margins = [0.0] * len(constraints) if margins is None else list(margins)
    score = _Scorer(space, model, run_samples, objective, constraints, reference, margins)
    d = space.dimensions
    if d == 0:
        points = np.zeros((1, 0))
    else:
        points = halton(candidates, d, seed + 7919)
        if design is not None and len(design):
            points = np.concatenate([np.asarray(design, dtype=np.float64).reshape(-1, d), points])
    scores, *_ = score(points)
    order = np.argsort(scores, kind="stable")
    starts = [points[i].copy() for i in order[:STARTS]]
    best_u, best_score = starts[0], float(scores[order[0]])
    for u in starts if d else []:
        current = float(score(u[None, :])[0][0])
        for step in STEPS:
            for _ in range(MAX_SWEEPS):
                improved = False
                for j in range(d):
                    trial = np.stack([u, u])
                    trial[0, j] = min(1.0, u[j] + step)
                    trial[1, j] = max(0.0, u[j] - step)
                    trial_scores = score(trial)[0]
                    k = int(np.argmin(trial_scores))
                    if trial_scores[k] < current - 1e-12:
                        u, current, improved = trial[k], float(trial_scores[k]), True
                if not improved:
                    break
        if current < best_score - 1e-12:
            best_u, best_score = u, current
    final, objectives, excess, predicted = score(best_u[None, :])
    return Choice(u=best_u, values=space.values(best_u), predicted=dict(zip(model.groups, predicted[0].tolist())),
                  objective=float(objectives[0]), excess=excess[0].tolist(), margins=[float(m) for m in margins],
                  feasible=bool(final[0] < 1e6), evaluations=score.evaluations)
