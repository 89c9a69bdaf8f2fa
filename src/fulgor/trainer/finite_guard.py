"""The non-finite loss guard of `fit` (`Trainer(non_finite=...)`): each training loss's finiteness is written to a small
device-side list (no host synchronisation per step) and read where fulgor synchronises anyway: every logging interval,
at each epoch end and before any checkpoint is written. The default stops with an error naming the first bad step."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from fulgor.callbacks.fault_tolerance import FaultTolerance
from fulgor.rank import rank_zero_warn

if TYPE_CHECKING:
    from fulgor.trainer.run import Run

__all__ = ["NON_FINITE_MODES", "FiniteGuard", "NonFiniteLossError", "check", "for_run", "validate_mode"]

NON_FINITE_MODES = ("error", "warn", "off")
_DEFAULT_INTERVAL = 50  # batches between two reads when `log_every_n_steps=0`


def validate_mode(value: Any) -> str:
    """The `non_finite` flag's value, checked."""
    if not isinstance(value, str) or value not in NON_FINITE_MODES:
        raise ValueError(
            f"`Trainer(non_finite={value!r})` is invalid: use 'error' (stop with an error naming the step, the"
            " default), 'warn' (warn once and continue) or 'off'."
        )
    return value


class NonFiniteLossError(FloatingPointError):
    """A training loss was NaN or infinite (`Trainer(non_finite="error")`, the default)."""


class FiniteGuard:
    """The losses of one fit since the last read, still on the device, with where each came from.

    The loop appends `(loss, global_step, epoch, batch_idx, stepping)` after each training batch (a list append: no
    host synchronisation and no function call per step) and calls `read` when `interval` losses are waiting.

    Args:
        mode: "error" (raise `NonFiniteLossError`) or "warn" (warn once per fit and go on).
        interval: batches between two reads (the logging interval).
    """

    def __init__(self, mode: str, interval: int) -> None:
        self.mode = mode
        self.interval = interval
        self.seen: list[tuple[Any, int, int, int, bool]] = []
        self.warned = False

    def read(self, moment: str) -> None:
        """Check the waiting losses (one host synchronisation); act on the first non-finite one."""
        seen = [entry for entry in self.seen if isinstance(entry[0], torch.Tensor)]
        self.seen = []
        if not seen:
            return
        # A sum is NaN or inf exactly when one of its terms is: one value per loss, one read for all of them.
        finite = torch.stack([entry[0].detach().float().sum() for entry in seen]).isfinite()
        if bool(finite.all()):
            return
        _loss, global_step, epoch, batch_idx, stepping = seen[int((~finite).nonzero()[0, 0])]
        # The step the batch ran as: the optimizer step that followed it had already advanced `global_step`.
        step = global_step - 1 if stepping and global_step > 0 else global_step
        message = (
            f"The loss returned by `training_step` is not finite (NaN or inf) at global_step={step} (epoch={epoch},"
            f" batch_idx={batch_idx}); detected {moment}."
        )
        if self.mode == "error":
            raise NonFiniteLossError(
                f"{message} Training stopped before writing a checkpoint: the last checkpoint written (`last`) holds"
                " finite weights. Find the operation with `Trainer(detect_anomaly=True)`, or pass"
                " `Trainer(non_finite='warn')` (warn and continue) or `non_finite='off'`."
            )
        if not self.warned:
            self.warned = True
            rank_zero_warn(f"{message} Training continues (`Trainer(non_finite='warn')`).", category=RuntimeWarning)


def for_run(run: Run) -> FiniteGuard | None:
    """The guard of a fit, or None: `non_finite="off"`, or a `FaultTolerance(on_non_finite=...)` checks every step."""
    mode = run.config.non_finite
    if mode == "off" or any(
        isinstance(cb, FaultTolerance) and cb.on_non_finite is not None for cb in run.trainer.callbacks
    ):
        return None
    return FiniteGuard(mode, run.config.log_every_n_steps or _DEFAULT_INTERVAL)


def check(run: Run | None, moment: str) -> None:
    """Read the running fit's guard now (before a checkpoint is written, at an epoch end)."""
    guard = run.finite_guard if run is not None else None
    if guard is not None and guard.seen:
        guard.read(moment)
