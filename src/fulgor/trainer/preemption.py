"""Stopping a fit safely: SIGTERM/SIGUSR1 (or configured signals) become a stop request (`fulgor.stop_request`) that
the loops act on at their next safe point: save the exact state within a time budget, requeue under SLURM, exit with
`PREEMPTED_EXIT_CODE`. The options come from the `FaultTolerance` callback or `FULGOR_*` environment variables."""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from fulgor.callbacks.fault_tolerance import FaultTolerance
from fulgor.checkpointing import last_save_seconds
from fulgor.rank import rank_zero_info
from fulgor.stop_request import (
    DEFAULT_SIGNALS,
    PREEMPTED_EXIT_CODE,
    STOP,
    Options,
    Preempted,
    parse_signal,
    pending_signal,
)
from fulgor.strategies.scheduler_environments import SLURMEnvironment
from fulgor.trainer.state import RunningStage

if TYPE_CHECKING:
    from fulgor.trainer.run import Run

# The names tests, tools and user scripts import from here.
__all__ = [
    "PREEMPTED_EXIT_CODE",
    "STOP",
    "FaultTolerance",
    "Options",
    "Preempted",
    "install",
    "parse_signal",
    "pending_signal",
    "safe_point",
    "shield_workers",
]


def _options(run: Run) -> Options:
    for callback in run.trainer.callbacks:
        if isinstance(callback, FaultTolerance):
            return callback.options
    return _with_slurm_environment(run, _options_from_environment())


def _with_slurm_environment(run: Run, options: Options) -> Options:
    """A `SLURMEnvironment(auto_requeue=..., requeue_signal=...)` plugin says which signal announces the time limit
    (instead of SIGUSR1) and whether the job requeues itself, as in Lightning."""
    environment = getattr(run.strategy, "cluster_environment", None)
    if not isinstance(environment, SLURMEnvironment):
        return options
    signals = [s for s in options.signals if s != signal.SIGUSR1]
    if environment.requeue_signal is not None:
        signals.append(int(environment.requeue_signal))
    requeue = options.requeue if environment.auto_requeue else False
    return dataclasses.replace(options, signals=tuple(dict.fromkeys(signals)), requeue=requeue)


def _options_from_environment() -> Options:
    env = os.environ
    raw = env.get("FULGOR_PREEMPT_SIGNALS", ",".join(DEFAULT_SIGNALS))
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


def install(run: Run) -> Callable[[], None]:
    """Route the configured signals to the stop request for one `fit`; return the function that undoes it."""
    STOP.reset()
    options = STOP.options = _options(run)
    if not options.signals or threading.current_thread() is not threading.main_thread():
        return _nothing
    previous = {signum: signal.getsignal(signum) for signum in options.signals}

    def handler(signum: int, frame: FrameType | None) -> None:
        STOP.count += 1
        run.received_sigterm = run.received_sigterm or signum == signal.SIGTERM
        if not STOP.pending and not STOP.handled:
            STOP.signum, STOP.received_at, STOP.pending = signum, time.monotonic(), True
        chained = previous.get(signum)
        if callable(chained) and chained is not signal.default_int_handler:
            chained(signum, frame)  # a handler the user installed before fit keeps working

    for signum in options.signals:
        signal.signal(signum, handler)
    STOP.sync_every = options.sync_every_n_batches if run.strategy.world_size > 1 else 0
    STOP.countdown = STOP.sync_every

    def uninstall() -> None:
        for signum, old in previous.items():
            signal.signal(signum, old if old is not None else signal.SIG_DFL)
        unanswered = STOP.signum if STOP.pending and not STOP.handled else None
        STOP.reset()
        # The run ended before a safe point: the signal does what it would have done, unless an exception is
        # propagating (called from a `finally`): re-delivering would kill the process and hide that exception.
        if unanswered is not None and sys.exc_info()[1] is None:
            signal.raise_signal(unanswered)

    return uninstall


def _nothing() -> None:
    STOP.reset()


