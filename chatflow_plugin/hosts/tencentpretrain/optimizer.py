"""LLaMA-2's optimizer on the host, by default for ``--data_processor dynamic_mixture`` runs: AdamW's betas,
epsilon, weight decay and bias correction, a cosine schedule with a floor counted in optimizer steps, a warm-up in
optimizer steps, and gradient clipping.

The host's ``init_optimizer`` (``tencentpretrain/trainer.py`` at ed79843) fixes AdamW's weight decay at 0.01, its
betas at (0.9, 0.999) and its epsilon at the optimizer's default (1e-6 for the host's AdamW, 1e-8 for DeepSpeed's
CPU Adam), turns AdamW's bias correction off, and builds the learning-rate schedule over ``--total_steps``
micro-batches, while the schedule is stepped once per *optimizer* step: with gradient accumulation (the host's
``--accumulation_steps``, or DeepSpeed's ``gradient_accumulation_steps``) the warm-up lasts A times longer than
asked and the decay stops after 1/A of its course. Its defaults (peak 2e-5, linear decay, 10% warm-up) are
fine-tuning settings.

For ``--data_processor dynamic_mixture`` runs the launcher applies :func:`apply_defaults` to the parsed options
and wraps ``init_optimizer`` for the duration of the run (the host's files are not edited). Every option the
command line (or the ``--config_path`` file) leaves unset takes Meta's LLaMA-2 value
(:data:`chatflow_plugin.hosts.hyperparameters.LLAMA2`, which the paper follows): ``--learning_rate`` 3e-4,
``--scheduler cosine_with_min_lr`` (cosine to 10% of the peak), ``--warmup_steps`` 2000 optimizer steps (a value
below 1 is a fraction of the run; the host's own ``--warmup`` fraction is used instead when given),
``--weight_decay`` 0.1 in the decayed parameter groups, ``--adam_beta2`` 0.95, ``--adam_epsilon`` 1e-5, bias
correction on (``--no_adam_bias_correction`` turns it off) and ``--max_grad_norm`` 1.0, applied by the plugin's
trainer without DeepSpeed; under DeepSpeed the config's ``gradient_clipping`` clips (the shipped configs say 1.0),
and a different ``--max_grad_norm`` is an error. The schedule is built over optimizer steps. A warm-up that does
not end before the run does is said in the log. Other data processors get the host's own function and defaults
unchanged.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
from pathlib import Path
from typing import Iterator

from ...errors import ChatflowError
from ..hyperparameters import LLAMA2, LR_SCHEDULER, warmup_steps, warmup_warning
from .names import DATA_PROCESSOR, GIVEN

SCHEDULER = LR_SCHEDULER              # the plugin's --scheduler choice
MIN_LR_RATIO = LLAMA2.min_lr_ratio    # LLaMA-2: "decay final learning rate down to 10% of the peak"


def add_optimizer_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--warmup_steps", type=float, default=None,
                       help="Linear warm-up in optimizer steps (a value below 1: a fraction of the run; LLaMA-2 and "
                            "the default: 2000). The host's --warmup (a fraction of --total_steps), when given, is "
                            "used instead.")
    group.add_argument("--weight_decay", type=float, default=None,
                       help="AdamW weight decay of the decayed parameter groups (LLaMA-2 and the default: 0.1).")
    group.add_argument("--adam_beta2", type=float, default=None, help="AdamW beta2 (LLaMA-2 and the default: 0.95).")
    group.add_argument("--adam_epsilon", type=float, default=None,
                       help="AdamW epsilon (LLaMA-2 and the default: 1e-5; the host's optimizers default to 1e-6 / "
                            "1e-8).")
    group.add_argument("--adam_bias_correction", action="store_true",
                       help="AdamW with bias correction, as torch's AdamW and LLaMA-2 (the default; the host turns it "
                            "off).")
    group.add_argument("--no_adam_bias_correction", action="store_true",
                       help="AdamW without bias correction, as the host's own optimizer.")
    group.add_argument("--max_grad_norm", type=float, default=None,
                       help="Gradient clipping norm (LLaMA-2 and the default: 1.0; 0: none). Under DeepSpeed the "
                            "config's gradient_clipping clips, and this must agree with it.")


def apply_defaults(args: argparse.Namespace, given: set[str]) -> None:
    """LLaMA-2's settings for every optimizer option the command line leaves out (a dynamic_mixture pretraining
    run); the ``--config_path`` file, applied by the host after this, still overrides them."""
    if "warmup" in given and "warmup_steps" in given:
        raise ChatflowError("give the warm-up once: --warmup_steps (optimizer steps, or a fraction below 1) or the "
                            "host's --warmup (a fraction of the run)")
    if args.adam_bias_correction and args.no_adam_bias_correction:
        raise ChatflowError("give --adam_bias_correction or --no_adam_bias_correction, not both")
    if "learning_rate" not in given:
        args.learning_rate = LLAMA2.learning_rate
    if "scheduler" not in given:
        args.scheduler = SCHEDULER
    if args.warmup_steps is None and "warmup" not in given:
        args.warmup_steps = LLAMA2.warmup_steps
    for name in ("weight_decay", "adam_beta2", "adam_epsilon", "max_grad_norm"):
        if getattr(args, name) is None:
            setattr(args, name, getattr(LLAMA2, name))
    args.adam_bias_correction = not args.no_adam_bias_correction
    for name in ("learning_rate", "weight_decay", "adam_epsilon", "max_grad_norm"):
        value = getattr(args, name)
        if not math.isfinite(value) or value < 0:
            raise ChatflowError(f"--{name} must be a finite number >= 0, got {value}")
    if not 0 <= args.adam_beta2 < 1:
        raise ChatflowError(f"--adam_beta2 must be in [0, 1), got {args.adam_beta2}")
    if args.warmup_steps is not None:
        warmup_steps(args.warmup_steps, 1)          # checks the value


def _deepspeed_config(args) -> dict | None:
    if not (getattr(args, "deepspeed", False) and getattr(args, "deepspeed_config", None)):
        return None
    path = Path(args.deepspeed_config)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ChatflowError(f"--deepspeed_config {path}: unreadable ({exc})") from None


def accumulation(args) -> int:
    """Micro-batches per optimizer step on one rank: the host's --accumulation_steps times DeepSpeed's."""
    steps = max(1, int(getattr(args, "accumulation_steps", 1) or 1))
    config = _deepspeed_config(args)
    if config is not None:
        value = config.get("gradient_accumulation_steps", 1)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ChatflowError(f"--deepspeed_config {args.deepspeed_config}: gradient_accumulation_steps must be a "
                                f"positive integer for the host (got {value!r})")
        steps *= value
    return steps


def gradient_clipping(args) -> tuple[float, str]:
    """(the clipping norm of the run, who applies it): DeepSpeed's config under DeepSpeed (``--max_grad_norm``,
    when given, must agree), else ``--max_grad_norm`` in the plugin's trainer."""
    config = _deepspeed_config(args)
    given = getattr(args, "max_grad_norm", None)
    if config is None:
        return float(given or 0.0), "--max_grad_norm"
    value = float(config.get("gradient_clipping", 0.0) or 0.0)
    if given is not None and float(given) != value and "max_grad_norm" in getattr(args, GIVEN, ()):
        raise ChatflowError(f"--max_grad_norm {given}: under DeepSpeed the config clips (--deepspeed_config "
                            f"{args.deepspeed_config}: gradient_clipping {value}); set it there")
    return value, f"gradient_clipping of {args.deepspeed_config}"


