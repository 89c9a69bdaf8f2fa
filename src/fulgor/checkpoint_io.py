"""CheckpointIO plugins (Lightning's API): how checkpoint files are written, read and removed. `TorchCheckpointIO` is
the default (atomic commit, safe load); `AsyncCheckpointIO` writes in a background thread; a user's
subclass passed as `Trainer(plugins=[...])` receives every checkpoint the Trainer and ModelCheckpoint write."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import ContextVar
from typing import Any

import torch

from fulgor import fs
from fulgor.checkpointing import atomic_save, load_checkpoint_file

__all__ = ["AsyncCheckpointIO", "CheckpointIO", "TorchCheckpointIO", "resume_record"]

# fulgor's exact-resume state travels beside the checkpoint dict, not in it: a user's CheckpointIO receives Lightning's
# dict unchanged, while TorchCheckpointIO (also when a subclass calls it) stores the record as a separate archive entry.
_RECORD: ContextVar[tuple[int, dict[str, Any]] | None] = ContextVar("fulgor_resume_record", default=None)


@contextlib.contextmanager
def resume_record(checkpoint: dict[str, Any], record: dict[str, Any] | None) -> Iterator[None]:
    """While entered, `TorchCheckpointIO.save_checkpoint(checkpoint, ...)` also writes `record` (fulgor's resume state)
    into the file, where `torch.load` does not see it (`checkpointing.read_extra` does)."""
    token = _RECORD.set(None if record is None else (id(checkpoint), record))
    try:
        yield
    finally:
        _RECORD.reset(token)


def _record_for(checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    current = _RECORD.get()
    return current[1] if current is not None and current[0] == id(checkpoint) else None


class CheckpointIO(ABC):
    """Writes, reads and removes checkpoint files; subclass it to store checkpoints your own way."""

    @abstractmethod
    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        """Write `checkpoint` (the dict in Lightning's layout) to `path`.

        Args:
            checkpoint: the model and training state.
            path: where to write.
            storage_options: what `Trainer.save_checkpoint(..., storage_options=...)` received.
        """

    @abstractmethod
    def load_checkpoint(
        self, path: Any, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Read the checkpoint at `path`.

        Args:
            path: the file.
            map_location: how to remap tensor storages (as for `torch.load`).
            weights_only: restrict unpickling to tensors and plain types (see `torch.load`).
        """

    @abstractmethod
    def remove_checkpoint(self, path: Any) -> None:
        """Delete the checkpoint at `path`."""

    def teardown(self) -> None:  # noqa: B027
        """Release what the plugin holds at the end of a run (threads, connections)."""


class TorchCheckpointIO(CheckpointIO):
    """`torch.save`/`torch.load` files: written atomically (a reader sees the old file or the complete new one), one
    file per checkpoint; loaded safely (`weights_only=True`) unless told otherwise."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        """Commit `checkpoint` to `path` (a local path or an fsspec URL).

        Raises:
            TypeError: `storage_options` was given: this plugin has no use for them.
            CheckpointError: the folder cannot be written (the previous file is intact).
        """
        if storage_options is not None:
            raise TypeError(
                "`Trainer.save_checkpoint(..., storage_options=...)` with `storage_options` arg is not supported for"
                f" `{type(self).__name__}`. Please implement your custom `CheckpointIO` to define how you'd like to use"
                " `storage_options`."
            )
        atomic_save(checkpoint, path, _record_for(checkpoint))

    def load_checkpoint(
        self, path: Any, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Read `path` (tensors stay on their saved device when it exists here, else go to the CPU).

        Raises:
            FileNotFoundError: no such file.
            CheckpointError: the file is damaged, or needs unpickling that `weights_only` forbids.
        """
        return load_checkpoint_file(path, map_location=map_location, weights_only=weights_only)

    def remove_checkpoint(self, path: Any) -> None:
        """Delete the file (or folder, or link) at `path`, if it exists."""
        path = os.fspath(path)
        if fs.is_remote(path):
            if fs.exists(path):
                fs.get_filesystem(path).rm(path, recursive=True)
            return
        if os.path.isfile(path) or os.path.islink(path):
            os.remove(path)
        elif os.path.isdir(path):
            shutil.rmtree(path)


def _snapshot(data: Any) -> Any:
    """`data` with every tensor cloned and every container rebuilt: what a later step changes in place stays out."""
    if isinstance(data, torch.Tensor):
        return data.detach().clone()
    if isinstance(data, Mapping):
        return {key: _snapshot(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_snapshot(value) for value in data]
    if isinstance(data, tuple) and not hasattr(data, "_fields"):
        return tuple(_snapshot(value) for value in data)
    return data


class AsyncCheckpointIO(CheckpointIO):
    """Save checkpoints in a background thread, so the training loop does not wait for the disk.

    The checkpoint is copied (tensors cloned) before `save_checkpoint` returns, so training may go on changing the
    weights. Saves and removals run one at a time in call order: a file is removed only after the saves before it
    were committed, and each save keeps the wrapped plugin's guarantees (with the default, a reader never sees a
    half-written file). A background save that failed raises its error at the next `save_checkpoint`, at
    `load_checkpoint`, or at `teardown` (the end of the run), never silently.

    Args:
        checkpoint_io: the plugin that writes the files; default `TorchCheckpointIO` (set by the strategy).
    """

    def __init__(self, checkpoint_io: CheckpointIO | None = None) -> None:
        self._checkpoint_io = checkpoint_io
        self._executor: ThreadPoolExecutor | None = None
        self._pending: list[Future[None]] = []
        self._error: BaseException | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        # `ddp_spawn` pickles the Trainer: the thread, its queue and the lock stay in this process.
        return {"_checkpoint_io": self._checkpoint_io}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["_checkpoint_io"])  # type: ignore[misc]

    @property
    def checkpoint_io(self) -> CheckpointIO | None:
        """The plugin that writes the files."""
        return self._checkpoint_io

    @checkpoint_io.setter
    def checkpoint_io(self, checkpoint_io: CheckpointIO) -> None:
        # The strategy fills in its default; a plugin the user chose is kept.
        if self._checkpoint_io is None:
            self._checkpoint_io = checkpoint_io
        elif isinstance(self._checkpoint_io, AsyncCheckpointIO):
            self._checkpoint_io.checkpoint_io = checkpoint_io

    def _wrapped(self) -> CheckpointIO:
        if self._checkpoint_io is None:
            self._checkpoint_io = TorchCheckpointIO()
        return self._checkpoint_io

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        """Copy `checkpoint` and write it in the background.

        Raises:
            BaseException: what an earlier background save raised (this checkpoint is then not written).
        """
        self._raise_error()
        snapshot = _snapshot(checkpoint)
        record = _record_for(checkpoint)
        record = None if record is None else _snapshot(record)
        wrapped = self._wrapped()

        def save() -> None:
            with resume_record(snapshot, record):
                wrapped.save_checkpoint(snapshot, path, storage_options=storage_options)

        self._submit(save)

    def remove_checkpoint(self, path: Any) -> None:
        """Remove `path` once the saves submitted before have finished."""
        self._raise_error()
        self._submit(lambda: self._wrapped().remove_checkpoint(path))

    def run_in_order(self, job: Callable[[], None]) -> None:
        """Run `job` in the background thread once the saves and removals submitted before it are done (fulgor's
        ModelCheckpoint moves its `last` link this way, so the link never points at a file not yet committed).

        Raises:
            BaseException: what an earlier background save raised (`job` is then not run).
        """
        self._raise_error()
        self._submit(job)

    def load_checkpoint(
        self, path: Any, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Wait for pending saves (the file may be one of them), then read `path` with the wrapped plugin."""
        self._wait()
        self._raise_error()
        return self._wrapped().load_checkpoint(path, map_location=map_location, weights_only=weights_only)

    def teardown(self) -> None:
        """Wait for every pending save and stop the thread.

        Raises:
            BaseException: what a background save raised and no call has reported yet.
        """
        self._wait()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self._raise_error()
        self._wrapped().teardown()

    def _submit(self, job: Callable[[], None]) -> None:
        if self._executor is None:  # created here, not in __init__: teardown ends it after every run
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fulgor-async-checkpoint")
        future = self._executor.submit(self._unless_failed, job)
        future.add_done_callback(self._keep_error)
        self._pending = [f for f in self._pending if not f.done()] + [future]

    def _unless_failed(self, job: Callable[[], None]) -> None:
        # After a failed save, the queued work is skipped: removing the file it was to replace would lose both.
        if self._error is None:
            job()

    def _keep_error(self, future: Future[None]) -> None:
        error = future.exception()
        if error is not None:
            with self._lock:
                if self._error is None:  # the first failure is the cause; later ones usually follow from it
                    self._error = error

    def _wait(self) -> None:
        pending, self._pending = self._pending, []
        for future in pending:
            with contextlib.suppress(BaseException):  # reported through `_error`
                future.result()

    def _raise_error(self) -> None:
        with self._lock:
            error, self._error = self._error, None
        if error is not None:
            raise error
