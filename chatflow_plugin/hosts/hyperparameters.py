"""The optimizer hyper-parameters of the recipe, one place for both backends (``chatflow train`` and the host's
``pretrain.py`` through the plugin) and for ``scripts/chatflow_full_run.sh``.

The paper (arXiv 2405.10626, Sec. 3.1): "We basically follow Meta's training hyper-parameters". Meta's, for
LLaMA-2 (Touvron et al. 2023, arXiv 2307.09288, Sec. 2.2 and Table 1): AdamW with beta1 0.9, beta2 0.95,
eps 1e-5; a cosine learning-rate schedule with 2,000 warm-up steps, decaying the final learning rate to 10% of
the peak; weight decay 0.1; gradient clipping 1.0; peak learning rate 3e-4 for the 7B model. That is
:data:`LLAMA2`, the default everywhere.

:data:`CAUTIOUS` is a named alternative, not the paper's: the same settings with a peak of 1e-4, for continued
training that should move a converged model less (the reasoning is in docs/full_scale.md).

A warm-up is given in optimizer steps; a value below 1 is a fraction of the run (:func:`warmup_steps`). Short
runs (the demo, tests, ``--smoke``) pass their own warm-up: LLaMA-2's 2,000 steps are longer than such runs, and
a run whose warm-up is not shorter than the run never reaches its peak learning rate, which
:func:`warmup_warning` says.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from ..errors import ChatflowError

LR_SCHEDULER = "cosine_with_min_lr"     # linear warm-up, then cosine decay to min_lr_ratio of the peak (both backends)


@dataclass(frozen=True)
class Hyperparameters:
    """A recipe's optimizer settings."""

    learning_rate: float       # the peak, reached at the end of the warm-up
    warmup_steps: float        # optimizer steps (a value < 1: a fraction of the run)
    min_lr_ratio: float        # the cosine decay ends at this fraction of the peak
    adam_beta1: float
    adam_beta2: float
    adam_epsilon: float
    weight_decay: float        # AdamW's, on every weight but norms and biases
    max_grad_norm: float       # gradient clipping
    lr_scheduler: str = LR_SCHEDULER

    def as_dict(self) -> dict:
        return asdict(self)


LLAMA2 = Hyperparameters(learning_rate=3e-4, warmup_steps=2000, min_lr_ratio=0.1, adam_beta1=0.9, adam_beta2=0.95,
                         adam_epsilon=1e-5, weight_decay=0.1, max_grad_norm=1.0)
CAUTIOUS = replace(LLAMA2, learning_rate=1e-4)
PRESETS = {"llama2": LLAMA2, "cautious": CAUTIOUS}
SOURCES = {"llama2": "Meta's LLaMA-2 settings (Touvron et al. 2023, Sec. 2.2), which the paper follows (Sec. 3.1)",
           "cautious": "ours: LLaMA-2's settings with a peak learning rate of 1e-4 (docs/full_scale.md)"}


def preset(name: str) -> Hyperparameters:
    if name not in PRESETS:
        raise ChatflowError(f"unknown hyper-parameter set {name!r} (choose from {', '.join(PRESETS)})")
    return PRESETS[name]


def warmup_steps(value: float, train_steps: int, flag: str = "--warmup_steps") -> int:
    """The warm-up in optimizer steps: ``value`` itself, or, below 1, that fraction of ``train_steps``."""
    if not math.isfinite(value) or value < 0:
        raise ChatflowError(f"{flag} must be 0 or more (a value below 1 is a fraction of the run), got {value}")
    if value < 1:
        return int(round(value * train_steps))
    if value != int(value):
        raise ChatflowError(f"{flag} {value}: give whole optimizer steps, or a fraction of the run below 1")
    return int(value)


def warmup_warning(warmup: int, train_steps: int) -> str | None:
    """What to say when the warm-up of ``warmup`` optimizer steps does not end before the run's last step."""
    if warmup < train_steps or train_steps <= 0:
        return None
    return (f"warning: the warm-up ({warmup:,} optimizer steps) is not shorter than the run ({train_steps:,} steps): "
            f"the learning rate never reaches its peak and never decays; give a shorter --warmup_steps (a value "
            f"below 1 is a fraction of the run)")
