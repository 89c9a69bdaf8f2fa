"""Checkpoints: the dict in Lightning's layout and key order, atomic writes, safe loads, resolving `ckpt_path`, and
restoring a run (weights before setup ends, training state after `on_fit_start`) and `load_from_checkpoint`."""

from __future__ import annotations

import argparse
import contextlib
import enum
import errno
import glob
import hashlib
import inspect
import json
import os
import pathlib
import pickle
import re
import sys
import time
import uuid
from typing import Any, TypeVar

import torch
from torch import Tensor

from fulgor import fs
from fulgor.errors import MisconfigurationException
from fulgor.hparams import AttributeDict, load_hparams_from_yaml
from fulgor.rank import rank_zero_info, rank_zero_warn

__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "UnsafeCheckpointError",
    "atomic_save",
    "build_checkpoint",
    "last_save_seconds",
    "read_extra",
    "verify_integrity",
    "load_checkpoint_file",
    "load_datamodule_from_checkpoint",
    "load_module_from_checkpoint",
    "restore_before_setup",
    "restore_training_state",
    "save_trainer_checkpoint",
    "select_ckpt_path",
]

# The layout version written under "pytorch-lightning_version": Lightning migrates checkpoints older than its own
# version, so fulgor writes the Lightning version whose layout it produces.
FORMAT_VERSION = "2.6.6"
VERSION_KEY = "pytorch-lightning_version"
_PAST_HPARAMS_KEYS = ("hparams", "module_arguments")  # 0.7.x names of `hyper_parameters`
_SAFE_TYPES: list[Any] = [argparse.Namespace, AttributeDict, pathlib.PosixPath, pathlib.WindowsPath,
                          pathlib.PurePosixPath, pathlib.PureWindowsPath]  # fmt: skip
