"""Checkpoint files: atomic writes with integrity records (size and SHA-256 sidecars), fulgor's resume record beside
the dict, and safe loads that name the file in every error. What goes into the dict is in `checkpoint_contents`."""

from __future__ import annotations

import argparse
import contextlib
import enum
import errno
import hashlib
import json
import os
import pathlib
import pickle
import sys
import time
import uuid
from typing import Any

import torch

from fulgor import fs
from fulgor.hparams import AttributeDict

__all__ = [
    "CheckpointError",
    "UnsafeCheckpointError",
    "atomic_save",
    "last_save_seconds",
    "read_extra",
    "verify_integrity",
    "load_checkpoint_file",
]

_SAFE_TYPES: list[Any] = [argparse.Namespace, AttributeDict, pathlib.PosixPath, pathlib.WindowsPath,
                          pathlib.PurePosixPath, pathlib.PureWindowsPath]  # fmt: skip


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be read or does not fit the model."""


class UnsafeCheckpointError(CheckpointError, pickle.UnpicklingError):
    """The file needs arbitrary unpickling, which safe loading refuses."""


_LAST_SAVE_SECONDS = [0.0]  # duration of the latest atomic_save: the preemption path's estimate of the next one


def last_save_seconds() -> float:
    """How long the latest `atomic_save` in this process took (0.0 before the first)."""
    return _LAST_SAVE_SECONDS[0]


def atomic_save(
    checkpoint: dict[str, Any], filepath: str | os.PathLike[str], extra: dict[str, Any] | None = None
) -> None:
    """Write `checkpoint` with `torch.save` so that `filepath` is either the old file or the complete new one.

    The bytes go to a hidden temporary sibling (not ending in `.ckpt`), which is flushed, fsynced and renamed over
    `filepath`; the directory is fsynced so the rename survives a power loss. The size and SHA-256 of the bytes are
    then recorded in a hidden sidecar (`.<name>.sha256`), which `verify_integrity` checks before loading.

    `extra` (fulgor's resume state) is stored as a separate record of the file's zip archive: `torch.load` (and so
    Lightning) ignores it, and the checkpoint dict keeps Lightning's exact keys; `read_extra` reads it back.

    Raises:
        CheckpointError: the folder is a file, not writable, or the disk is full (the previous file is intact).
    """
    started = time.monotonic()
    path = os.fspath(filepath)
    if fs.is_remote(path):
        _remote_save(checkpoint, path, extra)
        _LAST_SAVE_SECONDS[0] = time.monotonic() - started
        return
    folder = os.path.dirname(os.path.abspath(path))
    _make_folder(folder, path)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as file:
            torch.save(checkpoint, file)
        if extra is not None:
            _append_record(tmp, extra)
        size, digest = _file_digest(tmp)
        with open(tmp, "rb+") as file:
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError):
            raise _write_error(e, path) from e
        raise
    _fsync_dir(folder)
    _write_sidecar(path, size, digest)
    _LAST_SAVE_SECONDS[0] = time.monotonic() - started


def _remote_save(checkpoint: dict[str, Any], path: str, extra: dict[str, Any] | None) -> None:
    """Write to a URL in one upload: object stores have no rename to make temp+rename atomic (most commit a file only
    when it is closed), no directory fsync, and no integrity sidecar is kept there."""
    import io

    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    if extra is not None:
        _append_record(buffer, extra)
    parent = path.rstrip("/").rsplit("/", 1)[0]
    try:
        if not parent.endswith(":/"):  # "s3://bucket.ckpt" has no folder to create
            fs.makedirs(parent)
        with fs.open(path, "wb") as file:
            file.write(buffer.getbuffer())
    except OSError as e:
        raise _write_error(e, path) from e


_EXTRA_RECORD = "fulgor_resume.pt"


def _append_record(path: Any, extra: dict[str, Any]) -> None:
    """Add `extra` as a record of the zip archive at `path` (a file path or a seekable binary buffer)."""
    import io
    import zipfile

    buffer = io.BytesIO()
    torch.save(extra, buffer)
    with zipfile.ZipFile(path, "a") as archive:
        prefix = archive.namelist()[0].split("/")[0]
        archive.writestr(f"{prefix}/{_EXTRA_RECORD}", buffer.getvalue())


def read_extra(path: str) -> dict[str, Any] | None:
    """fulgor's resume record of a checkpoint file (None for files without one, e.g. written by Lightning)."""
    import io
    import zipfile

    try:
        with contextlib.ExitStack() as stack:
            source = stack.enter_context(fs.open(path, "rb")) if fs.is_remote(path) else path
            archive = stack.enter_context(zipfile.ZipFile(source))
            name = next((n for n in archive.namelist() if n.endswith("/" + _EXTRA_RECORD)), None)
            if name is None:
                return None
            data = archive.read(name)
    except (OSError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"Checkpoint file {path!r} cannot be read: its archive is damaged ({e}).") from e
    with torch.serialization.safe_globals(_SAFE_TYPES):
        loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    return loaded if isinstance(loaded, dict) else None


def _file_digest(path: str) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def _make_folder(folder: str, path: str) -> None:
    try:
        os.makedirs(folder, exist_ok=True)
    except FileExistsError as e:
        raise CheckpointError(
            f"Cannot save checkpoint {path!r}: {_first_file(folder)!r} is a file, not a directory. Choose another"
            " `dirpath`/`default_root_dir` or move that file."
        ) from e
    except OSError as e:
        raise _write_error(e, path) from e


def _first_file(folder: str) -> str:
    while folder and not os.path.exists(folder):
        folder = os.path.dirname(folder)
    return folder


def _write_error(error: OSError, path: str) -> CheckpointError:
    """A CheckpointError that says what went wrong while writing `path` and that the previous file is untouched."""
    kept = "The previous file at that path (if any) is unchanged."
    if error.errno == errno.ENOSPC:
        return CheckpointError(f"No space left on device while saving checkpoint {path!r}. {kept} Free disk space.")
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return CheckpointError(
            f"Cannot save checkpoint {path!r}: the folder is not writable ({error.strerror}). {kept} Choose a"
            " writable `dirpath`/`default_root_dir`."
        )
    if error.errno == errno.ENOTDIR:
        return CheckpointError(
            f"Cannot save checkpoint {path!r}: a part of the path is a file, not a directory. Choose another path."
        )
    return CheckpointError(f"Saving checkpoint {path!r} failed: {error}. {kept}")


def _sidecar(path: str) -> str:
    return os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.sha256")


def _write_sidecar(path: str, size: int, digest: str) -> None:
    """Record size, hash and mtime of a committed file (best effort: a missing sidecar only disables the check)."""
    sidecar = _sidecar(path)
    try:
        record = {"size": size, "sha256": digest, "mtime_ns": os.stat(path).st_mtime_ns}
        tmp = f"{sidecar}.{uuid.uuid4().hex[:8]}.tmp"
        with open(tmp, "w") as file:
            json.dump(record, file)
        os.replace(tmp, sidecar)
        _remove_orphan_sidecars(os.path.dirname(path))
    except OSError:
        pass


def _remove_orphan_sidecars(folder: str) -> None:
    """Sidecars whose checkpoint was deleted (e.g. by `save_top_k`) go too."""
    names = set(os.listdir(folder))
    for name in names:
        if name.startswith(".") and name.endswith(".sha256") and name[1:-7] not in names:
            with contextlib.suppress(OSError):
                os.remove(os.path.join(folder, name))


def verify_integrity(path: str) -> None:
    """Compare `path` with the size and SHA-256 recorded when fulgor committed it.

    Files without a sidecar, or changed by another program since (a different mtime), are not checked.

    Raises:
        CheckpointError: the size or the hash differ: the file was damaged after it was written.
    """
    if fs.is_remote(path):
        return  # no sidecar is written on remote file systems (see `_remote_save`)
    try:
        with open(_sidecar(path)) as file:
            record = json.load(file)
        stat = os.stat(path)
    except (OSError, ValueError):
        return
    if stat.st_mtime_ns != record.get("mtime_ns"):
        return
    if stat.st_size != record.get("size"):
        raise CheckpointError(
            f"Checkpoint file {path!r} is damaged: it has {stat.st_size} bytes but {record.get('size')} were written."
        )
    if _file_digest(path)[1] != record.get("sha256"):
        raise CheckpointError(
            f"Checkpoint file {path!r} is damaged: its SHA-256 differs from the one recorded when it was written"
            " (corrupted on disk or in transfer)."
        )


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint_file(path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
    """Read a checkpoint file; safe (`torch.load(weights_only=True)`) unless `weights_only=False`.

    The types fulgor writes, common hparams types (Namespace, AttributeDict, paths) and enums of already imported
    modules are allowed. Every failure names the file.

    Raises:
        FileNotFoundError: no such file.
        UnsafeCheckpointError: the file needs arbitrary unpickling (retry with `weights_only=False` if you trust it).
        CheckpointError: empty, truncated, corrupt, or not a checkpoint dict.
    """
    if hasattr(path, "read"):
        return _load(path, map_location, weights_only, name=repr(path))
    path = os.fspath(path)
    if fs.is_remote(path):
        return _load(_download(path), map_location, weights_only, name=repr(path))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint file not found: {path}")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"Checkpoint file {path!r} is empty (0 bytes): it was not written completely.")
    return _load(path, map_location, weights_only, name=repr(path))


def _download(path: str) -> Any:
    """The bytes of a remote checkpoint in memory: one read instead of the many small seeks `torch.load` makes."""
    import io

    if not fs.exists(path):
        raise FileNotFoundError(f"Checkpoint file not found: {path}")
    with fs.open(path, "rb") as file:
        data = file.read()
    if not data:
        raise CheckpointError(f"Checkpoint file {path!r} is empty (0 bytes): it was not written completely.")
    return io.BytesIO(data)


def _mtime(path: str) -> float:
    """Modification time of a local file or URL (0.0 where the remote file system does not record one)."""
    if not fs.is_remote(path):
        return os.path.getmtime(path)
    try:
        return float(fs.get_filesystem(path).modified(path).timestamp())
    except (NotImplementedError, OSError, AttributeError):
        return 0.0


def _load(source: Any, map_location: Any, weights_only: bool | None, name: str) -> dict[str, Any]:
    location = map_location if map_location is not None else _default_map_location
    try:
        if weights_only is False:
            loaded = torch.load(source, map_location=location, weights_only=False)
        else:
            loaded = _safe_load(source, location, name)
    except UnsafeCheckpointError:
        raise
    except Exception as e:  # torch raises many types for damaged files (RuntimeError, EOFError, KeyError, ...)
        raise CheckpointError(
            f"Checkpoint file {name} cannot be read: it is truncated, corrupt or not a PyTorch file ({e})."
        ) from e
    if not isinstance(loaded, dict) or "state_dict" not in loaded:
        raise CheckpointError(
            f"File {name} is not a Lightning checkpoint: expected a dict with a 'state_dict' key, got"
            f" {type(loaded).__name__}{' with keys ' + str(list(loaded)[:8]) if isinstance(loaded, dict) else ''}."
        )
    return loaded


def _safe_load(source: Any, location: Any, name: str) -> Any:
    extra = _imported_enums(source)
    with torch.serialization.safe_globals([*_SAFE_TYPES, *extra]):
        if hasattr(source, "seek"):
            source.seek(0)
        try:
            return torch.load(source, map_location=location, weights_only=True)
        except pickle.UnpicklingError as e:
            # torch's message mentions `weights_only` for any failure; only "Unsupported global" means unsafe.
            if "Unsupported global" not in str(e):
                raise CheckpointError(
                    f"Checkpoint {name} could not be unpickled ({_first_line(str(e))}): the file is probably"
                    " truncated or corrupt. Use an earlier checkpoint, or `ckpt_path='last'` to fall back to one."
                ) from e
            raise UnsafeCheckpointError(
                f"Checkpoint {name} contains Python objects that safe loading does not allow"
                f" ({_first_line(str(e))}). Loading them could run arbitrary code. If you trust the file, pass"
                " `weights_only=False` (e.g. `Model.load_from_checkpoint(path, weights_only=False)` or"
                " `trainer.fit(model, ckpt_path=path, weights_only=False)`)."
            ) from e


def _imported_enums(source: Any) -> list[type]:
    """Enum classes the file references that live in modules already imported (allowing them imports nothing)."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(source)
    except Exception:
        return []
    found: list[type] = []
    for full in names:
        module_name, _, attr = full.rpartition(".")
        obj = getattr(sys.modules.get(module_name), attr, None)
        if isinstance(obj, type) and issubclass(obj, enum.Enum):
            found.append(obj)
    return found


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if "Unsupported global" in line or "GLOBAL" in line:
            return line.strip()
    return text.splitlines()[0] if text else text


def _default_map_location(storage: Any, location: str) -> Any:
    """Keep devices unless the saved one is not available here (then load to CPU), as Lightning does."""
    if location.startswith("cuda") and not torch.cuda.is_available():
        return storage.cpu()
    if location.startswith("mps") and not torch.backends.mps.is_available():
        return storage.cpu()
    if location.startswith("xla"):
        return storage.cpu()
    return None
