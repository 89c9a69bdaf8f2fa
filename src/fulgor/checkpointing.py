"""Checkpoint files: atomic writes (one file each, nothing beside it), integrity checks from the archive's own CRC-32s,
fulgor's resume record inside the archive, and safe loads that name the file in every error. What goes into the dict
is in `checkpoint_contents`."""

from __future__ import annotations

import argparse
import contextlib
import enum
import errno
import io
import os
import pathlib
import pickle
import re
import sys
import time
import uuid
import zipfile
import zlib
from typing import IO, Any

import torch

from fulgor import fs
from fulgor.hparams import AttributeDict

__all__ = [
    "CheckpointError",
    "UnsafeCheckpointError",
    "atomic_save",
    "last_save_seconds",
    "read_extra",
    "remove_stale_temporaries",
    "verify_integrity",
    "load_checkpoint_file",
    "load_sharded_metadata",
]

_SAFE_TYPES: list[Any] = [argparse.Namespace, AttributeDict, pathlib.PosixPath, pathlib.WindowsPath,
                          pathlib.PurePosixPath, pathlib.PureWindowsPath]  # fmt: skip


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be read or does not fit the model."""


class UnsafeCheckpointError(CheckpointError, pickle.UnpicklingError):
    """The file needs arbitrary unpickling, which safe loading refuses."""


# A save writes `.<name>.<8 hex>.tmp` first: what a save killed mid-write leaves (see `remove_stale_temporaries`).
TEMPORARY_SUFFIX = ".tmp"
_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")


_LAST_SAVE_SECONDS = [0.0]  # duration of the latest atomic_save: the preemption path's estimate of the next one


def last_save_seconds() -> float:
    """How long the latest `atomic_save` in this process took (0.0 before the first)."""
    return _LAST_SAVE_SECONDS[0]


def atomic_save(
    checkpoint: dict[str, Any], filepath: str | os.PathLike[str], extra: dict[str, Any] | None = None
) -> None:
    """Write `checkpoint` with `torch.save` so that `filepath` is either the old file or the complete new one.

    The bytes go to a hidden temporary sibling (not ending in `.ckpt`), which is flushed, fsynced and renamed over
    `filepath`; the directory is fsynced so the rename survives a power loss. No other file is written: the integrity
    record is the archive's own CRC-32 per record, which `verify_integrity` checks before a resume.

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
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex[:8]}{TEMPORARY_SUFFIX}")
    file: _ErrorRecordingFile | None = None
    try:
        with open(tmp, "wb") as raw:
            file = _ErrorRecordingFile(raw)
            torch.save(checkpoint, file)  # type: ignore[arg-type]
        if extra is not None:
            _append_record(tmp, extra)
        with open(tmp, "rb+") as raw:
            os.fsync(raw.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        wrapped = _save_error(e, file, path)
        if wrapped is e:
            raise
        # chained to the file system's error where torch's writer replaced it by its own
        raise wrapped from (file.error if file is not None and file.error is not None else e)
    _fsync_dir(folder)
    _LAST_SAVE_SECONDS[0] = time.monotonic() - started


def remove_stale_temporaries(folder: str) -> list[str]:
    """Delete the hidden temporaries that saves killed mid-write (SIGKILL, power loss) left in `folder`.

    Call it only where no save into `folder` is running (fulgor: when a fit sets its checkpoint callbacks up, on
    rank 0). Returns the names removed.
    """
    if fs.is_remote(folder) or not os.path.isdir(folder):
        return []
    removed = []
    for name in os.listdir(folder):
        if _TEMPORARY.match(name):
            with contextlib.suppress(OSError):
                os.remove(os.path.join(folder, name))
                removed.append(name)
    return removed


class _ErrorRecordingFile:
    """A binary file that remembers the first OSError of a write: torch's zip writer may swallow it and raise its own
    `RuntimeError: [enforce fail at inline_container.cc] unexpected pos ...`, which would hide a full disk."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self.file.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def flush(self) -> None:
        try:
            self.file.flush()
        except OSError as e:
            self.error = self.error or e
            raise


def _save_error(error: BaseException, file: _ErrorRecordingFile | None, path: str) -> BaseException:
    """What a failed local save raises: a CheckpointError naming the path when the cause was the file system."""
    cause = error if isinstance(error, OSError) else (file.error if file is not None else None)
    if cause is not None:
        return _write_error(cause, path)
    if isinstance(error, RuntimeError) and "inline_container" in str(error):
        return CheckpointError(
            f"Saving checkpoint {path!r} failed while writing the file ({_first_line(str(error))}). The previous"
            " file at that path (if any) is unchanged. Check the free space and the health of that disk."
        )
    return error


def _remote_save(checkpoint: dict[str, Any], path: str, extra: dict[str, Any] | None) -> None:
    """Write to a URL in one upload: object stores have no rename to make temp+rename atomic (most commit a file only
    when it is closed) and no directory fsync."""
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
    buffer = io.BytesIO()
    torch.save(extra, buffer)
    with zipfile.ZipFile(path, "a") as archive:
        prefix = archive.namelist()[0].split("/")[0]
        archive.writestr(f"{prefix}/{_EXTRA_RECORD}", buffer.getvalue())


def read_extra(path: str) -> dict[str, Any] | None:
    """fulgor's resume record of a checkpoint file (None for files without one, e.g. written by Lightning).

    Raises:
        UnsafeCheckpointError: the record holds objects that safe loading refuses (a tampered file); it is not loaded.
        CheckpointError: the archive or the record is damaged.
    """
    try:
        with contextlib.ExitStack() as stack:
            source = _remote_source(stack, path) if fs.is_remote(path) else path
            archive = stack.enter_context(zipfile.ZipFile(source))
            name = next((n for n in archive.namelist() if n.endswith("/" + _EXTRA_RECORD)), None)
            if name is None:
                return None
            data = archive.read(name)
    except (OSError, zipfile.BadZipFile, EOFError, zlib.error) as e:
        raise CheckpointError(f"Checkpoint file {path!r} cannot be read: its archive is damaged ({e}).") from e
    loaded = _safe_load(io.BytesIO(data), "cpu", f"{path!r} (its record {name!r})")
    return loaded if isinstance(loaded, dict) else None


def _remote_source(stack: contextlib.ExitStack, path: str) -> Any:
    """A remote archive to read records from: fetched whole over HTTP(S) (a plain web server may not answer the range
    requests a seekable file needs), else the file system's seekable file, which reads only what is asked."""
    if path.startswith(("http://", "https://")):
        return io.BytesIO(_http_get(path))
    return stack.enter_context(fs.open(path, "rb"))


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
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        what = "No space left on device" if error.errno == errno.ENOSPC else "Disk quota exceeded"
        return CheckpointError(
            f"{what} while saving checkpoint {path!r}. {kept} Free disk space there, or choose another"
            " `dirpath`/`default_root_dir`."
        )
    if error.errno == errno.EFBIG:
        return CheckpointError(
            f"Saving checkpoint {path!r} failed: the file is larger than this file system or process allows"
            f" ({error.strerror}). {kept}"
        )
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


def verify_integrity(path: str) -> None:
    """Check that the checkpoint archive at `path` is complete and that every record still has the CRC-32 written with
    it (torch's zip writer stores one per record; so does Python's for fulgor's own record).

    Legacy (non-zip) files and URLs are not checked (`torch.load` reports what it finds there), nor are the records
    of archives written with torch's CRC-32 turned off (`torch.serialization.set_crc32_options(False)`).

    Raises:
        CheckpointError: the archive is truncated or a record differs from its CRC-32: the file was damaged after it
            was written (on disk or in transfer).
    """
    if fs.is_remote(path):
        return
    with open(path, "rb") as file:
        if file.read(4) != _ZIP_MAGIC:
            return
        file.seek(0)
        try:
            with zipfile.ZipFile(file) as archive:
                _check_records(archive)
        except (zipfile.BadZipFile, EOFError, ValueError, zlib.error) as e:
            raise CheckpointError(f"Checkpoint file {path!r} is damaged: {_damage(e)}.") from e


_ZIP_MAGIC = b"PK\x03\x04"


def _check_records(archive: zipfile.ZipFile) -> None:
    """Read every record to its end: `zipfile` compares the CRC-32 and raises `BadZipFile` when it differs."""
    infos = archive.infolist()
    # torch writes CRC 0 everywhere when its CRC-32 option is off: those records cannot be checked.
    crc_written = any(info.CRC != 0 for info in infos if not info.filename.endswith("/" + _EXTRA_RECORD))
    for info in infos:
        if info.CRC == 0 and not crc_written:
            continue
        with archive.open(info) as record:
            while record.read(1 << 20):
                pass


def _damage(error: Exception) -> str:
    text = str(error)
    if text.startswith("Bad CRC-32 for file"):
        record = text.split("'")[1] if "'" in text else "?"
        return f"its record {record!r} differs from the CRC-32 written with it (corrupted on disk or in transfer)"
    if "not a zip file" in text or isinstance(error, EOFError):
        return "its zip archive is incomplete (truncated, e.g. by a full disk or an interrupted copy)"
    return f"its zip archive cannot be read ({text})"


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


def load_sharded_metadata(path: Any, weights_only: bool | None = None) -> dict[str, Any]:
    """The `meta.pt` of a sharded (FSDP) checkpoint folder: the checkpoint's keys except the weights and optimizer
    states, read on the CPU as safely as `load_checkpoint_file` reads a file (it has no `state_dict` of its own)."""
    name = repr(os.fspath(path))
    if weights_only is False:
        loaded: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
        return loaded
    return _safe_load(path, "cpu", name)  # type: ignore[no-any-return]


def _download(path: str) -> Any:
    """The bytes of a remote checkpoint in memory: one read instead of the many small seeks `torch.load` makes."""
    if path.startswith(("http://", "https://")):
        return io.BytesIO(_http_get(path))
    if not fs.exists(path):
        raise FileNotFoundError(f"Checkpoint file not found: {path}")
    with fs.open(path, "rb") as file:
        data = file.read()
    if not data:
        raise CheckpointError(f"Checkpoint file {path!r} is empty (0 bytes): it was not written completely.")
    return io.BytesIO(data)


def _http_get(url: str) -> bytes:
    """A checkpoint served over HTTP(S), read with the standard library (as Lightning reads URLs, through
    `torch.hub`): fsspec's HTTP file system would need `aiohttp`, which a plain install lacks."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url) as response:  # the user's URL; only http(s) reaches here
            data: bytes = response.read()
    except urllib.error.HTTPError as e:
        if e.code == 404:
            raise FileNotFoundError(f"Checkpoint file not found: {url}") from e
        raise CheckpointError(f"Checkpoint {url!r} cannot be downloaded: HTTP {e.code} {e.reason}.") from e
    if not data:
        raise CheckpointError(f"Checkpoint file {url!r} is empty (0 bytes): it was not written completely.")
    return data


def _mtime(path: str) -> float:
    """Modification time of a local file or URL (0.0 where the remote file system does not record one)."""
    if not fs.is_remote(path):
        try:
            return os.path.getmtime(path)
        except OSError:  # a link whose target is gone: its own time (loading it then fails and falls back)
            return os.lstat(path).st_mtime if os.path.lexists(path) else 0.0
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
            # torch's message mentions `weights_only` for any failure; only its refusals mean "unsafe".
            text = str(e)
            if not any(marker in text for marker in _REFUSALS):
                raise CheckpointError(
                    f"Checkpoint {name} could not be unpickled ({_first_line(text)}): the file is probably"
                    " truncated or corrupt. Use an earlier checkpoint, or `ckpt_path='last'` to fall back to one."
                ) from e
            raise UnsafeCheckpointError(
                f"Checkpoint {name} was refused: it contains Python objects that safe loading does not allow"
                f" ({_first_line(text)}). Loading them could run arbitrary code. If you trust the file, pass"
                " `weights_only=False` (e.g. `Model.load_from_checkpoint(path, weights_only=False)` or"
                " `trainer.fit(model, ckpt_path=path, weights_only=False)`)."
            ) from e


# Phrases of torch's weights-only unpickler when it refuses something (a global, a class, an opcode).
_REFUSALS = ("Unsupported global", "unsupported GLOBAL", "Unsupported operand", "Unsupported class", "Can only build",
             "Can only create", "is blocked", "not an allowed global", "Trying to instantiate")  # fmt: skip


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
    """The line of torch's long message that says what was refused (else its first line)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if any(marker in line for marker in (*_REFUSALS, "GLOBAL")):
            return line
    return lines[0] if lines else text


def _default_map_location(storage: Any, location: str) -> Any:
    """Keep devices unless the saved one is not available here (then load to CPU), as Lightning does."""
    if location.startswith("cuda") and not torch.cuda.is_available():
        return storage.cpu()
    if location.startswith("mps") and not torch.backends.mps.is_available():
        return storage.cpu()
    if location.startswith("xla"):
        return storage.cpu()
    return None