T = TypeVar("T")


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be read or does not fit the model."""


class UnsafeCheckpointError(CheckpointError, pickle.UnpicklingError):
    """The file needs arbitrary unpickling, which safe loading refuses."""


# ---------------------------------------------------------------------------------------------------------------------
# reading and writing files


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


def _value(member: Any) -> Any:
    """The plain value of a str enum member (`TrainerFn.FITTING` -> "fit"), None stays None."""
    return getattr(member, "value", member)


def _default_map_location(storage: Any, location: str) -> Any:
    """Keep devices unless the saved one is not available here (then load to CPU), as Lightning does."""
    if location.startswith("cuda") and not torch.cuda.is_available():
        return storage.cpu()
    if location.startswith("mps") and not torch.backends.mps.is_available():
        return storage.cpu()
    if location.startswith("xla"):
        return storage.cpu()
    return None


# ---------------------------------------------------------------------------------------------------------------------
# building the dict


def save_trainer_checkpoint(trainer: Any, filepath: Any, weights_only: bool | None, storage_options: Any) -> None:
    """`Trainer.save_checkpoint`: build the dict (running the save hooks on every rank) and commit it on rank 0."""
    if getattr(trainer, "lightning_module_", None) is None:
        raise AttributeError(
            "Saving a checkpoint is only possible if a model is attached to the Trainer. Did you call"
            " `Trainer.save_checkpoint()` before calling `Trainer.{fit,validate,test,predict}`?"
        )
    if storage_options is not None:
        raise TypeError(
            f"`Trainer.save_checkpoint(..., storage_options={storage_options!r})` is not supported: fulgor writes"
            " local files only. Remove `storage_options`."
        )
    if weights_only is None:
        weights_only = False
        rank_zero_info("`weights_only` was not set, defaulting to `False`.")
    checkpoint = build_checkpoint(trainer, weights_only)
    from fulgor.trainer import resume

    extra = None if weights_only else resume.capture(trainer)  # exact-resume state, beside Lightning's keys
    if trainer.is_global_zero:
        atomic_save(checkpoint, filepath, None if extra is None else {resume.RESUME_KEY: extra})
    trainer.strategy.barrier()


def build_checkpoint(trainer: Any, weights_only: bool) -> dict[str, Any]:
    """The checkpoint dict, keys in Lightning's order, with the hooks in Lightning's order."""
    module = trainer.lightning_module
    datamodule = trainer.datamodule
    checkpoint: dict[str, Any] = {
        "epoch": trainer.current_epoch,
        "global_step": trainer.global_step,
        VERSION_KEY: FORMAT_VERSION,
        "state_dict": _module_state(trainer, module),
        "loops": build_loops(trainer),
    }
    if not weights_only:
        checkpoint["callbacks"] = {cb.state_key: s for cb in trainer.callbacks if (s := cb.state_dict())}
        checkpoint["optimizer_states"] = [_optimizer_state(trainer, opt) for opt in trainer.optimizers]
        checkpoint["lr_schedulers"] = [config.scheduler.state_dict() for config in trainer.lr_scheduler_configs]
        precision_state = trainer.precision_plugin.state_dict()
        if precision_state:
            checkpoint[trainer.precision_plugin.checkpoint_key] = precision_state
    for obj in (module, datamodule):
        _dump_hparams(obj, checkpoint)
    if datamodule is not None:
        dm_state = datamodule.state_dict()
        if dm_state:
            checkpoint[type(datamodule).__qualname__] = dm_state
    from fulgor.trainer.dispatch import call_hook

    if weights_only:  # Lightning calls only the module's hook for weights-only checkpoints
        module.on_save_checkpoint(checkpoint)
    else:
        call_hook(trainer, "on_save_checkpoint", checkpoint)
    return checkpoint


def _module_state(trainer: Any, module: Any) -> dict[str, Any]:
    # A sharding strategy (FSDP) gathers the full state dict; the others hold it whole in the module.
    gather = getattr(getattr(trainer, "strategy", None), "lightning_module_state_dict", None)
    return gather() if gather is not None else module.state_dict()  # type: ignore[no-any-return]


def _optimizer_state(trainer: Any, optimizer: Any) -> dict[str, Any]:
    gather = getattr(getattr(trainer, "strategy", None), "optimizer_state", None)
    return gather(optimizer) if gather is not None else optimizer.state_dict()  # type: ignore[no-any-return]


def _dump_hparams(obj: Any, checkpoint: dict[str, Any]) -> None:
    if obj is None:
        return
    hparams = obj.__dict__.get("_hparams")
    if not hparams:
        return
    if hasattr(obj, "_hparams_name"):
        checkpoint[obj.CHECKPOINT_HYPER_PARAMS_NAME] = obj._hparams_name
    checkpoint[obj.CHECKPOINT_HYPER_PARAMS_KEY] = dict(hparams)


def _progress(n_ready: int, n_started: int, n_processed: int, n_completed: int) -> dict[str, int]:
    return {"ready": n_ready, "started": n_started, "processed": n_processed, "completed": n_completed}


def _both(counts: dict[str, int], current: dict[str, int] | None = None) -> dict[str, dict[str, int]]:
    return {"total": dict(counts), "current": dict(current if current is not None else counts)}


def _epoch_phase(trainer: Any) -> str:
    """Where the fit is when saving: "boundary" (between epochs), "end" (in on_train_epoch_end), or "inside"."""
    state = trainer.state
    if _value(state.fn) != "fit" or _value(state.status) != "running":
        return "boundary"
    fx = trainer.lightning_module._current_fx_name
    if fx == "on_train_epoch_end":
        return "end"
    if _value(state.stage) in ("train", "validate") and fx not in _OUTSIDE_EPOCH_HOOKS:
        return "inside"
    return "boundary"


_OUTSIDE_EPOCH_HOOKS = frozenset({"on_train_start", "on_train_end", "on_fit_start", "on_fit_end", "teardown", "setup"})


def build_loops(trainer: Any) -> dict[str, Any]:
    """Lightning's nested `loops` progress, computed from `trainer.state` (Lightning resumes from it)."""
    state = trainer.state
    phase = _epoch_phase(trainer)
    epoch = state.epoch
    if phase == "boundary":
        epochs = _progress(epoch, epoch, epoch, epoch)
    elif phase == "end":
        epochs = _progress(epoch + 1, epoch + 1, epoch + 1, epoch)
    else:
        epochs = _progress(epoch + 1, epoch + 1, epoch, epoch)
    # In on_train_batch_end the batch is processed but `batch_idx` has not moved yet (Lightning: processed > completed).
    in_batch_end = phase == "inside" and trainer.lightning_module._current_fx_name == "on_train_batch_end"
    done, total = state.batch_idx, state.total_batch_idx
    extra = 1 if in_batch_end else 0
    batches = {
        "total": _progress(total + extra, total + extra, total + extra, total),
        "current": _progress(done + extra, done + extra, done + extra, done),
        "is_last_batch": bool(state.is_last_batch),
    }
    automatic = trainer.lightning_module.automatic_optimization
    steps = (state.global_step, _steps_this_epoch(trainer))
    auto = [n if automatic else 0 for n in steps]
    manual = [0 if automatic else n for n in steps]
    step_counts = _two({"ready": auto[0], "completed": auto[0]}, {"ready": auto[1], "completed": auto[1]})
    zero_grad = _two({"ready": auto[0], "completed": auto[0], "started": auto[0]},
                     {"ready": auto[1], "completed": auto[1], "started": auto[1]})  # fmt: skip
    manual_counts = _two({"ready": manual[0], "completed": manual[0]}, {"ready": manual[1], "completed": manual[1]})
    val_seen = state.val_batches_seen
    val_current = min(val_seen, int(sum(_finite(n) for n in _num_val(trainer))))
    return {
        "fit_loop": {
            "state_dict": {},
            "epoch_progress": _both(epochs),
            "epoch_loop.state_dict": {"_batches_that_stepped": state.batches_that_stepped},
            "epoch_loop.batch_progress": batches,
            "epoch_loop.scheduler_progress": _scheduler_progress(trainer, epochs["processed"]),
            "epoch_loop.automatic_optimization.state_dict": {},
            "epoch_loop.automatic_optimization.optim_progress": {
                "optimizer": {"step": step_counts, "zero_grad": zero_grad}
            },
            "epoch_loop.manual_optimization.state_dict": {},
            "epoch_loop.manual_optimization.optim_step_progress": manual_counts,
            "epoch_loop.val_loop.state_dict": {},
            "epoch_loop.val_loop.batch_progress": {
                "total": _progress(val_seen, val_seen, val_seen, val_seen),
                "current": _progress(val_current, val_current, val_current, val_current),
                "is_last_batch": val_seen > 0,
            },
        },
        "validate_loop": _eval_loop_progress(),
        "test_loop": _eval_loop_progress(),
        "predict_loop": {"state_dict": {}, "batch_progress": _both(_progress(0, 0, 0, 0))},
    }


