"""The search space: which schedule parameters vary, within which bounds, and its space-filling design.

A space file (JSON; ``comment``/``description`` keys are ignored) names a schedule shape of
:data:`chatflow_plugin.data.schedule.SHAPES` and, for every parameter, either a number (fixed) or ``[low,
high]`` (searched). Times are fractions of the run (0 < T_grow; knots in [0, 1]), so one space serves the
proxy runs and the full run alike::

    {"shape": "linear_grow_hold",
     "T_grow": [0.1, 1.0],
     "default": {"alpha": [0, 1], "beta": [0, 1]},
     "groups": {"code": {"alpha": 0.05, "beta": 0.05}}}

    {"shape": "piecewise", "interpolation": "linear",
     "knots": [0, [0.2, 0.5], 1.0],
     "default": {"weights": [0, 1]},
     "groups": {"zh_inst": {"weights": [0, [0, 1], [0, 1]]}}}

``groups`` maps a group of the mixture to its parameters; a group it leaves out, or a key a group leaves out,
takes ``default`` (default: alpha and beta in [0, 1], or every weight in [0, 1]). In ``default`` a piecewise
``weights`` entry may be one value or range for every knot. Knot ranges must not overlap (the knots stay in
order); the first knot is 0. Without a space file, :func:`default_space` is the first example.

Parameters are named ``T_grow``, ``alpha.<group>``, ``beta.<group>``, ``knot.<i>`` and ``weight.<group>.<i>``.
The design is a scrambled Halton sequence (seeded digit permutations and a seeded shift): space-filling in every
projection and extensible, so that a search asked for more proxy runs keeps the ones it has.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.mixture import MixtureSpec, check_keys
from ..data.schedule import SHAPES, LinearGrowHold, Piecewise, Schedule
from ..errors import ChatflowError
from ..files import read_json

SHAPE_NAMES = (LinearGrowHold.shape, Piecewise.shape)


@dataclass(frozen=True)
class Range:
    """A searched parameter: uniform in [low, high] over the unit cube's coordinate."""

    low: float
    high: float

    def value(self, u: float) -> float:
        return self.low + u * (self.high - self.low)

    def to_json(self) -> list[float]:
        return [self.low, self.high]


