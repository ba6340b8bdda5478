"""LLaMA-2's optimizer on the host: AdamW's beta2, weight decay and bias correction, a cosine schedule with a
floor, and a learning-rate schedule counted in optimizer steps.

The host's ``init_optimizer`` (``tencentpretrain/trainer.py`` at ed79843) fixes AdamW's weight decay at 0.01 and
its betas at (0.9, 0.999), turns AdamW's bias correction off, and builds the learning-rate schedule over
``--total_steps`` micro-batches, while the schedule is stepped once per *optimizer* step: with gradient
accumulation (the host's ``--accumulation_steps``, or DeepSpeed's ``gradient_accumulation_steps``) the warm-up
lasts A times longer than asked and the decay stops after 1/A of its course. LLaMA-2 (Touvron et al. 2023,
Sec. 2.2) trains with AdamW beta1 0.9, beta2 0.95, eps 1e-5, weight decay 0.1, gradient clipping 1.0 (in the
DeepSpeed config here) and a cosine schedule after a linear warm-up, decaying to 10% of the peak.

For ``--data_processor dynamic_mixture`` runs the launcher wraps ``init_optimizer`` for the duration of the run
(the host's files are not edited): the schedule is built over optimizer steps; ``--weight_decay`` and
``--adam_beta2`` set those values in the decayed parameter groups; ``--adam_bias_correction`` turns bias
correction on; ``--scheduler cosine_with_min_lr`` is LLaMA-2's schedule. Other data processors get the host's
own function unchanged.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
from pathlib import Path
from typing import Iterator

from ...errors import ChatflowError
from .names import DATA_PROCESSOR

SCHEDULER = "cosine_with_min_lr"      # the plugin's --scheduler choice
MIN_LR_RATIO = 0.1                    # LLaMA-2: "decay final learning rate down to 10% of the peak"


def add_optimizer_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--weight_decay", type=float, default=None,
                       help="AdamW weight decay of the decayed parameter groups (LLaMA-2: 0.1; default: the host's 0.01).")
    group.add_argument("--adam_beta2", type=float, default=None,
                       help="AdamW beta2 (LLaMA-2: 0.95; default: the host's 0.999).")
    group.add_argument("--adam_bias_correction", action="store_true",
                       help="AdamW with bias correction, as torch's AdamW and LLaMA-2 (the host turns it off).")


def accumulation(args) -> int:
    """Micro-batches per optimizer step on one rank: the host's --accumulation_steps times DeepSpeed's."""
    steps = max(1, int(getattr(args, "accumulation_steps", 1) or 1))
    if getattr(args, "deepspeed", False) and getattr(args, "deepspeed_config", None):
        path = Path(args.deepspeed_config)
        try:
            value = json.loads(path.read_text(encoding="utf-8")).get("gradient_accumulation_steps", 1)
        except (OSError, ValueError) as exc:
            raise ChatflowError(f"--deepspeed_config {path}: unreadable ({exc})") from None
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ChatflowError(f"--deepspeed_config {path}: gradient_accumulation_steps must be a positive integer "
                                f"for the host (got {value!r})")
        steps *= value
    return steps


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
        saved = (args.total_steps, args.scheduler)
        optimizer_steps = max(1, math.ceil(args.total_steps / accumulation(args)))
        args.total_steps = optimizer_steps
        if ours:
            args.scheduler = "constant"       # a placeholder the host knows; replaced below
        try:
            optimizer, scheduler, groups = original(args, model_for_training)
        finally:
            args.total_steps, args.scheduler = saved
        if ours:
            scheduler = cosine_with_min_lr(optimizer, optimizer_steps * args.warmup, optimizer_steps)
        for group in optimizer.param_groups:
            if args.adam_beta2 is not None and "betas" in group:
                group["betas"] = (group["betas"][0], args.adam_beta2)
            if args.weight_decay is not None and group.get("weight_decay", 0) > 0:
                group["weight_decay"] = args.weight_decay
            if args.adam_bias_correction:
                for key in ("bias_correction", "correct_bias"):     # DeepSpeedCPUAdam / the host's AdamW
                    if key in group:
                        group[key] = True
        import torch.distributed as dist

        if not dist.is_initialized() or dist.get_rank() == 0:
            args.logger.info(f"chatflow: optimizer {type(optimizer).__name__}, betas {optimizer.param_groups[0].get('betas')}, "
                             f"weight decay {max(g.get('weight_decay', 0) for g in optimizer.param_groups)}, "
                             f"learning-rate schedule {args.scheduler} over {optimizer_steps} optimizer steps "
                             f"({args.total_steps} micro-batches / {accumulation(args)} accumulated)")
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