def _two(total: dict[str, int], current: dict[str, int]) -> dict[str, dict[str, int]]:
    return {"total": total, "current": current}


def _steps_this_epoch(trainer: Any) -> int:
    """Optimizer steps taken in the current epoch (every `accumulate_grad_batches` batches and at the last one)."""
    state = trainer.state
    accumulate = int(getattr(trainer, "accumulate_grad_batches", 1))
    done = int(state.batch_idx)
    return done // accumulate + (1 if state.is_last_batch and done % accumulate else 0)


def _eval_loop_progress() -> dict[str, Any]:
    return {"state_dict": {}, "batch_progress": {**_both(_progress(0, 0, 0, 0)), "is_last_batch": False}}


def _num_val(trainer: Any) -> list[int | float]:
    try:
        return list(trainer.num_val_batches)
    except Exception:
        return []


def _finite(n: int | float) -> int | float:
    return 0 if n == float("inf") else n


def _scheduler_progress(trainer: Any, epochs: int) -> dict[str, dict[str, int]]:
    """Scheduler updates in the fit (`total`) and this epoch (`current`); Lightning only reports these."""
    intervals = {getattr(config, "interval", "epoch") for config in trainer.lr_scheduler_configs}
    state = trainer.state
    by_step, by_epoch = "step" in intervals, "epoch" in intervals
    total = (state.global_step if by_step else 0) + (epochs if by_epoch else 0)
    current = (state.batch_idx if by_step else 0) + (1 if by_epoch and state.is_last_batch else 0)
    return {"total": {"ready": total, "completed": total}, "current": {"ready": current, "completed": current}}


# ---------------------------------------------------------------------------------------------------------------------
# ckpt_path resolution


