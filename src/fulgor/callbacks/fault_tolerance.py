"""`FaultTolerance`: fulgor-only options for preemption (which signals stop a fit, the exit code, the save budget,
SLURM requeue) and for non-finite losses (skip the batch, stop, or raise)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import torch

from fulgor.callbacks.callback import Callback
from fulgor.errors import MisconfigurationException
from fulgor.rank import rank_zero_warn
from fulgor.stop_request import DEFAULT_SIGNALS, PREEMPTED_EXIT_CODE, Options, parse_signal

if TYPE_CHECKING:
    from fulgor.module import LightningModule
    from fulgor.trainer.trainer import Trainer

__all__ = ["FaultTolerance"]


class FaultTolerance(Callback):
    """fulgor-only options for preemption and non-finite losses (Lightning's Trainer signature stays unchanged).

    Args:
        signals: signal names or numbers that request a stop (default SIGTERM and SIGUSR1; `()` installs none).
        exit_code: the process exit code after a stop (default 75, EX_TEMPFAIL).
        save_budget: seconds after the signal within which the checkpoint must be written; when the last save took
            longer than what is left, no checkpoint is written and the last periodic one is used. None: always save.
        requeue: under SLURM, run `scontrol requeue` after saving: "auto" (a batch job), True or False.
        ckpt_path: where the stop checkpoint goes (default `last.ckpt` in the first `ModelCheckpoint`'s folder, else
            `hpc_ckpt_N.ckpt` in `default_root_dir`, the file `ckpt_path="hpc"` loads).
        on_non_finite: None (do nothing), "skip" (drop that batch's gradients: the weights do not change), "stop"
            (drop them and stop training) or "raise" (`FloatingPointError`). Checking reads the loss on the host once
            per step.
        sync_every_n_batches: with several processes, how often the ranks agree on a stop request (one tiny
            all-reduce every N batches, never per step).

    Example::

        trainer = Trainer(callbacks=[FaultTolerance(signals=["SIGTERM"], on_non_finite="skip")])
    """

    def __init__(
        self,
        signals: Sequence[str | int] = DEFAULT_SIGNALS,
        exit_code: int = PREEMPTED_EXIT_CODE,
        save_budget: float | None = 30.0,
        requeue: bool | Literal["auto"] = "auto",
        ckpt_path: str | os.PathLike[str] | None = None,
        on_non_finite: Literal["skip", "stop", "raise"] | None = None,
        sync_every_n_batches: int = 16,
    ) -> None:
        if on_non_finite not in (None, "skip", "stop", "raise"):
            raise MisconfigurationException(
                f"`FaultTolerance(on_non_finite={on_non_finite!r})` is invalid: use None, 'skip', 'stop' or 'raise'."
            )
        if not isinstance(exit_code, int) or not 0 <= exit_code <= 255:
            raise MisconfigurationException(
                f"`FaultTolerance(exit_code={exit_code!r})` is invalid: use an int in [0, 255] (default 75)."
            )
        if not isinstance(sync_every_n_batches, int) or sync_every_n_batches < 1:
            raise MisconfigurationException(
                f"`FaultTolerance(sync_every_n_batches={sync_every_n_batches!r})` is invalid: use an int >= 1."
            )
        self.options = Options(
            signals=tuple(parse_signal(s) for s in signals),
            exit_code=exit_code,
            save_budget=save_budget,
            requeue=requeue,
            ckpt_path=os.fspath(ckpt_path) if ckpt_path is not None else None,
            sync_every_n_batches=sync_every_n_batches,
        )
        self.on_non_finite = on_non_finite
        self._message: str | None = None

    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor) -> None:
        if self.on_non_finite is None or bool(torch.isfinite(loss).all()):
            return
        state = trainer.state
        value = "nan" if bool(torch.isnan(loss).any()) else "inf"
        self._message = (
            f"The loss is {value} at global_step={state.global_step} (epoch={state.epoch},"
            f" batch_idx={state.batch_idx}): returned by `training_step`, detected in `on_before_backward`"
        )
        if self.on_non_finite == "raise":
            raise FloatingPointError(
                f"{self._message}. Find where it comes from with `Trainer(detect_anomaly=True)`, or pass"
                " `FaultTolerance(on_non_finite='skip')` to skip such batches."
            )

    def on_after_backward(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._message is None:
            return
        message, self._message = self._message, None
        for param in pl_module.parameters():
            param.grad = None  # the optimizer skips parameters without gradients: the weights stay as they were
        if self.on_non_finite == "skip":
            rank_zero_warn(f"{message}. Its gradients were dropped: this optimizer step changes no weight.")
            return
        trainer.state.should_stop = True
        rank_zero_warn(f"{message}. Training stops; the weights are those from before this batch.")