def shield_workers(loader: Any) -> None:
    """Make the DataLoader's worker processes ignore the stop signals during fit.

    A scheduler signals the whole process group: torch's workers would die of SIGTERM (torch installs a handler there
    that re-raises it), and the main process would fail with "DataLoader worker ... killed" before its safe point. The
    workers start with the signals blocked (the main process blocks them while it starts its workers; a signal that
    comes meanwhile reaches it right after), and ignore them from their `worker_init_fn` on. The workers are ended by
    the main process when it stops, as after any epoch. The user's `worker_init_fn` still runs.
    """
    signals = STOP.options.signals
    if not signals or getattr(loader, "num_workers", 0) == 0 or threading.current_thread() != threading.main_thread():
        return
    user_fn = loader.worker_init_fn
    if isinstance(user_fn, functools.partial) and user_fn.func is _ignore_in_worker:
        user_fn = user_fn.keywords["user_fn"]  # a loader prepared by an earlier fit: wrap the user's function once
    loader.worker_init_fn = functools.partial(_ignore_in_worker, signals=signals, user_fn=user_fn)
    if "_get_iterator" not in vars(loader):
        # torch's DataLoader starts its workers in `_get_iterator` (called by `__iter__`): wrapped on this instance.
        start = loader._get_iterator
        loader._get_iterator = functools.partial(_start_blocked, start, signals)


def _start_blocked(start: Callable[[], Any], signals: tuple[int, ...]) -> Any:
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signals)  # inherited by the workers (fork and exec)
    try:
        return start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _ignore_in_worker(worker_id: int, *, signals: tuple[int, ...], user_fn: Callable[[int], Any] | None) -> None:
    # Module level and a partial: picklable for the "spawn"/"forkserver" worker start methods.
    for signum in signals:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)  # a signal that came while blocked is dropped now
    if user_fn is not None:
        user_fn(worker_id)


# ---------------------------------------------------------------------------------------------------------------------
# acting on a request


def safe_point(run: Run) -> None:
    """Called between batches when a request may be pending: with several processes, agree first (every N calls)."""
    if STOP.sync_every:
        STOP.countdown -= 1
        if STOP.countdown > 0:
            return
        STOP.countdown = STOP.sync_every
        # Every rank reaches this call at the same batch, so one all-reduce decides for all of them.
        if not run.strategy.reduce_boolean_decision(STOP.pending, all=False):
            return
        if not STOP.pending:
            STOP.signum, STOP.received_at = signal.SIGTERM, time.monotonic()
    elif not STOP.pending:
        return
    _stop(run)


def _stop(run: Run) -> None:
    STOP.pending, STOP.handled = False, True
    options = STOP.options
    name = signal.Signals(STOP.signum).name if STOP.signum is not None else "a stop request"
    path: str | None = None
    saved = "no checkpoint was written (not training)"
    if run.fitting and run.state.stage in (RunningStage.TRAINING, RunningStage.VALIDATING):
        path, saved = _save(run, options)
    requeued = _requeue(options) if run.strategy.is_global_zero else ""
    message = (
        f"Received {name}: {saved}.{requeued} Exiting with code {options.exit_code}; resume with"
        f" `trainer.fit(..., ckpt_path={'last' if path and _is_last(path) else path or 'last'!r})`."
    )
    rank_zero_info(message)
    raise Preempted(options.exit_code, message, path)


def _save(run: Run, options: Options) -> tuple[str | None, str]:
    trainer = run.trainer
    path = options.ckpt_path or _default_path(run)
    elapsed = time.monotonic() - STOP.received_at
    estimate = last_save_seconds()
    if options.save_budget is not None and elapsed + estimate > options.save_budget:
        return None, (
            f"no checkpoint was written: {elapsed:.1f}s have passed and the last save took {estimate:.1f}s, over the"
            f" {options.save_budget:.0f}s budget; resume from the last periodic checkpoint"
        )
    STOP.saving = True
    started = time.monotonic()
    try:
        trainer.save_checkpoint(path, weights_only=False)  # the loops' phase says where in the cycle this is
    finally:
        STOP.saving = False
    took = time.monotonic() - started
    return path, f"saved {path} at global_step={run.state.global_step} in {took:.2f}s"


def _default_path(run: Run) -> str:
    trainer = run.trainer
    for callback in trainer.checkpoint_callbacks:
        folder = getattr(callback, "dirpath", None)
        if folder:
            return os.path.join(folder, f"{getattr(callback, 'CHECKPOINT_NAME_LAST', 'last')}.ckpt")
    root = run.config.default_root_dir
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