def select_ckpt_path(trainer: Any, fn: str, ckpt_path: Any, model_provided: bool) -> Any:
    """For validate/test/predict: `ckpt_path=None` without a model after a fit means "best", with Lightning's warning.

    Call before attaching the model; returns the `ckpt_path` to pass on.
    """
    if ckpt_path is None and not model_provided and getattr(trainer, "lightning_module_", None) is not None:
        rank_zero_warn(
            f"`.{fn}(ckpt_path=None)` was called without a model. The best model of the previous `fit` call will be"
            f" used. You can pass `.{fn}(ckpt_path='best')` to use the best model or `.{fn}(ckpt_path='last')` to use"
            " the last model. If you pass a value, this warning will be silenced."
        )
        return "best"
    return ckpt_path


def resolve_ckpt_path(trainer: Any, ckpt_path: Any) -> str | None:
    """Turn "best", "last", "hpc" or a path into a file path (None: "last" found nothing), with Lightning's errors."""
    fn = _value(trainer.state.fn)
    if ckpt_path == "best":
        return _best_path(trainer, fn)
    if ckpt_path == "last":
        return _last_path(trainer, fn)
    if ckpt_path == "hpc":
        found = _hpc_path(trainer.default_root_dir)
        if found is None:
            raise ValueError(
                f'`.{fn}(ckpt_path="hpc")` is set but no HPC checkpoint was found.'
                f" Please pass an exact checkpoint path to `.{fn}(ckpt_path=...)`"
            )
        return found
    if not ckpt_path:
        raise ValueError(
            f"`.{fn}()` found no path for the best weights: {ckpt_path!r}. Please"
            f" specify a path for a checkpoint `.{fn}(ckpt_path=PATH)`"
        )
    return str(os.fspath(ckpt_path))


def _best_path(trainer: Any, fn: str) -> str:
    callbacks = trainer.checkpoint_callbacks
    if len(callbacks) > 1:
        rank_zero_warn(
            f'`.{fn}(ckpt_path="best")` is called with Trainer configured with multiple `ModelCheckpoint`'
            " callbacks. It will use the best checkpoint path from first checkpoint callback."
        )
    if not callbacks:
        raise ValueError(f'`.{fn}(ckpt_path="best")` is set but `ModelCheckpoint` is not configured.')
    best = callbacks[0].best_model_path
    if not best:
        if trainer.fast_dev_run:
            raise ValueError(
                f'You cannot execute `.{fn}(ckpt_path="best")` with `fast_dev_run=True`.'
                f" Please pass an exact checkpoint path to `.{fn}(ckpt_path=...)`"
            )
        raise ValueError(
            f'`.{fn}(ckpt_path="best")` is set but `ModelCheckpoint` is not configured to save the best model.'
        )
    return str(best)


def _last_path(trainer: Any, fn: str) -> str | None:
    candidates: set[str] = set()
    for callback in trainer.checkpoint_callbacks:
        candidates |= callback._find_last_checkpoints(trainer)
    if not candidates:
        # Lightning stops here; with the default logger a new run has a new version_N folder, so the previous run's
        # last.ckpt is in a sibling folder: look there too.
        candidates = _last_in_earlier_versions(trainer)
        if candidates:
            found = max(candidates, key=_mtime)
            rank_zero_info(
                f'`.{fn}(ckpt_path="last")`: this run\'s checkpoint folder has no last checkpoint; using the newest'
                f" one of an earlier run: {found}"
            )
            return found
        rank_zero_warn(
            f'.{fn}(ckpt_path="last") is set, but there is no last checkpoint available.'
            " No checkpoint will be loaded. HINT: Set `ModelCheckpoint(..., save_last=True)`."
        )
        return None
    return max(candidates, key=_mtime)


def _last_in_earlier_versions(trainer: Any) -> set[str]:
    """`last*.ckpt` in `<save_dir>/<name>/version_*/checkpoints` for callbacks whose folder comes from the logger."""
    if not trainer.loggers:
        return set()
    logger = trainer.loggers[0]
    root = os.path.join(logger.save_dir or trainer.default_root_dir, str(logger.name))
    found: set[str] = set()
    for callback in trainer.checkpoint_callbacks:
        if getattr(callback, "_dirpath_from_user", True):
            continue
        for path in _version_checkpoints(root):
            if re.match(r"^last(-(\d+))?$", pathlib.Path(path).stem):
                found.add(path if fs.is_remote(path) else os.path.normpath(path))
    return found


