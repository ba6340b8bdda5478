"""Sampling schedules: how each mixture group's probability changes over training.

The sampler (:mod:`.sampler`) depends only on the :class:`Schedule` interface:

- ``n_groups``: K, the number of groups;
- ``probabilities(t)``: p_k(t), shape (..., K), rows summing to 1;
- ``expected_counts(t, start=0)``: E_k = the integral of p_k over [start, t] in closed form, shape (..., K),
  summing to t - start: the number of samples of group k drawn, in expectation, between sample start and t;
- ``knots``: the times where the schedule changes form, non-decreasing from 0 (a time given twice is a step);
  p_k(t) is monotone between consecutive knots and holds from the last on.

``t`` is a count of training samples (packed sequences), a float, and every method takes arrays of t.
A mixture file gives times in its ``schedule_unit``; ``sample_size`` (1 for samples, ``seq_length`` for
tokens) converts them: time in samples = time in the file / sample_size.

A new shape is one subclass plus one entry in :data:`SHAPES`. The subclass names the mixture-file keys it
reads (``mixture_keys`` at the file's top level, ``group_keys`` in every group, each with a check that turns
the JSON value into the parameter, and ``time=True`` on the keys that are times in ``schedule_unit``, so a
mixture can be rewritten in another unit) and builds itself from them in :meth:`Schedule.from_params`; the mixture
parser (:mod:`.mixture`) asks the registry for both, so a shape never touches the parser or the sampler.
A mixture file picks a shape with ``"schedule_shape"`` (default: :data:`DEFAULT_SHAPE`).

Shapes here: ``linear_grow_hold`` (the paper's) and ``piecewise`` (weights at knots, linear or cosine in
between, steps where a knot time repeats); the paper's shape is the two-knot linear piecewise schedule and
runs the same arithmetic, so its sample order is the same either way.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np


# -- parameters as a mixture file spells them -----------------------------------------------------------

class ParamError(ValueError):
    """A wrong schedule parameter: ``key`` at the mixture's top level (``group`` None) or in group number
    ``group``; the mixture parser adds the file and the group's name to the message."""

    def __init__(self, message: str, key: str | None = None, group: int | None = None):
        super().__init__(message)
        self.key = key
        self.group = group


REQUIRED = object()


@dataclass(frozen=True)
class Param:
    """One mixture-file key a shape reads. ``check`` turns the JSON value into the parameter or raises
    ``ValueError`` saying what it expected; a key with a ``default`` may be left out. ``time``: the value is a
    time (a number, or a list of numbers) in the mixture's ``schedule_unit``, which ``from_params`` divides by
    ``sample_size``; :meth:`..mixture.MixtureSpec.in_samples` rewrites exactly these keys. ``weight``: a group
    key whose value (a number or a list of numbers) is the group's unnormalised weight, so that scaling it by a
    factor scales the group's weight at every time (:meth:`..mixture.MixtureSpec.with_group_factors`)."""

    check: Callable[[Any], Any]
    default: Any = REQUIRED
    time: bool = False
    weight: bool = False


