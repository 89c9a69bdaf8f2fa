"""Rank-aware printing: info/warnings emitted once per job (global rank 0), and the `fulgor` logger setup."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

log = logging.getLogger("fulgor")
if not log.handlers and not logging.getLogger().handlers:
    # Like Lightning: info messages (model summary, stop reasons) reach the console unless the user configured logging.
    log.addHandler(logging.StreamHandler())
    log.setLevel(logging.INFO)
    log.propagate = False

F = TypeVar("F", bound=Callable[..., Any])


def _rank_from_env() -> int:
    for key in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "JSM_NAMESPACE_RANK"):
        value = os.environ.get(key)
        if value is not None:
            return int(value)
    return 0


def rank_zero_only(fn: F) -> F:
    """Decorator: call `fn` only on global rank 0 (`rank_zero_only.rank`, set by the strategy)."""

    @wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if rank_zero_only.rank == 0:  # type: ignore[attr-defined]
            return fn(*args, **kwargs)
        return None

    return wrapped  # type: ignore[return-value]


rank_zero_only.rank = _rank_from_env()  # type: ignore[attr-defined]


@rank_zero_only
def rank_zero_info(message: str) -> None:
    """Log an info message on rank 0."""
    log.info(message)


@rank_zero_only
def rank_zero_warn(message: str | Warning, category: type[Warning] = UserWarning, stacklevel: int = 2) -> None:
    """Emit a warning on rank 0."""
    warnings.warn(message, category, stacklevel=stacklevel + 1)


_warned: set[str] = set()


def warn_once(message: str, category: type[Warning] = UserWarning) -> None:
    """Emit a rank-0 warning the first time this exact message is seen in the process."""
    if message not in _warned:
        _warned.add(message)
        rank_zero_warn(message, category, stacklevel=3)