def _version_checkpoints(root: str) -> list[str]:
    """The files matching `<root>/*/checkpoints/*.ckpt` (a URL's folders are listed through fsspec)."""
    if not fs.is_remote(root):
        return glob.glob(os.path.join(glob.escape(root), "*", "checkpoints", "*.ckpt"))
    folders = [fs.join(root, version, "checkpoints") for version in fs.listdir(root) if not version.startswith(".")]
    return [fs.join(folder, name) for folder in folders for name in fs.listdir(folder) if name.endswith(".ckpt")]


def _hpc_path(root: str) -> str | None:
    if not fs.isdir(root):
        return None
    versions = [int(m.group(1)) for name in fs.listdir(root) if (m := re.fullmatch(r"hpc_ckpt_(\d+)\.ckpt", name))]
    return fs.join(root, f"hpc_ckpt_{max(versions)}.ckpt") if versions else None


# ---------------------------------------------------------------------------------------------------------------------
# restoring a run


def restore_before_setup(trainer: Any, ckpt_path: Any, weights_only: bool | None) -> dict[str, Any] | None:
    """Load `ckpt_path` and restore module weights, datamodule and callback states (Lightning's order and messages).

    Returns the checkpoint when fitting (for `restore_training_state`), else None.
    """
    path = resolve_ckpt_path(trainer, ckpt_path)
    trainer._ckpt_path = path  # the path loaded (not a user request: that is `trainer.ckpt_path = ...`)
    if path is None:
        return None
    path, checkpoint = _load_verified(trainer, ckpt_path, path, weights_only)
    trainer._ckpt_path = path
    module = trainer.lightning_module
    _call_module_hook(module, "on_load_checkpoint", checkpoint)
    _load_weights(module, checkpoint, path, module.strict_loading)
    datamodule = trainer.datamodule
    if datamodule is not None and type(datamodule).__qualname__ in checkpoint:
        datamodule.load_state_dict(checkpoint[type(datamodule).__qualname__])
    _restore_callbacks(trainer, checkpoint)
    if _value(trainer.state.fn) == "fit":
        return checkpoint
    rank_zero_info(f"Loaded model weights from the checkpoint at {path}")
    return None


def _load_verified(trainer: Any, requested: Any, path: str, weights_only: bool | None) -> tuple[str, dict[str, Any]]:
    """Load `path` after its integrity check. For "last"/"hpc", a damaged file is moved aside (never deleted) with a
    warning and the next newest checkpoint of the same folder is tried; an explicit path fails with the error."""
    if requested not in ("last", "hpc"):
        rank_zero_info(f"Restoring states from the checkpoint path at {path}")
        verify_integrity(path)
        return path, _with_extra(path, load_checkpoint_file(path, weights_only=weights_only))
    moved: list[str] = []
    for candidate in [path, *_older_checkpoints(path)]:
        rank_zero_info(f"Restoring states from the checkpoint path at {candidate}")
        try:
            verify_integrity(candidate)
            return candidate, _with_extra(candidate, load_checkpoint_file(candidate, weights_only=weights_only))
        except UnsafeCheckpointError:
            raise
        except (CheckpointError, FileNotFoundError) as e:
            aside = _move_aside(candidate) if trainer.is_global_zero else candidate
            moved.append(aside)
            rank_zero_warn(
                f"Checkpoint {candidate!r} cannot be used: {e} It was moved to {aside!r} (not deleted);"
                " falling back to the previous checkpoint."
            )
    raise CheckpointError(
        f'`ckpt_path="{requested}"` found no usable checkpoint: the damaged files were moved to {moved}. Pass'
        " `ckpt_path=None` to train from scratch."
    )


def _with_extra(path: str, checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Add fulgor's resume record (stored beside the dict in the file) under its key, for `restore_training_state`."""
    from fulgor.trainer import resume

    extra = read_extra(path)
    if extra is not None and resume.RESUME_KEY in extra:
        checkpoint[resume.RESUME_KEY] = extra[resume.RESUME_KEY]
    return checkpoint


def _older_checkpoints(path: str) -> list[str]:
    """The other `.ckpt` files in `path`'s folder, newest first."""
    if fs.is_remote(path):
        folder = path.rstrip("/").rsplit("/", 1)[0]
        names = [fs.join(folder, n) for n in fs.listdir(folder) if n.endswith(".ckpt")]
        return sorted((p for p in names if p != path and not fs.isdir(p)), key=_mtime, reverse=True)
    folder = os.path.dirname(path)
    found = [os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".ckpt")]
    others = [p for p in found if os.path.normpath(p) != os.path.normpath(path) and os.path.isfile(p)]
    return sorted(others, key=os.path.getmtime, reverse=True)


