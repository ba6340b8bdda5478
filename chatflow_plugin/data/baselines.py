"""The paper's ablation baselines as mixture files, matched to a dynamic run of a given length.

- static: every group's weight fixed at the dynamic schedule's time-average over the run
  (alpha = beta = E_k(N) / N), so both runs draw the same expected samples per group and differ only
  in order (the paper's "without the dynamic data sampler"); the dynamic schedule may be of any shape
  (the baselines are written in the paper's, with alpha = beta);
- two stages: the same static shares, split into a pre-training stage (every group with a
  non-instruction source) and an instruction stage (groups whose sources are all instructions), each
  as long as its groups' share of the run, so the samples per group match too;
- three phases (a piecewise schedule, the curriculum LLaMA-3 and OLMo-2 describe): a warm-up on the
  pre-training groups only, a main phase, and a final annealing phase in which the instruction groups
  weigh ``anneal_boost`` times their share, joined by short cosine ramps; the main phase's weights are
  solved so that every group again gets the dynamic run's expected samples: only the order differs.

``chatflow baselines --mixture M.json --run_samples N --output_dir D`` writes
``D/{dynamic,static,stage1,stage2}.json`` and ``D/baselines.json`` (shares and stage lengths).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..files import atomic_file
from ..errors import ChatflowError
from .mixture import MixtureSpec, load_mixture, write_mixture
from ..options import option
from ..outputs import OutputKind, output_folder
from .schedule import DEFAULT_SHAPE, SHAPES, Piecewise


def time_average_shares(spec: MixtureSpec, run_samples: float) -> dict[str, float]:
    """Each group's share of the first ``run_samples`` samples under the dynamic schedule."""
    if run_samples <= 0:
        raise ChatflowError(f"the run length must be positive, got {run_samples}")
    averages = spec.schedule().expected_counts(float(run_samples)) / float(run_samples)
    return dict(zip(spec.group_names, averages.tolist()))


def instruction_groups(spec: MixtureSpec) -> list[str]:
    return [g.name for g in spec.groups if all(s.kind == "instruction" for s in g.sources)]


def constant_mixture(spec: MixtureSpec, weights: dict[str, float], name: str) -> dict:
    """``spec``'s JSON with constant group weights, in the paper's shape (alpha = beta; a paper mixture keeps
    its T_grow, another shape's keys make way for T_grow = 1) and without an adaptive policy."""
    data = spec.to_json()
    data.pop("adaptive", None)
    if spec.schedule_shape != DEFAULT_SHAPE:
        shape = SHAPES[spec.schedule_shape]
        rest = {k: v for k, v in data.items() if k not in shape.mixture_keys and k != "schedule_shape"}
        data = {"name": rest.pop("name"), "seq_length": rest.pop("seq_length"), "T_grow": 1.0, **rest}
        data["groups"] = [{k: v for k, v in g.items() if k not in shape.group_keys} for g in data["groups"]]
    data["name"] = name
    for group in data["groups"]:
        weight = float(weights[group["name"]])
        group.update(alpha=weight, beta=weight)
        group.update({k: group.pop(k) for k in ("language", "sources")})      # the paper's key order
    return data


def static_mixture(spec: MixtureSpec, run_samples: float) -> dict:
    return constant_mixture(spec, time_average_shares(spec, run_samples), f"{spec.name}_static")


def two_stage_mixtures(spec: MixtureSpec, run_samples: int) -> tuple[dict, dict, int]:
    """(stage-1 mixture, stage-2 mixture, stage-2 length in samples)."""
    shares = time_average_shares(spec, run_samples)
    inst = set(instruction_groups(spec))
    if not inst:
        raise ChatflowError(f"mixture {spec.name!r} has no group made only of instruction sources")
    if len(inst) == len(shares):
        raise ChatflowError(f"mixture {spec.name!r} has only instruction groups: nothing to pre-train on")
    inst_share = sum(shares[g] for g in inst)
    stage2 = int(round(run_samples * inst_share))
    if not 0 < stage2 < run_samples:
        raise ChatflowError(f"the instruction share {inst_share:.4f} leaves an empty stage over {run_samples} samples")
    first = constant_mixture(spec, {g: (0.0 if g in inst else v) for g, v in shares.items()}, f"{spec.name}_stage1")
    second = constant_mixture(spec, {g: (v if g in inst else 0.0) for g, v in shares.items()}, f"{spec.name}_stage2")
    return first, second, stage2


