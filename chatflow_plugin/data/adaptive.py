"""Adaptive mixing: group weights that follow the per-group held-out losses, applied as recorded revisions.

A mixture file may carry a policy (its top-level ``adaptive`` object, below). Every ``every_samples``
training samples the trainer measures each group's held-out loss (the fixed windows of
:mod:`.heldout`) and the policy turns the losses into one factor per group; the run's mixture from then on
is the designed one (the last mixture given) with every group's weights multiplied by its factor
(:meth:`~.mixture.MixtureSpec.with_group_factors`: the schedule keeps its shape, knots and ramps), applied as
a revision of the run's mixture (:mod:`.revisions`) at that sample. Every revision is recorded with the
losses it came from, so a resumed run replays the same mixture and the history re-runs as a fixed schedule.

The update follows DoReMi (Xie et al., 2023, arXiv 2305.10429, Algorithm 1): a multiplicative
(exponentiated-gradient) step on the group weights driven by a per-group signal, with smoothing. The signal
is one of

- ``excess_loss``: max(L_k - reference_k, 0), DoReMi's excess loss over a reference model's loss (the
  ``reference`` losses, e.g. a run on the designed mixture, or target losses);
- ``loss``: L_k itself, the reward of Online Data Mixing (Albalak et al., 2023, arXiv 2312.02406), which
  samples more from the groups whose loss is highest;
- ``improvement``: max(L_k(previous) - L_k, 0) / L_k(previous), the relative learning progress since the last
  evaluation (Graves et al., 2017, "Automated Curriculum Learning", arXiv 1704.03003), which favours the groups
  that are still improving fastest.

Then, with s the smoothed signal (s_k = smoothing * s_k(previous) + (1 - smoothing) * signal_k, DoReMi's and
ODM's moving average), z_k = s_k / mean(s) - 1 (unit-free, so one ``rate`` suits every signal), and
log f_k += rate * z_k. The factors are normalised so that sum_k p_k(t) f_k = 1 (p: the designed mixture at
that sample), then bounded to [``min_factor``, ``max_factor``] (DoReMi mixes in the uniform distribution for
the same purpose: no group is starved or flooded). A group without a held-out loss keeps its factor.

Losses are rounded to 1e-5 nats before they enter the policy: the decision is a pure function of the recorded
numbers, and float noise far below the rounding (e.g. another thread count after a resume) cannot change it.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

SIGNALS = ("excess_loss", "loss", "improvement")
LOSS_DECIMALS = 5


@dataclass(frozen=True)
class AdaptivePolicy:
    """The mixture file's ``adaptive`` object (every key documented in ``data/README.md``)."""

    signal: str
    every_samples: int
    rate: float = 1.0
    smoothing: float = 0.5
    min_factor: float = 0.25
    max_factor: float = 4.0
    reference: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.reference:
            data.pop("reference")
        return data

    def due(self, samples_before: int, samples_after: int) -> bool:
        """Whether an update falls in the step that took the run from ``samples_before`` to ``samples_after``."""
        return samples_after // self.every_samples > samples_before // self.every_samples

    def observe(self, state: Mapping[str, Any] | None, losses: Mapping[str, float | None]) -> dict[str, Any]:
        """The state with ``losses`` remembered as the last evaluation's and no update (the run's start: the
        ``improvement`` signal compares the first update's losses with these)."""
        state = dict(state or {})
        state["losses"] = {g: v for g, v in ((g, _rounded(l)) for g, l in losses.items()) if v is not None}
        return state

    def update(self, state: Mapping[str, Any] | None, losses: Mapping[str, float | None],
               probabilities: Mapping[str, float]) -> tuple[dict[str, Any], dict[str, float]]:
        """The new state and the new factor of every group in ``probabilities`` (the designed mixture now).

        ``state`` is the previous update's (None: the first); ``losses`` the held-out losses just measured.
        The state holds the rounded losses, the smoothed signal and the factors: store it, and give it back.
        """
        state = dict(state or {})
        groups = list(probabilities)
        now = {g: _rounded(losses.get(g)) for g in groups}
        before = state.get("losses") or {}
        smoothed = dict(state.get("smoothed") or {})
        factors = {g: float((state.get("factors") or {}).get(g, 1.0)) for g in groups}
        raw = {g: self._signal(g, now[g], before.get(g)) for g in groups}
        for g, value in raw.items():
            if value is not None:
                smoothed[g] = value if g not in smoothed else self.smoothing * smoothed[g] + (1 - self.smoothing) * value
        scored = [g for g in groups if raw[g] is not None]
        mean = sum(smoothed[g] for g in scored) / len(scored) if scored else 0.0
        if mean > 0:
            factors = {g: f * math.exp(self.rate * (smoothed[g] / mean - 1)) if g in scored else f
                       for g, f in factors.items()}
        norm = sum(probabilities[g] * factors[g] for g in groups)
        if norm > 0:
            factors = {g: min(max(f / norm, self.min_factor), self.max_factor) for g, f in factors.items()}
        new_state = {"losses": {g: v for g, v in now.items() if v is not None}, "smoothed": smoothed,
                     "factors": factors, "signal": {g: v for g, v in raw.items() if v is not None}}
        return new_state, factors

    def _signal(self, group: str, loss: float | None, previous: float | None) -> float | None:
        if loss is None:
            return None
        if self.signal == "loss":
            return loss
        if self.signal == "excess_loss":
            reference = self.reference.get(group)
            return None if reference is None else max(loss - reference, 0.0)
        if previous is None or previous <= 0:
            return None
        return max(previous - loss, 0.0) / previous