@dataclass(frozen=True)
class SearchSpace:
    """Parameters (fixed numbers or :class:`Range`) of one schedule shape over a mixture's groups."""

    shape: str
    groups: tuple[str, ...]
    top: dict[str, Any]                       # "T_grow": bound, or "knots": [bound, ...] and "interpolation"
    per_group: dict[str, dict[str, Any]]      # group -> {"alpha": bound, "beta": bound} or {"weights": [bound]}
    names: tuple[str, ...] = field(default=(), compare=False)   # every parameter, in order
    bounds: tuple[Any, ...] = field(default=(), compare=False)

    def __post_init__(self):
        names, bounds = [], []
        if self.shape == LinearGrowHold.shape:
            names.append("T_grow"), bounds.append(self.top["T_grow"])
            for g in self.groups:
                for key in ("alpha", "beta"):
                    names.append(f"{key}.{g}"), bounds.append(self.per_group[g][key])
        else:
            for i, knot in enumerate(self.top["knots"]):
                names.append(f"knot.{i}"), bounds.append(knot)
            for g in self.groups:
                for i, weight in enumerate(self.per_group[g]["weights"]):
                    names.append(f"weight.{g}.{i}"), bounds.append(weight)
        object.__setattr__(self, "names", tuple(names))
        object.__setattr__(self, "bounds", tuple(bounds))

    @property
    def free(self) -> list[str]:
        """The searched parameters: the design's dimensions, in order."""
        return [n for n, b in zip(self.names, self.bounds) if isinstance(b, Range)]

    @property
    def dimensions(self) -> int:
        return len(self.free)

    def values(self, u: np.ndarray) -> dict[str, float]:
        """Every parameter's value at the unit-cube point ``u`` (one coordinate per free parameter)."""
        u = np.asarray(u, dtype=np.float64)
        if u.shape != (self.dimensions,):
            raise ValueError(f"expected a point of {self.dimensions} coordinates, got shape {u.shape}")
        out, i = {}, 0
        for name, bound in zip(self.names, self.bounds):
            if isinstance(bound, Range):
                out[name] = bound.value(float(np.clip(u[i], 0.0, 1.0)))
                i += 1
            else:
                out[name] = float(bound)
        return out

    def design(self, n: int, seed: int) -> np.ndarray:
        """The first ``n`` points of the seeded scrambled Halton sequence in the unit cube, shape (n, d); the first
        ``m`` points of a longer design are the ``m``-point design."""
        return halton(n, self.dimensions, seed)

    def schedule_keys(self, values: dict[str, float], run_samples: float, sample_size: float = 1.0
                      ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """(top-level keys, one dict of keys per group) of a mixture file whose run is ``run_samples`` samples,
        times written in a unit of ``sample_size`` samples (1: samples; ``seq_length``: tokens)."""
        scale = run_samples * sample_size
        if self.shape == LinearGrowHold.shape:
            top = {"T_grow": values["T_grow"] * scale}
            groups = [{"alpha": values[f"alpha.{g}"], "beta": values[f"beta.{g}"]} for g in self.groups]
        else:
            n = len(self.top["knots"])
            top = {"knots": [values[f"knot.{i}"] * scale for i in range(n)],
                   "interpolation": self.top["interpolation"]}
            groups = [{"weights": [values[f"weight.{g}.{i}"] for i in range(n)]} for g in self.groups]
        return top, groups

    def schedule(self, values: dict[str, float], run_samples: float) -> Schedule:
        """The schedule of ``values`` over a run of ``run_samples`` samples (ValueError: no group drawable)."""
        top, groups = self.schedule_keys(values, run_samples)
        if self.shape == LinearGrowHold.shape:
            return LinearGrowHold([g["alpha"] for g in groups], [g["beta"] for g in groups], top["T_grow"])
        return Piecewise(top["knots"], np.array([g["weights"] for g in groups]).T, top["interpolation"])

    def to_json(self) -> dict:
        def out(bound):
            return [out(b) for b in bound] if isinstance(bound, list) else \
                bound.to_json() if isinstance(bound, Range) else bound
        top = {k: out(v) for k, v in self.top.items()}
        return {"shape": self.shape, **top,
                "groups": {g: {k: out(v) for k, v in self.per_group[g].items()} for g in self.groups}}


# -- the design ------------------------------------------------------------------------------------------

def _primes(n: int) -> list[int]:
    out, k = [], 2
    while len(out) < n:
        if all(k % p for p in out if p * p <= k):
            out.append(k)
        k += 1
    return out


def halton(n: int, d: int, seed: int) -> np.ndarray:
    """``n`` points of a ``d``-dimensional Halton sequence, each dimension's digits permuted (0 kept at 0) and the
    points shifted modulo 1, both drawn from ``seed``: (n, d) in [0, 1)."""
    rng = np.random.default_rng([seed, d, 23])
    out = np.zeros((n, d))
    index = np.arange(1, n + 1)
    for j, base in enumerate(_primes(d)):
        perm = np.concatenate([[0], 1 + rng.permutation(base - 1)])
        shift = rng.random()
        digits = int(math.ceil(math.log(max(n + 1, 2), base))) + 1
        i, value, scale = index.copy(), np.zeros(n), 1.0 / base
        for _ in range(digits):
            value += perm[i % base] * scale
            i //= base
            scale /= base
        out[:, j] = (value + shift) % 1.0
    return out


# -- mixtures --------------------------------------------------------------------------------------------

def at_scale(spec: MixtureSpec, factor: float) -> MixtureSpec:
    """``spec`` with its schedule's times multiplied by ``factor`` and written in samples: the reference mixture,
    written for a run of N samples, for a run of ``factor`` N samples."""
    return spec.in_samples(spec.sample_size / factor)


def mixture_json(reference: MixtureSpec, space: SearchSpace, values: dict[str, float], run_samples: float,
                 name: str, description: str, unit: str = "samples") -> dict:
    """The reference mixture's JSON (sources, data_root, seed, seq_length unchanged) with the schedule of
    ``values`` over a run of ``run_samples`` samples, its times written in ``unit`` (samples or tokens)."""
    data = reference.to_json()
    data.pop("adaptive", None)
    old = SHAPES[reference.schedule_shape]
    for key in list(old.mixture_keys) + ["schedule_shape"]:
        data.pop(key, None)
    sample_size = reference.seq_length if unit == "tokens" else 1
    top, groups = space.schedule_keys(values, run_samples, sample_size)
    if space.shape == LinearGrowHold.shape and unit == "samples":
        top["T_grow"] = max(1, int(round(top["T_grow"])))      # whole samples, as the paper states T_grow
    shape = {} if space.shape == LinearGrowHold.shape else {"schedule_shape": space.shape}
    body = {k: v for k, v in data.items() if k not in ("name", "seq_length", "groups")}
    body["schedule_unit"] = unit
    out = {"name": name, "description": description, "seq_length": data["seq_length"], **shape, **top, **body,
           "groups": []}
    by_name = dict(zip(space.groups, groups))
    for group in data["groups"]:
        keys = {k: v for k, v in group.items() if k not in old.group_keys}
        out["groups"].append({"name": keys.pop("name"), **by_name[group["name"]], **keys})
    return out


# -- parsing ---------------------------------------------------------------------------------------------

def _bound(value: Any, where: str, low: float = 0.0, high: float = math.inf) -> Any:
    def number(x: Any, at: str) -> float:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
            raise ChatflowError(f"{at}: expected a finite number, got {x!r}")
        if not low <= x <= high:
            raise ChatflowError(f"{at}: must lie in [{low:g}, {high:g}], got {x}")
        return float(x)

    if isinstance(value, list):
        if len(value) != 2:
            raise ChatflowError(f"{where}: expected a number (fixed) or [low, high] (searched), got {value!r}")
        lo, hi = number(value[0], f"{where}[0]"), number(value[1], f"{where}[1]")
        if hi < lo:
            raise ChatflowError(f"{where}: low {lo:g} is above high {hi:g}")
        return lo if hi == lo else Range(lo, hi)
    return number(value, where)


def parse_space(data: Any, spec: MixtureSpec, where: str = "search space") -> SearchSpace:
    """A :class:`SearchSpace` over ``spec``'s groups from a space file's JSON (see the module docstring)."""
    shape = data.get("shape", LinearGrowHold.shape) if isinstance(data, dict) else None
    if shape not in SHAPE_NAMES:
        raise ChatflowError(f"{where}.shape: expected one of {list(SHAPE_NAMES)}, got {shape!r}")
    linear = shape == LinearGrowHold.shape
    top_keys = {"shape", "groups", "default"} | ({"T_grow"} if linear else {"knots", "interpolation"})
    check_keys(data, top_keys, where)
    group_keys = {"alpha", "beta"} if linear else {"weights"}
    default = check_keys(data.get("default", {}), group_keys, f"{where}.default")
    groups_raw = check_keys(data.get("groups", {}), set(spec.group_names), f"{where}.groups")
    top: dict[str, Any] = {}
    if linear:
        t_grow = _bound(data.get("T_grow", [0.1, 1.0]), f"{where}.T_grow", 0.0, 1.0)
        if (t_grow.low if isinstance(t_grow, Range) else t_grow) <= 0:
            raise ChatflowError(f"{where}.T_grow: fractions of the run must be > 0 (T_grow = 0 has no growth phase)")
        top["T_grow"] = t_grow
    else:
        raw = data.get("knots")
        if not isinstance(raw, list) or len(raw) < 2:
            raise ChatflowError(f"{where}.knots: expected a list of at least 2 knots (fractions of the run, the "
                                f"first 0), got {raw!r}")
        knots = [_bound(k, f"{where}.knots[{i}]", 0.0, 1.0) for i, k in enumerate(raw)]
        if knots[0] != 0.0:
            raise ChatflowError(f"{where}.knots[0]: the first knot is at 0, got {raw[0]!r}")
        for i in range(1, len(knots)):
            prev = knots[i - 1].high if isinstance(knots[i - 1], Range) else knots[i - 1]
            low = knots[i].low if isinstance(knots[i], Range) else knots[i]
            if low < prev:
                raise ChatflowError(f"{where}.knots[{i}]: knots (and their ranges) must not overlap or decrease")
        interpolation = data.get("interpolation", "linear")
        if interpolation not in ("linear", "cosine"):
            raise ChatflowError(f"{where}.interpolation: expected 'linear' or 'cosine', got {interpolation!r}")
        top = {"knots": knots, "interpolation": interpolation}
    per_group = {}
    for g in spec.group_names:
        given = check_keys(groups_raw.get(g, {}), group_keys, f"{where}.groups.{g}")
        if linear:
            per_group[g] = {key: _bound(given.get(key, default.get(key, [0.0, 1.0])), f"{where}.groups.{g}.{key}")
                            for key in ("alpha", "beta")}
        else:
            n = len(top["knots"])
            weights = given.get("weights")
            if weights is None:
                one = default.get("weights", [0.0, 1.0])
                is_list_of_bounds = isinstance(one, list) and one and isinstance(one[0], list)
                weights = one if is_list_of_bounds else [one] * n
            if not isinstance(weights, list) or len(weights) != n:
                raise ChatflowError(f"{where}.groups.{g}.weights: expected one weight (or range) per knot ({n})")
            per_group[g] = {"weights": [_bound(w, f"{where}.groups.{g}.weights[{i}]") for i, w in enumerate(weights)]}
    space = SearchSpace(shape, tuple(spec.group_names), top, per_group)
    _check_drawable(space, where)
    return space


def _check_drawable(space: SearchSpace, where: str) -> None:
    """Every point of the space must give a schedule with some weight at every time."""
    def high(b):
        return b.high if isinstance(b, Range) else b
    if space.shape == LinearGrowHold.shape:
        for key in ("alpha", "beta"):
            if sum(high(space.per_group[g][key]) for g in space.groups) <= 0:
                raise ChatflowError(f"{where}: every group's {key} is 0: no group could be drawn")
    else:
        for i in range(len(space.top["knots"])):
            if sum(high(space.per_group[g]["weights"][i]) for g in space.groups) <= 0:
                raise ChatflowError(f"{where}: every group's weight at knot {i} is 0: no group could be drawn")


def default_space(spec: MixtureSpec) -> SearchSpace:
    """alpha and beta of every group in [0, 1], T_grow in [0.1, 1.0] of the run."""
    return parse_space({}, spec, where="the default search space")


def load_space(path: str | Path | None, spec: MixtureSpec) -> SearchSpace:
    if not path:
        return default_space(spec)
    return parse_space(read_json(path, "search space"), spec, where=str(path))


def reference_values(space: SearchSpace, spec: MixtureSpec, run_samples: float) -> dict[str, float] | None:
    """The reference mixture as the space's parameters (its times as fractions of ``run_samples``), or None when
    it is of another shape (or another number of knots)."""
    if spec.schedule_shape != space.shape:
        return None
    times = spec.in_samples(spec.sample_size)
    if space.shape == LinearGrowHold.shape:
        out = {"T_grow": times.t_grow / run_samples}
        for g in spec.groups:
            out[f"alpha.{g.name}"], out[f"beta.{g.name}"] = g.schedule_params["alpha"], g.schedule_params["beta"]
        return out
    knots = times.schedule_params["knots"]
    if len(knots) != len(space.top["knots"]):
        return None
    out = {f"knot.{i}": k / run_samples for i, k in enumerate(knots)}
    for g in spec.groups:
        for i, w in enumerate(g.schedule_params["weights"]):
            out[f"weight.{g.name}.{i}"] = w
    return out