def _move_aside(path: str) -> str:
    """Rename a damaged checkpoint to `<name>.corrupt[-N]` (no longer matched by `*.ckpt`), with its sidecar."""
    target, n = f"{path}.corrupt", 1
    if fs.is_remote(path):
        while fs.exists(target):
            target, n = f"{path}.corrupt-{n}", n + 1
        try:
            fs.get_filesystem(path).mv(path, target)
        except OSError:
            return path
        return target
    while os.path.lexists(target):
        target, n = f"{path}.corrupt-{n}", n + 1
    try:
        os.replace(path, target)
    except OSError:
        return path
    if os.path.exists(_sidecar(path)):
        os.replace(_sidecar(path), _sidecar(target))
    return target


def _call_module_hook(module: Any, name: str, *args: Any) -> None:
    previous, module._current_fx_name = module._current_fx_name, name
    try:
        getattr(module, name)(*args)
    finally:
        module._current_fx_name = previous


def _load_weights(module: Any, checkpoint: dict[str, Any], path: str, strict: bool) -> None:
    try:
        keys = module.load_state_dict(checkpoint["state_dict"], strict=strict)
    except RuntimeError as e:
        raise CheckpointError(
            f"The weights in {path!r} do not fit `{type(module).__name__}` (a checkpoint of another model or"
            f" configuration?):\n{e}"
        ) from e
    if not strict:
        _warn_keys(keys)


def _warn_keys(keys: Any) -> None:
    if keys.missing_keys:
        rank_zero_warn(f"Found keys that are in the model state dict but not in the checkpoint: {keys.missing_keys}")
    if keys.unexpected_keys:
        rank_zero_warn(f"Found keys that are not in the model state dict but in the checkpoint: {keys.unexpected_keys}")


def _restore_callbacks(trainer: Any, checkpoint: dict[str, Any]) -> None:
    module = trainer.lightning_module
    from fulgor.callbacks.callback import Callback
    from fulgor.module import is_overridden

    for callback in trainer.callbacks:
        if is_overridden("on_load_checkpoint", callback, Callback):
            callback.on_load_checkpoint(trainer, module, checkpoint)
    states = checkpoint.get("callbacks")
    if not states:
        return
    present = {cb.state_key for cb in trainer.callbacks}
    missing = [key for key in states if key not in present and not isinstance(key, type)]
    if missing:
        rank_zero_warn(
            "Be aware that when using `ckpt_path`, callbacks used to create the checkpoint need to be provided during"
            f" `Trainer` instantiation. Please add the following callbacks: {missing}.",
        )
    for callback in trainer.callbacks:
        state = states.get(callback.state_key, states.get(callback._legacy_state_key))
        if state:
            callback.load_state_dict(dict(state))


def restore_training_state(trainer: Any, checkpoint: dict[str, Any]) -> None:
    """Precision state, loop counters, optimizers and schedulers (after `on_fit_start` and hparams logging)."""
    plugin = trainer.precision_plugin
    if plugin.checkpoint_key in checkpoint:
        plugin.load_state_dict(checkpoint[plugin.checkpoint_key])
    _restore_counters(trainer, checkpoint)
    if "optimizer_states" not in checkpoint:
        raise KeyError(
            "Trying to restore optimizer state but checkpoint contains only the model."
            " This is probably due to `ModelCheckpoint.save_weights_only` being set to `True`."
        )
    # FSDP shards a full optimizer state; the other strategies load it as it is.
    load = getattr(getattr(trainer, "strategy", None), "load_optimizer_state", None)
    for optimizer, state in zip(trainer.optimizers, checkpoint["optimizer_states"]):
        load(optimizer, state) if load is not None else optimizer.load_state_dict(state)
    if "lr_schedulers" not in checkpoint:
        raise KeyError(
            "Trying to restore learning rate scheduler state but checkpoint contains only the model."
            " This is probably due to `ModelCheckpoint.save_weights_only` being set to `True`."
        )
    for config, state in zip(trainer.lr_scheduler_configs, checkpoint["lr_schedulers"]):
        config.scheduler.load_state_dict(state)
    rank_zero_info(f"Restored all states from the checkpoint at {trainer.ckpt_path}")


