"""The names Lightning's loop modules export that user code touches: the restart stages of the fit, epoch and
evaluation loops, `check_finite_loss` and `do_nothing_closure`. (fulgor's loops are functions in fulgor.trainer.)"""

from __future__ import annotations

import torch

__all__ = ["EpochRestartStage", "EvaluationRestartStage", "FitRestartStage", "check_finite_loss", "do_nothing_closure"]


class FitRestartStage:
    """Where a resumed fit restarted (Lightning's `loops.fit_loop.RestartStage`)."""

    NONE = "none"
    RESTARTED_ON_EPOCH_START = "restarted_on_epoch_start"
    RESTARTED_MID_EPOCH = "restarted_mid_epoch"
    RESTARTED_ON_EPOCH_END = "restarted_on_epoch_end"
    RESUMED_ON_EPOCH_END = "resumed_on_epoch_end"


class EpochRestartStage:
    """Where a resumed training epoch restarted (Lightning's `loops.training_epoch_loop.RestartStage`)."""

    NONE = "none"
    RESTARTED_ON_TRAIN_BATCH_END = "restarted_on_train_batch_end"
    RESTARTED_ON_LAST = "restarted_on_last"


class EvaluationRestartStage:
    """Where a resumed evaluation restarted (Lightning's `loops.evaluation_loop.RestartStage`)."""

    NONE = "none"
    RESTARTED_MID_EVALUATION = "restarted_mid_evaluation"


def check_finite_loss(loss: torch.Tensor | None) -> None:
    """Raise if `loss` holds a NaN or an infinity (None passes).

    Raises:
        ValueError: the loss is not finite.
    """
    if loss is not None and not bool(torch.isfinite(loss).all()):
        raise ValueError(f"The loss returned in `training_step` is {loss}.")


def do_nothing_closure() -> None:
    """A closure that does nothing: `optimizer.step(closure=do_nothing_closure)` when the step was computed already."""
