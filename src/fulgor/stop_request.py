"""The stop request: the one flag a signal handler sets and the loops read between batches (two attribute reads per
batch, no syscall), what acting on it does (`Options`), and `Preempted`, raised once it was acted on."""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Literal

from fulgor.errors import MisconfigurationException
from fulgor.lightning_errors import SIGTERMException

__all__ = ["DEFAULT_SIGNALS", "PREEMPTED_EXIT_CODE", "STOP", "Options", "Preempted", "StopRequest", "parse_signal"]

PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL ("temporary failure, retry"): wrappers can requeue on it
DEFAULT_SIGNALS = ("SIGTERM", "SIGUSR1")


class StopRequest:
    """The one flag a signal handler sets and the loops read."""

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


class Preempted(SIGTERMException):
    """Raised at a safe point after a stop request was acted on; exits the interpreter with `code`. A
    `SIGTERMException` (a `SystemExit`), the exception Lightning raises after SIGTERM: code catching it still
    does."""

    def __init__(self, code: int, message: str, checkpoint: str | None) -> None:
        super().__init__(code)
        self.message = message
        self.checkpoint = checkpoint

    def __str__(self) -> str:
        return self.message


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


def pending_signal() -> int | None:
    """The signal waiting to be acted on, if any (for tests and tools)."""
    return STOP.signum if STOP.pending else None
