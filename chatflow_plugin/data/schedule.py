"""Sampling schedules: how each mixture group's probability changes over training.

The sampler (:mod:`.sampler`) depends only on the :class:`Schedule` interface:

- ``n_groups``: K, the number of groups;
- ``probabilities(t)``: p_k(t), shape (..., K), rows summing to 1;
- ``expected_counts(t, start=0)``: E_k = the integral of p_k over [start, t] in closed form, shape (..., K),
  summing to t - start: the number of samples of group k drawn, in expectation, between sample start and t;
- ``knots``: the times where the schedule changes form, ascending from 0; p_k(t) holds from the last on.

``t`` is a count of training samples (packed sequences), a float, and every method takes arrays of t.
A mixture file gives times in its ``schedule_unit``; ``sample_size`` (1 for samples, ``seq_length`` for
tokens) converts them: time in samples = time in the file / sample_size.

A new shape is one subclass plus one entry in :data:`SHAPES`. The subclass names the mixture-file keys it
reads (``mixture_keys`` at the file's top level, ``group_keys`` in every group, each with a check that turns
the JSON value into the parameter, and ``time=True`` on the keys that are times in ``schedule_unit``, so a
mixture can be rewritten in another unit) and builds itself from them in :meth:`Schedule.from_params`; the mixture
parser (:mod:`.mixture`) asks the registry for both, so a shape never touches the parser or the sampler.
A mixture file picks a shape with ``"schedule_shape"`` (default: :data:`DEFAULT_SHAPE`).
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
    ``sample_size``; :meth:`..mixture.MixtureSpec.in_samples` rewrites exactly these keys."""

    check: Callable[[Any], Any]
    default: Any = REQUIRED
    time: bool = False


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
        """Times (samples) where the schedule changes form, ascending, the first 0; constant after the last."""

    @abstractmethod
    def probabilities(self, t) -> np.ndarray:
        """p_k(t), shape (..., K); rows sum to 1."""

    @abstractmethod
    def expected_counts(self, t, start=0.0) -> np.ndarray:
        """Integral of p_k over [start, t] samples, shape (..., K); sums to t - start. Exact (closed form or
        bounded to ~1e-9 samples): the sampler realises it to within a sample."""


# -- the paper's shape -----------------------------------------------------------------------------------

class LinearGrowHold(Schedule):
    """ChatFlow's dynamic schedule (arXiv 2405.10626, Sec. 2.2): linear growth, then hold.

    Each group k has a weight gamma_k(t) = alpha_k + (beta_k - alpha_k) * t / T_grow for t <= T_grow and
    beta_k afterwards; the sampling probability is p_k(t) = gamma_k(t) / sum_j gamma_j(t). The mixture file
    gives ``T_grow`` at its top level and ``alpha``/``beta`` in every group.
    """

    shape = "linear_grow_hold"
    mixture_keys = {"T_grow": Param(positive, time=True)}
    group_keys = {"alpha": Param(non_negative), "beta": Param(non_negative)}

    def __init__(self, alpha, beta, t_grow: float):
        self.alpha = np.asarray(alpha, dtype=np.float64)
        self.beta = np.asarray(beta, dtype=np.float64)
        if self.alpha.shape != self.beta.shape or self.alpha.ndim != 1:
            raise ValueError("alpha and beta must be 1-d and of equal length")
        if (self.alpha < 0).any() or (self.beta < 0).any():
            raise ValueError("alpha and beta must be non-negative")
        if not t_grow > 0:
            raise ValueError("T_grow must be positive")
        self.t_grow = float(t_grow)
        self.slope = self.beta - self.alpha           # b_k: change of gamma_k over the growth phase
        self.a_sum = float(self.alpha.sum())          # A = sum alpha
        self.b_sum = float(self.slope.sum())          # B = sum (beta - alpha)
        if self.a_sum <= 0:
            raise ValueError("all group weights are zero at t = 0 (every alpha is 0)")
        if self.beta.sum() <= 0:
            raise ValueError("all group weights are zero from t = T_grow on (every beta is 0)")
        self.final_p = self.beta / self.beta.sum()

    @classmethod
    def from_params(cls, mixture, groups, sample_size=1.0) -> "LinearGrowHold":
        return cls([g["alpha"] for g in groups], [g["beta"] for g in groups], mixture["T_grow"] / sample_size)

    @property
    def n_groups(self) -> int:
        return len(self.alpha)

    @property
    def knots(self) -> np.ndarray:
        return np.array([0.0, self.t_grow])

    def gamma(self, t) -> np.ndarray:
        """Unnormalised weights, shape (..., K)."""
        s = np.clip(np.asarray(t, dtype=np.float64) / self.t_grow, 0.0, 1.0)[..., None]
        return self.alpha + self.slope * s

    def probabilities(self, t) -> np.ndarray:
        g = self.gamma(t)
        return g / g.sum(axis=-1, keepdims=True)

    def _grow_integral(self, s) -> np.ndarray:
        """int_0^s p_k(u T) du for s in [0, 1] (per unit of T_grow), shape (..., K)."""
        s = np.asarray(s, dtype=np.float64)[..., None]
        a, b, A, B = self.alpha, self.slope, self.a_sum, self.b_sum
        # p_k = (a + b u) / (A + B u) = b/B + (a - b A/B) / (A + B u); its integral has a log term that
        # cancels badly when B is small relative to A, so fall back to the series there.
        ratio = B / A
        if abs(ratio) < 1e-6:
            # (a + b u)/A * (1 - B u/A + ...) integrated, to second order in B u / A
            return (a * s + (b - a * ratio) * s * s / 2 - b * ratio * s ** 3 / 3) / A
        log_term = np.log1p(ratio * s) / B
        return b / B * s + (a - b * A / B) * log_term

    def _counts_from_zero(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        s = np.clip(x / self.t_grow, 0.0, 1.0)
        grow = self._grow_integral(s) * self.t_grow
        after = np.clip(x - self.t_grow, 0.0, None)[..., None] * self.final_p
        return grow + after

    def expected_counts(self, t, start=0.0) -> np.ndarray:
        counts = self._counts_from_zero(t)
        if np.any(np.asarray(start) != 0):
            counts = counts - self._counts_from_zero(start)
        return counts


#: shape name -> class; a mixture file's ``schedule_shape`` picks one
SHAPES: dict[str, type[Schedule]] = {LinearGrowHold.shape: LinearGrowHold}
DEFAULT_SHAPE = LinearGrowHold.shape
