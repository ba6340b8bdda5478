"""ChatFlow's dynamic schedule (arXiv 2405.10626, Sec. 2.2).

Each group k has a weight gamma_k(t) = alpha_k + (beta_k - alpha_k) * t / T_grow for t <= T_grow and
beta_k afterwards; the sampling probability is p_k(t) = gamma_k(t) / sum_j gamma_j(t).

``t`` is a count of training samples (packed sequences) unless the mixture says tokens, in which
case the caller converts T_grow to samples first (see ``MixtureSpec.t_grow_samples``).

``expected_counts(x)`` is the integral of p_k from 0 to x in closed form: the number of samples of
group k a run has drawn, in expectation, after x samples. The sampler realises it to within one sample.
"""
from __future__ import annotations

import numpy as np


class Schedule:
    def __init__(self, alpha, beta, t_grow: float):
        self.alpha = np.asarray(alpha, dtype=np.float64)
        self.beta = np.asarray(beta, dtype=np.float64)
        if self.alpha.shape != self.beta.shape or self.alpha.ndim != 1:
            raise ValueError("alpha and beta must be 1-d and of equal length")
        if t_grow <= 0:
            raise ValueError("T_grow must be positive")
        self.t_grow = float(t_grow)
        self.slope = self.beta - self.alpha           # b_k: change of gamma_k over the growth phase
        self.a_sum = float(self.alpha.sum())          # A = sum alpha
        self.b_sum = float(self.slope.sum())          # B = sum (beta - alpha)
        if self.a_sum <= 0 or self.a_sum + self.b_sum <= 0:
            raise ValueError("the weights of all groups are zero at t=0 or at t=T_grow")
        self.end_counts = self._grow_integral(1.0)    # E_k(T_grow) / T_grow
        self.final_p = self.beta / self.beta.sum()

    def gamma(self, t) -> np.ndarray:
        """Unnormalised weights, shape (..., K)."""
        s = np.clip(np.asarray(t, dtype=np.float64) / self.t_grow, 0.0, 1.0)[..., None]
        return self.alpha + self.slope * s

    def probabilities(self, t) -> np.ndarray:
        """p_k(t), shape (..., K); rows sum to 1."""
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

    def expected_counts(self, x) -> np.ndarray:
        """Integral of p_k over [0, x] samples, shape (..., K); sums to x."""
        x = np.asarray(x, dtype=np.float64)
        s = np.clip(x / self.t_grow, 0.0, 1.0)
        grow = self._grow_integral(s) * self.t_grow
        after = np.clip(x - self.t_grow, 0.0, None)[..., None] * self.final_p
        return grow + after