def _restore_counters(trainer: Any, checkpoint: dict[str, Any]) -> None:
    state = trainer.state
    from fulgor.trainer import resume

    point = checkpoint.get(resume.RESUME_KEY)
    if isinstance(point, dict) and point.get("format") == 1:
        resume.restore(trainer, point)  # exact: the epoch in progress continues where it stopped
        _check_max_epochs(trainer)
        return
    fit = checkpoint.get("loops", {}).get("fit_loop")
    if fit is None:  # very old checkpoints: only the top-level counters
        state.epoch, state.global_step = int(checkpoint.get("epoch", 0)), int(checkpoint.get("global_step", 0))
        return
    state.epoch = _resume_epoch(fit)
    optim = fit["epoch_loop.automatic_optimization.optim_progress"]["optimizer"]["step"]["total"]["completed"]
    manual = fit["epoch_loop.manual_optimization.optim_step_progress"]["total"]["completed"]
    state.global_step = int(optim if trainer.lightning_module.automatic_optimization else manual)
    state.batches_that_stepped = int(fit["epoch_loop.state_dict"].get("_batches_that_stepped", state.global_step))
    state.total_batch_idx = int(fit["epoch_loop.batch_progress"]["total"]["processed"])
    state.val_batches_seen = int(fit["epoch_loop.val_loop.batch_progress"]["total"]["completed"])
    _check_max_epochs(trainer)


def _check_max_epochs(trainer: Any) -> None:
    state = trainer.state
    max_epochs = trainer.max_epochs
    if max_epochs is not None and max_epochs != -1 and state.epoch > max_epochs:
        raise MisconfigurationException(
            f"You restored a checkpoint with current_epoch={state.epoch},"
            f" but you have set Trainer(max_epochs={max_epochs})."
        )


def _resume_epoch(fit: dict[str, Any]) -> int:
    """The epoch to start: the next one after an epoch-end checkpoint; see docs/checkpointing.md for mid-epoch."""
    epochs = fit["epoch_progress"]["current"]
    batches = fit["epoch_loop.batch_progress"]
    if epochs["processed"] > epochs["completed"]:
        return int(epochs["processed"])  # saved in on_train_epoch_end
    if epochs["started"] <= epochs["processed"]:
        return int(epochs["completed"])  # saved between epochs
    done = batches["current"]["processed"]
    if done == 0:
        return int(epochs["completed"])  # nothing of the epoch ran yet: run it whole
    if batches.get("is_last_batch"):
        return int(epochs["completed"]) + 1  # every batch ran (e.g. saved after the epoch's last validation)
    rank_zero_warn(
        "You're resuming from a checkpoint that ended before the epoch ended and your dataloader is not resumable."
        " This can cause unreliable results if further training is done. Consider using an end-of-epoch checkpoint"
        " or make your dataloader resumable by implementing the `state_dict` / `load_state_dict` interface."
        f" fulgor resumes at the start of epoch {int(epochs['completed']) + 1}: the remaining batches of epoch"
        f" {epochs['completed']} (after batch {done}) are skipped."
    )
    return int(epochs["completed"]) + 1


# ---------------------------------------------------------------------------------------------------------------------
# load_from_checkpoint