def finite_number(value: Any, minimum: float = 0.0, strict: bool = False) -> float:
    """``value`` as a float: a finite JSON number >= ``minimum`` (> with ``strict``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    if value < minimum or (strict and value == minimum):
        raise ValueError(f"must be {'>' if strict else '>='} {minimum:g}, got {value}")
    return float(value)


def non_negative(value: Any) -> float:
    return finite_number(value)


def positive(value: Any) -> float:
    return finite_number(value, strict=True)


def number_list(value: Any) -> tuple[float, ...]:
    """A non-empty JSON list of finite numbers >= 0."""
    if not isinstance(value, list) or not value:
        raise ValueError(f"expected a non-empty list of numbers, got {value!r}")
    out = []
    for i, item in enumerate(value):
        try:
            out.append(non_negative(item))
        except ValueError as exc:
            raise ValueError(f"[{i}]: {exc}") from None
    return tuple(out)


# -- the interface ---------------------------------------------------------------------------------------

class Schedule(ABC):
    """p_k(t) and its integral for the K groups of a mixture, over training samples t >= 0."""

    shape: ClassVar[str]                                #: the shape's name in a mixture file
    mixture_keys: ClassVar[Mapping[str, Param]] = {}    #: keys read at the mixture file's top level
    group_keys: ClassVar[Mapping[str, Param]] = {}      #: keys read in every group

    @classmethod
    @abstractmethod
    def from_params(cls, mixture: Mapping[str, Any], groups: Sequence[Mapping[str, Any]],
                    sample_size: float = 1.0) -> "Schedule":
        """The schedule from its checked keys (``mixture``: top level; ``groups``: one mapping per group, in
        order); times are divided by ``sample_size``. Raises ``ValueError`` (:class:`ParamError` to name a key)
        when the keys are valid one by one but not together."""

    @property
    @abstractmethod
    def n_groups(self) -> int:
        """K, the number of groups."""

    @property
    @abstractmethod
    def knots(self) -> np.ndarray:
        """Times (samples) where the schedule changes form, non-decreasing, the first 0; p_k is monotone
        between consecutive knots and constant after the last."""

    @abstractmethod
    def probabilities(self, t) -> np.ndarray:
        """p_k(t), shape (..., K); rows sum to 1."""

    @abstractmethod
    def expected_counts(self, t, start=0.0) -> np.ndarray:
        """Integral of p_k over [start, t] samples, shape (..., K); sums to t - start. Exact (closed form, or
        bounded to ~1e-10 of the length of a stretch between knots): the sampler realises it to within a sample."""

    def min_probabilities(self, start: float, end: float) -> np.ndarray:
        """The smallest p_k(t) over [start, end], shape (K,): exact, since p_k is monotone between knots."""
        knots = self.knots
        points = np.concatenate([[start, end], knots[(knots > start) & (knots < end)]])
        # a step is a jump: both sides of a repeated knot count
        return self.probabilities(np.concatenate([points, np.nextafter(points, -np.inf).clip(start)])).min(axis=0)


# -- weights given at knots ------------------------------------------------------------------------------

INTERPOLATIONS = ("linear", "cosine")


def _linear_integral(a, b, a_sum: float, b_sum: float, s) -> np.ndarray:
    """int_0^s p_k(u) du for weights a + b u (u in [0, 1]), p_k = (a_k + b_k u) / (A + B u); ``s`` (..., 1).

    p_k = b/B + (a - b A/B) / (A + B u), whose integral has a log term that cancels badly when B is small
    relative to A, so the series is used there. (The paper's shape runs exactly this arithmetic.)
    """
    ratio = b_sum / a_sum
    if abs(ratio) < 1e-6:
        # (a + b u)/A * (1 - B u/A + ...) integrated, to second order in B u / A
        return (a * s + (b - a * ratio) * s * s / 2 - b * ratio * s ** 3 / 3) / a_sum
    log_term = np.log1p(ratio * s) / b_sum
    return b / b_sum * s + (a - b * a_sum / b_sum) * log_term


def _cosine_share(rho: float, s: np.ndarray) -> np.ndarray:
    """Lambda(s) = int_0^s lam(u) du, lam = rho c / (1 + (rho - 1) c), c(u) = (1 - cos(pi u)) / 2.

    With weights a + b c(u), p_k = q_k + (r_k - q_k) lam(u) (q, r: the normalised weights at both ends, rho:
    the ratio of their sums), so every group's integral is q_k s + (r_k - q_k) Lambda(s). Closed form:
    Lambda = rho (s - J) / (rho - 1), J = (2/pi) arctan(sqrt(rho) tan(pi s / 2)) / sqrt(rho); near rho = 1,
    where s - J cancels, the series in eps = rho - 1 to third order (error ~eps^3 s).
    """
    eps = rho - 1.0
    if abs(eps) < 1e-4:
        c1 = s / 2 - np.sin(np.pi * s) / (2 * np.pi)
        c2 = 3 * s / 8 - np.sin(np.pi * s) / (2 * np.pi) + np.sin(2 * np.pi * s) / (16 * np.pi)
        c3 = (5 * s / 16 - 15 * np.sin(np.pi * s) / (32 * np.pi) + 3 * np.sin(2 * np.pi * s) / (32 * np.pi)
              - np.sin(3 * np.pi * s) / (96 * np.pi))
        return rho * (c1 - eps * c2 + eps * eps * c3)
    root = math.sqrt(rho)
    j = (2 / np.pi) * np.arctan(root * np.tan(np.pi * s / 2)) / root
    return rho * (s - j) / eps


class Piecewise(Schedule):
    """Group weights given at knots t_0 = 0 <= t_1 <= ... <= t_n, interpolated between consecutive knots and
    held after the last; p_k(t) = w_k(t) / sum_j w_j(t).

    Between knots i and i+1 the weights move from ``weights[i]`` to ``weights[i+1]`` linearly or along a half
    cosine (slow at both ends: w = w_i + (w_{i+1} - w_i) (1 - cos(pi u)) / 2), per stretch. A knot time given
    twice is a step (a zero-length ramp): the weights jump there. Every knot's weights must have a positive sum.
    The mixture file gives ``knots`` (times in ``schedule_unit``) and ``interpolation`` (one name, or one per
    stretch) at its top level and ``weights`` (one per knot) in every group.
    """

    shape = "piecewise"

    def __init__(self, knots, weights, interpolation: str | Sequence[str] = "linear"):
        self._knots = np.asarray(knots, dtype=np.float64)
        self.weights = np.array(weights, dtype=np.float64)          # (n_knots, K)
        n = len(self._knots)
        if self._knots.ndim != 1 or n == 0 or self.weights.ndim != 2 or self.weights.shape[0] != n:
            raise ValueError("knots must be 1-d and weights one row of K group weights per knot")
        self.check_knots(self._knots)
        if not np.isfinite(self.weights).all() or (self.weights < 0).any():
            raise ValueError("weights must be finite and non-negative")
        sums = self.weights.sum(axis=1)
        if (sums <= 0).any():
            i = int(np.flatnonzero(sums <= 0)[0])
            raise ParamError(f"every group's weight is 0 at knot {i} (t = {self._knots[i]:g}); no group could be "
                             f"drawn there", key="weights")
        kinds = [interpolation] * (n - 1) if isinstance(interpolation, str) else list(interpolation)
        if len(kinds) != n - 1 or any(k not in INTERPOLATIONS for k in kinds):
            raise ParamError(f"expected one of {INTERPOLATIONS}, or a list of one per stretch between knots "
                             f"({n - 1}), got {interpolation!r}", key="interpolation")
        self.interpolation = tuple(kinds)
        self.length = np.diff(self._knots)                          # (n-1,) stretch lengths
        self.sums = [float(row.sum()) for row in self.weights]      # per knot (scalars: as the paper's shape)
        self.slope_sums = [float((self.weights[i + 1] - self.weights[i]).sum()) for i in range(n - 1)]
        self.final_p = self.weights[-1] / self.weights[-1].sum()
        # E at each knot: the integral over every stretch before it
        at_knots = [np.zeros(self.n_groups)]
        for i in range(n - 1):
            at_knots.append(at_knots[-1] + self._stretch(i, np.array([1.0]))[0] * self.length[i]
                            if self.length[i] > 0 else at_knots[-1])
        self.at_knots = np.stack(at_knots)                          # (n, K)

    @staticmethod
    def check_knots(knots: np.ndarray) -> None:
        if not np.isfinite(knots).all() or knots[0] != 0:
            raise ParamError(f"the first knot must be at 0, got {knots[0]:g}", key="knots")
        if (np.diff(knots) < 0).any():
            raise ParamError("knots must not decrease", key="knots")
        if len(knots) > 2 and (knots[2:] == knots[:-2]).any():
            raise ParamError("a knot time may appear at most twice (twice: a step)", key="knots")

    @classmethod
    def from_params(cls, mixture, groups, sample_size=1.0) -> "Piecewise":
        knots = [k / sample_size for k in mixture["knots"]]
        cls.check_knots(np.asarray(knots))
        for g, group in enumerate(groups):
            if len(group["weights"]) != len(knots):
                raise ParamError(f"expected one weight per knot ({len(knots)}), got {len(group['weights'])}",
                                 key="weights", group=g)
        return cls(knots, np.array([g["weights"] for g in groups], dtype=np.float64).T, mixture["interpolation"])

    @property
    def n_groups(self) -> int:
        return self.weights.shape[1]

    @property
    def knots(self) -> np.ndarray:
        return self._knots

    def _where(self, t) -> tuple[np.ndarray, np.ndarray]:
        """(t as an array, the index of the knot at or before each t: its stretch; n-1 = the hold)."""
        t = np.asarray(t, dtype=np.float64)
        return t, np.clip(np.searchsorted(self._knots, t, side="right") - 1, 0, len(self._knots) - 1)

    def _fraction(self, i: int, t: np.ndarray) -> np.ndarray:
        """Position in stretch i, in [0, 1]."""
        return np.clip((t - self._knots[i]) / self.length[i], 0.0, 1.0)

    def gamma(self, t) -> np.ndarray:
        """Unnormalised weights w_k(t), shape (..., K)."""
        t, where = self._where(t)
        out = np.empty(t.shape + (self.n_groups,))
        out[where == len(self._knots) - 1] = self.weights[-1]
        for i in np.unique(where[where < len(self._knots) - 1]):
            sel = where == i
            u = self._fraction(int(i), t[sel])[..., None]
            if self.interpolation[i] == "cosine":
                u = (1 - np.cos(np.pi * u)) / 2
            out[sel] = self.weights[i] + (self.weights[i + 1] - self.weights[i]) * u
        return out

    def probabilities(self, t) -> np.ndarray:
        g = self.gamma(t)
        return g / g.sum(axis=-1, keepdims=True)

    def _stretch(self, i: int, s: np.ndarray) -> np.ndarray:
        """int_0^s p_k(u) du over stretch i, per unit of its length, for s in [0, 1]; shape (len(s), K)."""
        s = np.asarray(s, dtype=np.float64)[..., None]
        a, b = self.weights[i], self.weights[i + 1] - self.weights[i]
        if self.interpolation[i] == "linear":
            return _linear_integral(a, b, self.sums[i], self.slope_sums[i], s)
        q, r = a / self.sums[i], self.weights[i + 1] / self.sums[i + 1]
        return q * s + (r - q) * _cosine_share(self.sums[i + 1] / self.sums[i], s)

    def _counts_from_zero(self, t) -> np.ndarray:
        t, where = self._where(t)
        last = len(self._knots) - 1
        out = np.empty(t.shape + (self.n_groups,))
        hold = where == last
        out[hold] = self.at_knots[last] + (t[hold] - self._knots[last])[..., None] * self.final_p
        for i in np.unique(where[~hold]):
            sel = where == i
            out[sel] = self.at_knots[i] + self._stretch(int(i), self._fraction(int(i), t[sel])) * self.length[i]
        return out

    def expected_counts(self, t, start=0.0) -> np.ndarray:
        counts = self._counts_from_zero(t)
        if np.any(np.asarray(start) != 0):
            counts = counts - self._counts_from_zero(start)
        return counts


def knot_times(value: Any) -> tuple[float, ...]:
    return number_list(value)


def interpolations(value: Any) -> str | tuple[str, ...]:
    if isinstance(value, str) and value in INTERPOLATIONS:
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) and v in INTERPOLATIONS for v in value):
        return tuple(value)
    raise ValueError(f"expected one of {INTERPOLATIONS} or a list of them (one per stretch), got {value!r}")


Piecewise.mixture_keys = {"knots": Param(knot_times, time=True),
                          "interpolation": Param(interpolations, default="linear")}
Piecewise.group_keys = {"weights": Param(number_list, weight=True)}


# -- the paper's shape -----------------------------------------------------------------------------------

class LinearGrowHold(Piecewise):
    """ChatFlow's dynamic schedule (arXiv 2405.10626, Sec. 2.2): linear growth, then hold.

    Each group k has a weight gamma_k(t) = alpha_k + (beta_k - alpha_k) * t / T_grow for t <= T_grow and
    beta_k afterwards; the sampling probability is p_k(t) = gamma_k(t) / sum_j gamma_j(t). The mixture file
    gives ``T_grow`` at its top level and ``alpha``/``beta`` in every group. It is the piecewise schedule with
    knots (0, T_grow), weights (alpha, beta) and linear interpolation, and runs the same arithmetic.
    """

    shape = "linear_grow_hold"
    mixture_keys = {"T_grow": Param(positive, time=True)}
    group_keys = {"alpha": Param(non_negative, weight=True), "beta": Param(non_negative, weight=True)}

    def __init__(self, alpha, beta, t_grow: float):
        self.alpha = np.asarray(alpha, dtype=np.float64)
        self.beta = np.asarray(beta, dtype=np.float64)
        if self.alpha.shape != self.beta.shape or self.alpha.ndim != 1:
            raise ValueError("alpha and beta must be 1-d and of equal length")
        if (self.alpha < 0).any() or (self.beta < 0).any():
            raise ValueError("alpha and beta must be non-negative")
        if not t_grow > 0:
            raise ValueError("T_grow must be positive")
        if self.alpha.sum() <= 0:
            raise ValueError("all group weights are zero at t = 0 (every alpha is 0)")
        if self.beta.sum() <= 0:
            raise ValueError("all group weights are zero from t = T_grow on (every beta is 0)")
        self.t_grow = float(t_grow)
        super().__init__([0.0, self.t_grow], np.stack([self.alpha, self.beta]), "linear")

    @classmethod
    def from_params(cls, mixture, groups, sample_size=1.0) -> "LinearGrowHold":
        return cls([g["alpha"] for g in groups], [g["beta"] for g in groups], mixture["T_grow"] / sample_size)


#: shape name -> class; a mixture file's ``schedule_shape`` picks one
SHAPES: dict[str, type[Schedule]] = {LinearGrowHold.shape: LinearGrowHold, Piecewise.shape: Piecewise}
DEFAULT_SHAPE = LinearGrowHold.shape
