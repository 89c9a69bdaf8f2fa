"""`is_shared_filesystem`: whether all processes of a distributed run see the same files under a path (rank 0 writes
a marker file, the other ranks look for it), so checkpoints written by rank 0 can be read by every rank."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from fulgor.fs import is_remote

__all__ = ["is_shared_filesystem"]

_MARKER = ".lightning_shared_fs_check"


def is_shared_filesystem(strategy: Any, path: str | Path | None = None, timeout: int = 3) -> bool:
    """Whether `path` is on a filesystem every process of `strategy`'s run shares. Call it on every rank.

    A remote URL (`s3://...`) counts as shared, and so does any path in a single-process run.

    Args:
        strategy: the run's strategy (`trainer.strategy`).
        path: a directory or file to check; the working directory by default. Rank 0 must be able to write there.
        timeout: seconds the other ranks wait for rank 0's marker file before deciding it is not shared.

    Raises:
        FileNotFoundError: the path does not exist on some rank.
    """
    if path is not None and is_remote(str(path)):
        return True
    if getattr(strategy, "world_size", 1) == 1:
        return True
    local = Path(Path.cwd() if path is None else path).resolve()
    if not strategy.reduce_boolean_decision(strategy.broadcast(local) == local, all=True):
        return False  # the ranks do not even agree on the path
    if not strategy.reduce_boolean_decision(local.exists(), all=True):
        raise FileNotFoundError(
            f"Unable to determine if the path belongs to a shared filesystem. The path does not exist: {local}"
        )
    marker = (local.parent if local.is_file() else local) / _MARKER
    marker.unlink(missing_ok=True)
    strategy.barrier()
    found = _write_or_wait(marker, strategy.is_global_zero, timeout)
    strategy.barrier()
    shared = bool(strategy.reduce_boolean_decision(found, all=True))
    with contextlib.suppress(OSError):  # another rank may have removed it already
        marker.unlink()
    return shared


def _write_or_wait(marker: Path, is_global_zero: bool, timeout: float) -> bool:
    if is_global_zero:
        marker.touch()
        return True
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if marker.exists():
            return True
        time.sleep(0.01)
    return marker.exists()
