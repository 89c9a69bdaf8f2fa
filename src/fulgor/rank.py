"""Rank-aware printing: info/warnings emitted once per job (global rank 0), how fulgor's own warnings print, the
`fulgor` logger setup, and the global rank itself (`rank_zero_only.rank`), kept in step with lightning_utilities'
copy that Lightning-style code reads."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

log = logging.getLogger("fulgor")
if not log.handlers and not logging.getLogger().handlers:
    # Like Lightning: info messages (model summary, stop reasons) reach the console unless the user configured logging.
    log.addHandler(logging.StreamHandler())
    log.setLevel(logging.INFO)
    log.propagate = False

F = TypeVar("F", bound=Callable[..., Any])

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_previous_formatwarning = warnings.formatwarning


def _format_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None
) -> str:
    """Print a warning raised from fulgor's own code as Lightning prints its own: `path:line: message` on one line.

    Python's default adds the category and echoes the source line, which for a rank-zero helper is only the call
    (`rank_zero_warn(`). Warnings attributed to any other file (the user's, torch's) keep the format they had.
    """
    if os.path.abspath(filename).startswith(_PACKAGE_DIR):
        return f"{filename}:{lineno}: {message}\n"
    return _previous_formatwarning(message, category, filename, lineno, line)


warnings.formatwarning = _format_warning

_LIGHTNING_UTILITIES_RANK_ZERO = "lightning_utilities.core.rank_zero"


def rank_from_environment() -> int | None:
    """The rank a launcher gave this process through its variables, read as Lightning reads them: `RANK`, then
    `LOCAL_RANK` (SLURM may set `SLURM_PROCID` in a job whose processes it did not start), then `SLURM_PROCID`, then
    `JSM_NAMESPACE_RANK` (LSF); None when none is set."""
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        value = os.environ.get(key)
        if value is not None:
            return int(value)
    return None


def _rank_from_env() -> int:
    return rank_from_environment() or 0


class _RankZeroOnly:
    """`@rank_zero_only` and `rank_zero_only.rank`, the process's global rank: at import, the rank the launcher's
    variables give (`rank_from_environment`, 0 when none is set), until the strategy sets it.

    Setting `rank_zero_only.rank` (the strategy does, and Lightning-style code may) also sets lightning_utilities'
    `rank_zero_only.rank` when that package is loaded, so code logging through either decorator agrees on rank 0.
    """

    def __init__(self, rank: int) -> None:
        self._rank = rank

    @property
    def rank(self) -> int:
        return self._rank

    @rank.setter
    def rank(self, value: int) -> None:
        self._rank = value
        _set_lightning_utilities_rank(value)

    def __call__(self, fn: F, default: Any = None) -> F:
        """Wrap `fn` to run only on global rank 0; other ranks get `default`."""

        @wraps(fn)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if self._rank == 0:
                return fn(*args, **kwargs)
            return default

        return wrapped  # type: ignore[return-value]


def _set_lightning_utilities_rank(rank: int) -> None:
    # Only a module already loaded is touched: importing the optional package here would tax every process.
    module = sys.modules.get(_LIGHTNING_UTILITIES_RANK_ZERO)
    if module is not None:
        module.rank_zero_only.rank = rank


if TYPE_CHECKING:
    # Typed as the decorator it is used as; `.rank` is set through the object below (callers keep their
    # `# type: ignore[attr-defined]`, or call `set_global_rank`).
    def rank_zero_only(fn: F) -> F:
        """Decorator: call `fn` only on global rank 0 (`rank_zero_only.rank`, set by the strategy)."""
        return fn
else:
    rank_zero_only = _RankZeroOnly(_rank_from_env())
    rank_zero_only.__doc__ = "Decorator: call `fn` only on global rank 0 (`rank_zero_only.rank`, set by the strategy)."


def global_rank() -> int:
    """This process's global rank as the rank-zero helpers see it."""
    rank: int = rank_zero_only.rank  # type: ignore[attr-defined]
    return rank


def set_global_rank(rank: int) -> None:
    """Set this process's global rank for `rank_zero_only` (and lightning_utilities' copy, when it is loaded).

    Args:
        rank: the global rank (0 prints).
    """
    rank_zero_only.rank = rank  # type: ignore[attr-defined]


def sync_lightning_utilities() -> None:
    """Load lightning_utilities' rank-zero module (if the package is installed) and give it fulgor's global rank, as
    importing Lightning does; called when the Lightning import aliases are installed."""
    try:
        import lightning_utilities.core.rank_zero  # noqa: F401  (optional third-party package)
    except ImportError:
        return
    _set_lightning_utilities_rank(global_rank())


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