def run_warmup(args, optimizer_steps: int) -> int:
    """The warm-up in optimizer steps: --warmup_steps, else the host's --warmup fraction of the run."""
    if getattr(args, "warmup_steps", None) is not None:
        return warmup_steps(args.warmup_steps, optimizer_steps)
    return int(round(optimizer_steps * args.warmup))


def cosine_with_min_lr(optimizer, warmup_steps: float, total_steps: int, min_ratio: float = MIN_LR_RATIO):
    """Linear warm-up from 0 to the peak over ``warmup_steps``, then cosine decay to ``min_ratio`` of the peak at
    ``total_steps``, held after."""
    from torch.optim.lr_scheduler import LambdaLR

    warmup = max(0, int(warmup_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


def _wrap(original):
    def init_optimizer(args, model_for_training):
        if getattr(args, "data_processor", None) != DATA_PROCESSOR:
            return original(args, model_for_training)
        ours = args.scheduler == SCHEDULER
        saved = (args.total_steps, args.scheduler, args.warmup)
        optimizer_steps = max(1, math.ceil(args.total_steps / accumulation(args)))
        warmup = run_warmup(args, optimizer_steps)
        clipping, clipped_by = gradient_clipping(args)
        args.total_steps = optimizer_steps
        args.warmup = warmup / optimizer_steps     # what the host's own schedulers multiply by total_steps
        if ours:
            args.scheduler = "constant"       # a placeholder the host knows; replaced below
        try:
            optimizer, scheduler, groups = original(args, model_for_training)
        finally:
            args.total_steps, args.scheduler, args.warmup = saved
        if ours:
            scheduler = cosine_with_min_lr(optimizer, warmup, optimizer_steps)
        for group in optimizer.param_groups:
            if args.adam_beta2 is not None and "betas" in group:
                group["betas"] = (group["betas"][0], args.adam_beta2)
            if args.weight_decay is not None and group.get("weight_decay", 0) > 0:
                group["weight_decay"] = args.weight_decay
            if getattr(args, "adam_epsilon", None) is not None and "eps" in group:
                group["eps"] = args.adam_epsilon
            if args.adam_bias_correction is not None:
                for key in ("bias_correction", "correct_bias"):     # DeepSpeedCPUAdam / the host's AdamW
                    if key in group:
                        group[key] = bool(args.adam_bias_correction)
        import torch.distributed as dist

        if not dist.is_initialized() or dist.get_rank() == 0:
            first = optimizer.param_groups[0]
            args.logger.info(f"chatflow: optimizer {type(optimizer).__name__}, betas {first.get('betas')}, "
                             f"eps {first.get('eps')}, weight decay "
                             f"{max(g.get('weight_decay', 0) for g in optimizer.param_groups)}, "
                             f"learning-rate schedule {args.scheduler} over {optimizer_steps} optimizer steps "
                             f"({args.total_steps} micro-batches / {accumulation(args)} accumulated), peak "
                             f"{args.learning_rate:g} after {warmup} warm-up steps, gradient clipping {clipping:g} "
                             f"({clipped_by})")
            warning = warmup_warning(warmup, optimizer_steps)
            if warning:
                args.logger.info(f"chatflow: {warning}")
        return optimizer, scheduler, groups

    init_optimizer.chatflow_wrapped = True
    return init_optimizer


@contextlib.contextmanager
def llama2_optimizer() -> Iterator[None]:
    """While active, the host's trainer builds its optimizer through :func:`_wrap`."""
    import tencentpretrain.trainer as trainer

    original = trainer.init_optimizer
    if getattr(original, "chatflow_wrapped", False):
        yield
        return
    trainer.init_optimizer = _wrap(original)
    try:
        yield
    finally:
        trainer.init_optimizer = original
