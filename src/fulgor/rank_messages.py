"""The rest of Lightning's rank-zero messaging: debug and deprecation messages on rank 0, `[rank: N]` prefixes, and
WarningCache (each distinct message once). `rank_zero_only/info/warn` are in fulgor.rank."""

from __future__ import annotations

import warnings
from typing import Any

from fulgor.lightning_errors import LightningDeprecationWarning
from fulgor.rank import log, rank_zero_info, rank_zero_only, rank_zero_warn

__all__ = ["WarningCache", "rank_prefixed_message", "rank_zero_debug", "rank_zero_deprecation"]


@rank_zero_only
def rank_zero_debug(message: str, *args: Any, stacklevel: int = 4, **kwargs: Any) -> None:
    """Log a debug message on rank 0.

    Args:
        message: the message (a `%`-format string when `args` are given, as in `logging`).
        *args: its arguments.
        stacklevel: which caller the log record names.
        **kwargs: passed to `logging.Logger.debug`.
    """
    log.debug(message, *args, stacklevel=stacklevel, **kwargs)


@rank_zero_only
def rank_zero_deprecation(message: str | Warning, stacklevel: int = 5, **kwargs: Any) -> None:
    """Warn on rank 0 that an API is deprecated (category `LightningDeprecationWarning`).

    Args:
        message: the warning.
        stacklevel: which caller the warning points at.
        **kwargs: passed to `warnings.warn`; `category` replaces the default category.
    """
    category = kwargs.pop("category", LightningDeprecationWarning)
    warnings.warn(message, category, stacklevel=stacklevel, **kwargs)


def rank_prefixed_message(message: str, rank: int | None) -> str:
    """`"[rank: 1] message"`, or `message` unchanged when `rank` is None."""
    return message if rank is None else f"[rank: {rank}] {message}"


class WarningCache(set[str]):
    """A set of messages already shown: `warn`, `info` and `deprecation` show each distinct message once (rank 0)."""

    def warn(self, message: str, stacklevel: int = 5, **kwargs: Any) -> None:
        """Warn with `message` on rank 0 unless it was shown before."""
        if message not in self:
            self.add(message)
            rank_zero_warn(message, kwargs.pop("category", UserWarning), stacklevel=stacklevel - 2)

    def info(self, message: str, stacklevel: int = 5, **kwargs: Any) -> None:
        """Log `message` at info level on rank 0 unless it was shown before."""
        if message not in self:
            self.add(message)
            rank_zero_info(message)

    def deprecation(self, message: str, stacklevel: int = 6, **kwargs: Any) -> None:
        """Warn that something is deprecated, on rank 0, unless the message was shown before."""
        if message not in self:
            self.add(message)
            rank_zero_deprecation(message, stacklevel=stacklevel, **kwargs)