def three_phase_mixture(spec: MixtureSpec, run_samples: float, warmup: float = 0.3, anneal: float = 0.2,
                        ramp: float = 0.05, anneal_boost: float = 3.0) -> dict:
    """A piecewise mixture in three phases over ``run_samples`` (fractions of the run: ``warmup``, the rest,
    ``anneal``; ``ramp``: each cosine transition) with the dynamic run's expected samples per group."""
    if not (0 < ramp <= warmup and ramp <= anneal and warmup + anneal <= 1 - ramp):
        raise ChatflowError(f"phases {warmup} / {anneal} with ramps of {ramp} do not fit in one run")
    shares = time_average_shares(spec, run_samples)
    inst = set(instruction_groups(spec))
    names = spec.group_names
    n = float(run_samples)
    knots = [0.0, (warmup - ramp) * n, warmup * n, (1 - anneal - ramp) * n, (1 - anneal) * n]
    first = np.array([0.0 if g in inst else shares[g] for g in names])
    last = np.array([shares[g] * (anneal_boost if g in inst else 1.0) for g in names])
    target = np.array([shares[g] for g in names]) * n
    main = target.copy() / n
    for _ in range(200):                   # the main phase's weights, by fixed-point on E_k(N) = target_k
        weights = np.stack([first, first, main, main, last])
        counts = Piecewise(knots, weights, ["linear", "cosine", "linear", "cosine"]).expected_counts(n)
        if np.abs(counts - target).max() < 1e-6:
            break
        main = main * np.where(counts > 0, target / np.maximum(counts, 1e-300), 1.0)
    else:
        raise ChatflowError(f"mixture {spec.name!r}: no main phase gives every group its share with this warm-up and "
                            f"annealing (a group's share is spent before the main phase)")
    data = constant_mixture(spec, shares, f"{spec.name}_three_phase")
    for key in ("T_grow",):
        data.pop(key)
    data = {"name": data.pop("name"), "seq_length": data.pop("seq_length"), "schedule_shape": "piecewise",
            "knots": knots, "interpolation": ["linear", "cosine", "linear", "cosine"], **data}
    for group, w in zip(data["groups"], weights.T):
        del group["alpha"], group["beta"]
        group["weights"] = [float(x) for x in w]
        group.update({k: group.pop(k) for k in ("language", "sources")})
    return data


@dataclass
class BaselineOptions:
    mixture: str = option(help="the dynamic mixture file (JSON)")
    run_samples: int = option(help="length of the dynamic run in samples (steps x global batch)")
    output_dir: str = option(help="folder for dynamic.json, static.json, stage1.json, stage2.json, baselines.json")


def write_baselines(spec: MixtureSpec, run_samples: int, output_dir: str | Path) -> dict:
    out = Path(output_dir)
    first, second, stage2 = two_stage_mixtures(spec, run_samples)
    files = {"dynamic": spec.to_json(), "static": static_mixture(spec, run_samples), "stage1": first, "stage2": second}
    out.mkdir(parents=True, exist_ok=True)      # only once every file is computed: a refusal leaves no folder
    for name, data in files.items():
        write_mixture(data, out / f"{name}.json", tree=out)
    info = {"run_samples": run_samples, "shares": time_average_shares(spec, run_samples),
            "instruction_groups": instruction_groups(spec), "stage1_samples": run_samples - stage2,
            "stage2_samples": stage2}
    with atomic_file(out / "baselines.json") as handle:
        json.dump(info, handle, indent=2)
    return info


# the output folder's kind (chatflow_plugin.outputs): a folder the user made is used only if it holds none of these
BASELINES_KIND = OutputKind("baselines", files=("dynamic.json", "static.json", "stage1.json", "stage2.json",
                                                "baselines.json", ".*.tmp"), folders=())


def run_baselines(options: BaselineOptions) -> dict:
    """Write the static and two-stage baselines of a dynamic mixture, matched to a run of ``run_samples``."""
    spec = load_mixture(options.mixture)
    with output_folder(options.output_dir, BASELINES_KIND):
        info = write_baselines(spec, options.run_samples, options.output_dir)
    print(json.dumps(info, indent=2))
    return info
