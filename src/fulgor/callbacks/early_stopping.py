"""EarlyStopping: stop training when a monitored metric stops improving, crosses a threshold or is not finite."""

from __future__ import annotations

import logging
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from fulgor.callbacks.callback import Callback
from fulgor.errors import MisconfigurationException
from fulgor.rank import rank_zero_warn

if TYPE_CHECKING:
    from fulgor.module import LightningModule
    from fulgor.trainer.trainer import Trainer

log = logging.getLogger("fulgor.callbacks.early_stopping")

_SIGN = {"min": "<", "max": ">"}


class EarlyStoppingReason(Enum):
    """Why `EarlyStopping` stopped training (`EarlyStopping.stopping_reason`)."""

    NOT_STOPPED = 0
    STOPPING_THRESHOLD = 1
    DIVERGENCE_THRESHOLD = 2
    PATIENCE_EXHAUSTED = 3
    NON_FINITE_METRIC = 4


class EarlyStopping(Callback):
    """Stop training when ``monitor`` has not improved for ``patience`` checks.

    Each check (at the end of the training epoch, or after each validation run) decides, in this order: a
    non-finite value stops (``check_finite``); a value better than ``stopping_threshold`` stops; a value worse
    than ``divergence_threshold`` stops; an improvement by more than ``min_delta`` resets the wait count;
    anything else increments it and stops once it reaches ``patience``.

    Args:
        monitor: key of ``trainer.callback_metrics`` to watch (what you ``self.log``).
        min_delta: minimum change that counts as an improvement (strictly more than this).
        patience: number of checks without improvement after which training stops.
        verbose: log every decision at INFO level.
        mode: ``"min"`` (lower is better) or ``"max"``.
        strict: raise when ``monitor`` is missing from the logged metrics (False: skip the check).
        check_finite: stop when the metric is NaN or infinite.
        stopping_threshold: stop as soon as the metric is better than this value.
        divergence_threshold: stop as soon as the metric is worse than this value.
        check_on_train_epoch_end: check at the end of the training epoch (True) or after validation (False).
            ``None`` picks True when validation runs once per epoch at its end.
        log_rank_zero_only: in distributed runs, only rank 0 logs the messages.
    """

    monitors_metrics: ClassVar[bool] = True

    def __init__(
        self,
        monitor: str,
        min_delta: float = 0.0,
        patience: int = 3,
        verbose: bool = False,
        mode: str = "min",
        strict: bool = True,
        check_finite: bool = True,
        stopping_threshold: float | None = None,
        divergence_threshold: float | None = None,
        check_on_train_epoch_end: bool | None = None,
        log_rank_zero_only: bool = False,
    ) -> None:
        super().__init__()
        if mode not in _SIGN:
            raise MisconfigurationException(f"`mode` can be min, max, got {mode}")
        self.monitor = monitor
        self.mode = mode
        # Stored signed, as Lightning does: a "min" improvement must beat the best by |min_delta|.
        self.min_delta = min_delta if mode == "max" else -min_delta
        self.patience = patience
        self.verbose = verbose
        self.strict = strict
        self.check_finite = check_finite
        self.stopping_threshold = stopping_threshold
        self.divergence_threshold = divergence_threshold
        self.log_rank_zero_only = log_rank_zero_only
        self._check_on_train_epoch_end = check_on_train_epoch_end
        self.wait_count = 0
        self.stopped_epoch = 0
        self.best_score: Tensor = torch.tensor(torch.inf if mode == "min" else -torch.inf)
        self.stopping_reason = EarlyStoppingReason.NOT_STOPPED
        self.stopping_reason_message: str | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor, mode=self.mode)

    @property
    def monitor_op(self) -> Any:
        """``torch.lt`` for mode "min", ``torch.gt`` for "max"."""
        return torch.lt if self.mode == "min" else torch.gt

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self._check_on_train_epoch_end is None:
            self._check_on_train_epoch_end = trainer.val_check_interval == 1.0 and trainer.check_val_every_n_epoch == 1

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._check_on_train_epoch_end and not self._skip(trainer):
            self._run_early_stopping_check(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._check_on_train_epoch_end and not self._skip(trainer):
            self._run_early_stopping_check(trainer)

    def state_dict(self) -> dict[str, Any]:
        return {
            "wait_count": self.wait_count,
            "stopped_epoch": self.stopped_epoch,
            "best_score": self.best_score,
            "patience": self.patience,
            "stopping_reason": self.stopping_reason.value,
            "stopping_reason_message": self.stopping_reason_message,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.wait_count = state_dict["wait_count"]
        self.stopped_epoch = state_dict["stopped_epoch"]
        self.best_score = state_dict["best_score"]
        self.patience = state_dict["patience"]
        self.stopping_reason = EarlyStoppingReason(state_dict.get("stopping_reason", 0))
        self.stopping_reason_message = state_dict.get("stopping_reason_message")

    @staticmethod
    def _skip(trainer: Trainer) -> bool:
        state = trainer.state
        return getattr(state.fn, "value", state.fn) != "fit" or trainer.sanity_checking

    def _metric_available(self, metrics: dict[str, Tensor]) -> bool:
        if self.monitor in metrics:
            return True
        message = (
            f"Early stopping conditioned on metric `{self.monitor}` which is not available."
            " Pass in or modify your `EarlyStopping` callback to use any of the following:"
            f" `{'`, `'.join(metrics)}`"
        )
        if self.strict:
            raise RuntimeError(message)
        if self.verbose:
            rank_zero_warn(message, category=RuntimeWarning)
        return False

    def _run_early_stopping_check(self, trainer: Trainer) -> None:
        metrics = trainer.callback_metrics
        if trainer.fast_dev_run or not self._metric_available(metrics):
            return
        should_stop, reason = self._evaluate_stopping_criteria(metrics[self.monitor].squeeze())
        should_stop = bool(trainer.strategy.reduce_boolean_decision(should_stop, all=False))
        trainer.should_stop = trainer.should_stop or should_stop
        if should_stop:
            self.stopped_epoch = trainer.current_epoch
            self.stopping_reason_message = reason
            if self.stopping_reason == EarlyStoppingReason.NON_FINITE_METRIC:  # reported whatever `verbose` says
                rank_zero_warn(
                    f"{type(self).__name__}(monitor={self.monitor!r}) stopped the run at epoch={trainer.current_epoch},"
                    f" global_step={trainer.global_step}: {reason}",
                    category=RuntimeWarning,
                )
        if reason and self.verbose:
            self._log_info(trainer, reason, self.log_rank_zero_only)

    def _evaluate_stopping_criteria(self, current: Tensor) -> tuple[bool, str | None]:
        """The decision of one check: (stop?, message). Threshold stops leave `best_score`/`wait_count` alone."""
        name, sign, value = self.monitor, _SIGN[self.mode], current.item()
        if self.check_finite and not torch.isfinite(current):
            self.stopping_reason = EarlyStoppingReason.NON_FINITE_METRIC
            return True, (
                f"Monitored metric {name} = {value} is not finite."
                f" Previous best value was {self.best_score.item():.3f}. Signaling Trainer to stop."
            )
        if self.stopping_threshold is not None and self.monitor_op(current, self.stopping_threshold):
            self.stopping_reason = EarlyStoppingReason.STOPPING_THRESHOLD
            return True, (
                f"Stopping threshold reached: {name} = {value} {sign} {self.stopping_threshold}."
                " Signaling Trainer to stop."
            )
        if self.divergence_threshold is not None and self.monitor_op(-current, -self.divergence_threshold):
            # Lightning prints the mode's improvement sign here although the value crossed the other way.
            self.stopping_reason = EarlyStoppingReason.DIVERGENCE_THRESHOLD
            return True, (
                f"Divergence threshold reached: {name} = {value} {sign} {self.divergence_threshold}."
                " Signaling Trainer to stop."
            )
        if self.monitor_op(current - self.min_delta, self.best_score.to(current.device)):
            message = self._improvement_message(current)
            self.best_score = current
            self.wait_count = 0
            return False, message
        self.wait_count += 1
        if self.wait_count < self.patience:
            return False, None
        self.stopping_reason = EarlyStoppingReason.PATIENCE_EXHAUSTED
        return True, (
            f"Monitored metric {name} did not improve in the last {self.wait_count} records."
            f" Best score: {self.best_score.item():.3f}. Signaling Trainer to stop."
        )

    def _improvement_message(self, current: Tensor) -> str:
        if not torch.isfinite(self.best_score):
            return f"Metric {self.monitor} improved. New best score: {current.item():.3f}"
        delta = abs(self.best_score.item() - current.item())
        return (
            f"Metric {self.monitor} improved by {delta:.3f} >= min_delta = {abs(self.min_delta)}."
            f" New best score: {current.item():.3f}"
        )

    @staticmethod
    def _log_info(trainer: Trainer | None, message: str, log_rank_zero_only: bool) -> None:
        # A static method with Lightning's signature: user subclasses call it with the trainer (or None).
        rank = trainer.global_rank if trainer is not None and trainer.world_size > 1 else None
        if rank is not None:
            message = f"[rank: {rank}] {message}"
        if rank is None or not log_rank_zero_only or rank == 0:
            log.info(message)
