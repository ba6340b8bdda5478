"""What every host's trainer does with the learning rate when a run resumes.

A checkpoint's scheduler state restores the peak rate it was saved with (``base_lrs``) and its optimizer
state the rate of its last step, while the schedule's shape (warm-up, decay, length) is rebuilt from the
resumed run's own arguments. :func:`apply_resumed_settings` puts the resumed run's peak rate back and
recomputes the current rate, so that an allowed change of the learning rate or of the schedule takes effect
from the first resumed step, and an unchanged run continues exactly (the same numbers). A run restarted
without optimizer state (TencentPretrain without DeepSpeed) passes the optimizer steps already done, so its
schedule continues where it was instead of starting over at warm-up.
"""
from __future__ import annotations


def apply_resumed_settings(optimizer, lr_scheduler, learning_rate: float, steps_done: int | None = None) -> None:
    """This run's peak rate on ``lr_scheduler`` (a ``LambdaLR``) and the rate of its position on ``optimizer``;
    ``steps_done``: the optimizer steps already done, for a scheduler that starts fresh."""
    if optimizer is None or not hasattr(lr_scheduler, "lr_lambdas"):
        return
    if steps_done is not None:
        lr_scheduler.last_epoch = int(steps_done)
    lr_scheduler.base_lrs = [learning_rate for _ in lr_scheduler.base_lrs]
    for group, base, factor in zip(optimizer.param_groups, lr_scheduler.base_lrs, lr_scheduler.lr_lambdas):
        group["initial_lr"] = base
        group["lr"] = base * factor(lr_scheduler.last_epoch)
    lr_scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
