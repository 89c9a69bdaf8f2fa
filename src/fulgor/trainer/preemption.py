"""Stopping a run safely: SIGTERM/SIGUSR1 (or configured signals) become a stop request that the loops act on at their
next safe point (save the exact state within a time budget, requeue under SLURM, exit with `PREEMPTED_EXIT_CODE`), and
the `FaultTolerance` callback that configures it and skips or stops on a NaN/inf loss."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Literal

import torch

from fulgor.callbacks.callback import Callback
from fulgor.errors import MisconfigurationException
from fulgor.rank import rank_zero_info, rank_zero_warn

if TYPE_CHECKING:
    from fulgor.module import LightningModule
    from fulgor.trainer.trainer import Trainer

__all__ = ["PREEMPTED_EXIT_CODE", "STOP", "FaultTolerance", "Preempted", "install", "safe_point"]

PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL ("temporary failure, retry"): wrappers can requeue on it
_DEFAULT_SIGNALS = ("SIGTERM", "SIGUSR1")


class StopRequest:
    """The one flag a signal handler sets and the loops read (two attribute reads per batch, no syscall)."""

    def __init__(self) -> None:
        self.pending = False  # a signal arrived and is not acted on yet
        self.sync_every = 0  # > 0 with several processes: agree on the stop every N safe points
        self.reset()

    def reset(self) -> None:
        self.pending = False
        self.sync_every = 0
        self.signum: int | None = None
        self.received_at = 0.0
        self.count = 0  # signals received (a second one while saving is only counted)
        self.saving = False
        self.handled = False
        self.countdown = 0
        self.options = Options()


@dataclass
class Options:
    """What a stop request does; from the `FaultTolerance` callback, else from `FULGOR_*` environment variables."""

    signals: tuple[int, ...] = ()
    exit_code: int = PREEMPTED_EXIT_CODE
    save_budget: float | None = 30.0  # seconds from the signal; None: always try
    requeue: bool | Literal["auto"] = "auto"
    ckpt_path: str | None = None
    sync_every_n_batches: int = 16


STOP = StopRequest()


class Preempted(SystemExit):
    """Raised at a safe point after a stop request was acted on; exits the interpreter with `code`."""

    def __init__(self, code: int, message: str, checkpoint: str | None) -> None:
        super().__init__(code)
        self.message = message
        self.checkpoint = checkpoint

    def __str__(self) -> str:
        return self.message


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
        signals: Sequence[str | int] = _DEFAULT_SIGNALS,
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


def parse_signal(value: str | int) -> int:
    """`"SIGTERM"`, `"TERM"` or 15 → 15, with an error naming the value."""
    if isinstance(value, int) and not isinstance(value, bool):
        return int(signal.Signals(value))
    name = str(value).upper()
    name = name if name.startswith("SIG") else f"SIG{name}"
    if not hasattr(signal, name) or name in ("SIGKILL", "SIGSTOP"):
        raise MisconfigurationException(
            f"Signal {value!r} cannot request a stop: use names such as 'SIGTERM', 'SIGUSR1', 'SIGUSR2', 'SIGINT'"
            " (SIGKILL and SIGSTOP cannot be caught)."
        )
    return int(getattr(signal, name))


def _options(trainer: Trainer) -> Options:
    for callback in trainer.callbacks:
        if isinstance(callback, FaultTolerance):
            return callback.options
    env = os.environ
    raw = env.get("FULGOR_PREEMPT_SIGNALS", ",".join(_DEFAULT_SIGNALS))
    names = [] if raw.strip().lower() in ("", "none", "0") else [n.strip() for n in raw.split(",") if n.strip()]
    budget = env.get("FULGOR_PREEMPT_BUDGET", "30")
    requeue = env.get("FULGOR_REQUEUE", "auto").lower()
    return Options(
        signals=tuple(parse_signal(n) for n in names),
        exit_code=int(env.get("FULGOR_PREEMPT_EXIT_CODE", PREEMPTED_EXIT_CODE)),
        save_budget=None if budget.lower() in ("", "none", "0") else float(budget),
        requeue="auto" if requeue == "auto" else requeue in ("1", "true", "yes"),
        ckpt_path=env.get("FULGOR_PREEMPT_CKPT") or None,
    )


# ---------------------------------------------------------------------------------------------------------------------
# signals


def install(trainer: Trainer) -> Callable[[], None]:
    """Route the configured signals to the stop request for one `fit`; return the function that undoes it."""
    STOP.reset()
    options = STOP.options = _options(trainer)
    if not options.signals or threading.current_thread() is not threading.main_thread():
        return _nothing
    previous = {signum: signal.getsignal(signum) for signum in options.signals}

    def handler(signum: int, frame: FrameType | None) -> None:
        STOP.count += 1
        if not STOP.pending and not STOP.handled:
            STOP.signum, STOP.received_at, STOP.pending = signum, time.monotonic(), True
        chained = previous.get(signum)
        if callable(chained) and chained is not signal.default_int_handler:
            chained(signum, frame)  # a handler the user installed before fit keeps working

    for signum in options.signals:
        signal.signal(signum, handler)
    STOP.sync_every = options.sync_every_n_batches if trainer.world_size > 1 else 0
    STOP.countdown = STOP.sync_every

    def uninstall() -> None:
        for signum, old in previous.items():
            signal.signal(signum, old if old is not None else signal.SIG_DFL)
        unanswered = STOP.signum if STOP.pending and not STOP.handled else None
        STOP.reset()
        if unanswered is not None:  # the run ended before a safe point: the signal does what it would have done
            signal.raise_signal(unanswered)

    return uninstall


def _nothing() -> None:
    STOP.reset()


# ---------------------------------------------------------------------------------------------------------------------
# acting on a request


def safe_point(trainer: Trainer, phase: str) -> None:
    """Called between batches when a request may be pending: with several processes, agree first (every N calls)."""
    if STOP.sync_every:
        STOP.countdown -= 1
        if STOP.countdown > 0:
            return
        STOP.countdown = STOP.sync_every
        # Every rank reaches this call at the same batch, so one all-reduce decides for all of them.
        if not trainer.strategy.reduce_boolean_decision(STOP.pending, all=False):
            return
        if not STOP.pending:
            STOP.signum, STOP.received_at = signal.SIGTERM, time.monotonic()
    elif not STOP.pending:
        return
    _stop(trainer, phase)


def _stop(trainer: Trainer, phase: str) -> None:
    STOP.pending, STOP.handled = False, True
    options = STOP.options
    name = signal.Signals(STOP.signum).name if STOP.signum is not None else "a stop request"
    state = trainer.state
    stage = getattr(state.stage, "value", state.stage)
    path: str | None = None
    saved = "no checkpoint was written (not training)"
    if getattr(state.fn, "value", state.fn) == "fit" and stage in ("train", "validate"):
        path, saved = _save(trainer, phase, options)
    requeued = _requeue(options) if trainer.is_global_zero else ""
    message = (
        f"Received {name}: {saved}.{requeued} Exiting with code {options.exit_code}; resume with"
        f" `trainer.fit(..., ckpt_path={'last' if path and _is_last(path) else path or 'last'!r})`."
    )
    rank_zero_info(message)
    raise Preempted(options.exit_code, message, path)


def _save(trainer: Trainer, phase: str, options: Options) -> tuple[str | None, str]:
    from fulgor import checkpointing

    path = options.ckpt_path or _default_path(trainer)
    elapsed = time.monotonic() - STOP.received_at
    estimate = checkpointing.last_save_seconds()
    if options.save_budget is not None and elapsed + estimate > options.save_budget:
        return None, (
            f"no checkpoint was written: {elapsed:.1f}s have passed and the last save took {estimate:.1f}s, over the"
            f" {options.save_budget:.0f}s budget; resume from the last periodic checkpoint"
        )
    state = trainer.state
    state.saving_at, STOP.saving = phase, True
    started = time.monotonic()
    try:
        trainer.save_checkpoint(path, weights_only=False)
    finally:
        state.saving_at, STOP.saving = None, False
    took = time.monotonic() - started
    return path, f"saved {path} at global_step={state.global_step} in {took:.2f}s"


def _default_path(trainer: Trainer) -> str:
    for callback in trainer.checkpoint_callbacks:
        folder = getattr(callback, "dirpath", None)
        if folder:
            return os.path.join(folder, f"{getattr(callback, 'CHECKPOINT_NAME_LAST', 'last')}.ckpt")
    root = trainer.default_root_dir
    numbers = [int(n[9:-5]) for n in os.listdir(root) if n.startswith("hpc_ckpt_") and n[9:-5].isdigit()] if (
        os.path.isdir(root)) else []  # fmt: skip
    return os.path.join(root, f"hpc_ckpt_{max(numbers, default=0) + 1}.ckpt")


def _is_last(path: str) -> bool:
    return os.path.basename(path).startswith("last")


def _slurm_job_id() -> str | None:
    env = os.environ
    if "SLURM_JOB_ID" not in env:
        return None
    if "SLURM_ARRAY_JOB_ID" in env and "SLURM_ARRAY_TASK_ID" in env:
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env["SLURM_JOB_ID"]


def _requeue(options: Options) -> str:
    """Requeue this SLURM job (once, from rank 0); return a sentence for the exit message."""
    job = _slurm_job_id()
    if options.requeue is False or job is None:
        return ""
    if options.requeue == "auto" and os.environ.get("SLURM_JOB_NAME") in ("bash", "interactive"):
        return ""
    scontrol = shutil.which("scontrol")
    if scontrol is None:
        return (
            f" SLURM job {job} was NOT requeued: `scontrol` is not on PATH (inside a container?). Requeue it yourself"
            " or set FULGOR_REQUEUE=0 to silence this."
        )
    result = subprocess.run([scontrol, "requeue", job], capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        return f" Requeuing SLURM job {job} failed (`scontrol requeue {job}`: {result.stderr.strip()})."
    return f" SLURM job {job} was requeued."


def pending_signal() -> int | None:
    """The signal waiting to be acted on, if any (for tests and tools)."""
    return STOP.signum if STOP.pending else None