def _rounded(loss: float | None) -> float | None:
    if loss is None or not math.isfinite(loss):
        return None
    return round(float(loss), LOSS_DECIMALS)


def _number(value: Any, where: str, low: float, high: float = math.inf, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: expected a finite number, got {value!r}")
    if value < low or (low_open and value == low) or value > high:
        bound = f"{'>' if low_open else '>='} {low:g}" + (f" and <= {high:g}" if math.isfinite(high) else "")
        raise ValueError(f"{where}: must be {bound}, got {value}")
    return float(value)


def parse_policy(data: Any, where: str, groups: Sequence[str]) -> AdaptivePolicy:
    """The ``adaptive`` object of a mixture file; ``ValueError`` names the key."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(data).__name__}")
    allowed = {"signal", "every_samples", "rate", "smoothing", "min_factor", "max_factor", "reference", "comment",
               "description"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed - {'comment', 'description'})}")
    signal = data.get("signal")
    if signal not in SIGNALS:
        raise ValueError(f"{where}.signal: expected one of {SIGNALS}, got {signal!r}")
    every = data.get("every_samples")
    if isinstance(every, bool) or not isinstance(every, int) or every <= 0:
        raise ValueError(f"{where}.every_samples: expected a positive integer, got {every!r}")
    policy = AdaptivePolicy(
        signal=signal, every_samples=every,
        rate=_number(data.get("rate", 1.0), f"{where}.rate", 0.0, low_open=True),
        smoothing=_number(data.get("smoothing", 0.5), f"{where}.smoothing", 0.0, 0.999),
        min_factor=_number(data.get("min_factor", 0.25), f"{where}.min_factor", 0.0, 1.0, low_open=True),
        max_factor=_number(data.get("max_factor", 4.0), f"{where}.max_factor", 1.0),
        reference=_reference(data.get("reference"), f"{where}.reference", groups))
    if policy.signal == "excess_loss" and not policy.reference:
        raise ValueError(f"{where}.reference: the excess_loss signal needs a reference loss per group "
                         f"(e.g. {{\"{groups[0]}\": 2.5, ...}}: a reference model's held-out losses)")
    return policy


def _reference(data: Any, where: str, groups: Sequence[str]) -> dict[str, float]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object of group -> loss, got {type(data).__name__}")
    unknown = sorted(set(data) - set(groups))
    if unknown:
        raise ValueError(f"{where}: unknown group(s) {unknown}; groups: {list(groups)}")
    return {g: _number(v, f"{where}.{g}", 0.0) for g, v in data.items()}
