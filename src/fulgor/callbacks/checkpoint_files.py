"""ModelCheckpoint's file operations in a crash-safe order: the `last` link swapped in atomically (after the saves an
AsyncCheckpointIO still has queued), which files may be removed, and the user's `dirpath` made absolute."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from fulgor import fs
from fulgor.checkpoint_io import AsyncCheckpointIO
from fulgor.checkpointing import TEMPORARY_SUFFIX

if TYPE_CHECKING:
    from fulgor.trainer.trainer import Trainer

__all__ = ["is_removable", "link_checkpoint", "resolve_user_dir"]


def link_checkpoint(trainer: Trainer, filepath: str, linkpath: str) -> None:
    """Point `linkpath` at the committed `filepath` on rank 0: a relative symlink (a copy where links are not
    possible) made under a hidden temporary name and renamed over `linkpath`, so the name always points at a complete
    file. With an AsyncCheckpointIO the link is made in its thread, after the save of `filepath` was committed."""
    if trainer.is_global_zero and os.path.abspath(filepath) != os.path.abspath(linkpath):
        io = trainer.strategy.checkpoint_io
        if isinstance(io, AsyncCheckpointIO):
            io.run_in_order(lambda: _swap_link(filepath, linkpath))
        else:
            _swap_link(filepath, linkpath)
    trainer.strategy.barrier()


def _swap_link(filepath: str, linkpath: str) -> None:
    if os.path.isdir(linkpath) and not os.path.islink(linkpath):
        shutil.rmtree(linkpath)
    folder = os.path.dirname(linkpath)
    tmp = os.path.join(folder, f".{os.path.basename(linkpath)}.{uuid.uuid4().hex[:8]}{TEMPORARY_SUFFIX}")
    try:
        os.symlink(os.path.relpath(filepath, folder), tmp)
    except OSError:  # no symlinks here (some Windows setups, some network file systems)
        shutil.copyfile(filepath, tmp)
        with open(tmp, "rb+") as file:
            os.fsync(file.fileno())
    os.replace(tmp, linkpath)


def is_removable(previous: str, current: str, dirpath: str, resumed: str | None) -> bool:
    """Whether ModelCheckpoint may delete `previous` now that `current` replaces it: never the new file itself, a
    file outside `dirpath`, or the checkpoint this run resumed from."""
    if previous == current:
        return False
    if fs.is_remote(previous):
        return previous != resumed and previous.startswith(dirpath.rstrip("/") + "/")
    previous_path = Path(previous).absolute()
    if resumed is not None and previous_path == Path(resumed).absolute():
        return False
    return Path(dirpath).absolute() in previous_path.parents


def resolve_user_dir(dirpath: str | os.PathLike[str]) -> str:
    """A local `dirpath` made absolute with `~` and links resolved; a URL (`s3://...`) is kept as given."""
    return os.fspath(dirpath) if fs.is_remote(dirpath) else os.path.realpath(os.path.expanduser(dirpath))