def load_module_from_checkpoint(
    cls: type[T],
    checkpoint_path: Any,
    map_location: Any = None,
    hparams_file: Any = None,
    strict: bool | None = None,
    weights_only: bool | None = None,
    **kwargs: Any,
) -> T:
    """`LightningModule.load_from_checkpoint`: build `cls` from the stored hparams (then `hparams_file`, then `kwargs`)
    and load the weights; the model is moved to the device of the stored tensors and left in training mode."""
    checkpoint = _checkpoint_for_class(cls, checkpoint_path, map_location, hparams_file, weights_only, kwargs)
    model: Any = _instantiate(cls, checkpoint, kwargs)
    if model._strict_loading is not None and strict is not None and strict != model.strict_loading:
        raise ValueError(
            f"You set `.load_from_checkpoint(..., strict={strict!r})` which is in conflict with"
            f" `{cls.__name__}.strict_loading={model.strict_loading!r}. Please set the same value for both of them."
        )
    strict = model.strict_loading if strict is None else strict
    from fulgor.module import is_overridden

    if is_overridden("configure_model", model):
        model.configure_model()
    model.on_load_checkpoint(checkpoint)
    _load_weights(model, checkpoint, _display(checkpoint_path), bool(strict))
    state_dict = checkpoint["state_dict"]
    if not state_dict:
        rank_zero_warn(f"The state dict in {_display(checkpoint_path)!r} contains no parameters.")
        return model  # type: ignore[no-any-return]
    device = next((t.device for t in state_dict.values() if isinstance(t, Tensor)), torch.device("cpu"))
    return model.to(device)  # type: ignore[no-any-return]


def load_datamodule_from_checkpoint(
    cls: type[T], checkpoint_path: Any, map_location: Any = None, hparams_file: Any = None,
    weights_only: bool | None = None, **kwargs: Any,
) -> T:  # fmt: skip
    """`LightningDataModule.load_from_checkpoint`: build `cls` from the stored datamodule hparams and state."""
    checkpoint = _checkpoint_for_class(cls, checkpoint_path, map_location, hparams_file, weights_only, kwargs)
    datamodule: Any = _instantiate(cls, checkpoint, kwargs)
    if type(datamodule).__qualname__ in checkpoint:
        datamodule.load_state_dict(checkpoint[type(datamodule).__qualname__])
    return datamodule  # type: ignore[no-any-return]


def _display(path: Any) -> str:
    return os.fspath(path) if isinstance(path, (str, os.PathLike)) else repr(path)


def _checkpoint_for_class(
    cls: Any, path: Any, map_location: Any, hparams_file: Any, weights_only: bool | None, kwargs: dict[str, Any]
) -> dict[str, Any]:
    checkpoint = load_checkpoint_file(path, map_location, weights_only)
    key = cls.CHECKPOINT_HYPER_PARAMS_KEY
    if hparams_file is not None:
        extension = str(hparams_file).rsplit(".", 1)[-1].lower()
        if extension == "csv":
            checkpoint[key] = _load_hparams_csv(hparams_file)
        elif extension in ("yml", "yaml"):
            checkpoint[key] = load_hparams_from_yaml(hparams_file)
        else:
            raise ValueError(".csv, .yml or .yaml is required for `hparams_file`")
    checkpoint.setdefault(key, {})
    checkpoint[key].update(kwargs)
    return checkpoint


def _load_hparams_csv(path: Any) -> dict[str, Any]:
    """Lightning's `tags.csv` (`key,value` rows; values parsed as YAML scalars)."""
    import csv

    import yaml

    if not fs.exists(path) or fs.isdir(path):
        rank_zero_warn(f"Missing Tags: {path}.", category=RuntimeWarning)
        return {}
    with fs.open(path, "r", newline="") as file:
        rows = list(csv.DictReader(file))
    return {row["key"]: yaml.safe_load(row["value"]) for row in rows}


def _instantiate(cls: Any, checkpoint: dict[str, Any], new_kwargs: dict[str, Any]) -> Any:
    """Call `cls(...)` with the stored hparams: passed whole as one argument when `hparams_name` names one."""
    signature = inspect.signature(cls.__init__)
    params = list(signature.parameters.values())[1:]
    takes_var_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    names = [p.name for p in params if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]
    loaded: dict[str, Any] = {}
    key = cls.CHECKPOINT_HYPER_PARAMS_KEY
    if key in checkpoint:
        if key == "hyper_parameters":
            for old in _PAST_HPARAMS_KEYS:
                loaded.update(checkpoint.get(old, {}))
        loaded.update(checkpoint.get(key, {}))
        args_name = checkpoint.get(cls.CHECKPOINT_HYPER_PARAMS_NAME)
        if args_name and args_name in names:
            loaded = {args_name: loaded}
    kwargs = {**loaded, **new_kwargs}
    if not takes_var_kwargs:
        kwargs = {k: v for k, v in kwargs.items() if k in names}
    return cls(**kwargs)
