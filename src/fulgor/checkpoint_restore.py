"""Resuming from a checkpoint: which file `ckpt_path` names ("best", "last", "hpc", a path), falling back past damaged
ones, and restoring a run from it (weights before setup ends, training state after `on_fit_start`)."""

from __future__ import annotations

import glob
import os
import pathlib
import re
from typing import TYPE_CHECKING, Any

from fulgor import fs
from fulgor.callbacks.callback import Callback
from fulgor.checkpoint_io import AsyncCheckpointIO, TorchCheckpointIO
from fulgor.checkpoint_loading import check_optimizer_state, load_weights
from fulgor.checkpointing import (
    CheckpointError,
    UnsafeCheckpointError,
    _mtime,
    read_extra,
    verify_integrity,
)
from fulgor.errors import MisconfigurationException
from fulgor.module import is_overridden
from fulgor.profiler_base import profile_section
from fulgor.rank import rank_zero_info, rank_zero_warn
from fulgor.trainer import resume
from fulgor.trainer.loop_progress import stale_counts
from fulgor.trainer.state import TrainerFn

if TYPE_CHECKING:
    from fulgor.trainer.run import Run

__all__ = [
    "restore_before_setup",
    "restore_training_state",
    "select_ckpt_path",
]


# ---------------------------------------------------------------------------------------------------------------------
# ckpt_path resolution


def select_ckpt_path(fn: str, ckpt_path: Any, model_provided: bool, has_model: bool, on_exception: bool) -> Any:
    """What `ckpt_path=None` means, with Lightning's warnings: in `fit` with an `OnExceptionCheckpoint` (`on_exception`)
    "last" (the run resumes from the file a crash left, or starts fresh when there is none); in validate/test/predict
    without a model after a fit, "best".

    Call before attaching the model (`has_model`: one is attached from an earlier run); returns the `ckpt_path` to
    pass on.
    """
    if ckpt_path is None and on_exception and fn == "fit":
        rank_zero_warn(
            f"`.{fn}(ckpt_path=None)` was called without a model. The last model of the previous `fit` call will be"
            f" used. You can pass `{fn}(ckpt_path='best')` to use the best model or `{fn}(ckpt_path='last')` to use"
            " the last model. If you pass a value, this warning will be silenced."
        )
        return "last"
    if ckpt_path is None and not model_provided and has_model:
        tip = " There is also an on-exception checkpoint available, however it is used by default only when fitting."
        rank_zero_warn(
            f"`.{fn}(ckpt_path=None)` was called without a model. The best model of the previous `fit` call will be"
            f" used.{tip if on_exception else ''} You can pass `.{fn}(ckpt_path='best')` to use the best model or"
            f" `.{fn}(ckpt_path='last')` to use the last model. If you pass a value, this warning will be silenced."
        )
        return "best"
    return ckpt_path


def resolve_ckpt_path(trainer: Any, fn: str, ckpt_path: Any) -> str | None:
    """Turn "best", "last", "hpc" or a path into a file path (None: "last" found nothing), with Lightning's errors."""
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


def restore_before_setup(run: Run, ckpt_path: Any, weights_only: bool | None) -> dict[str, Any] | None:
    """Load `ckpt_path` and restore module weights, datamodule and callback states (Lightning's order and messages);
    `run.ckpt_path` becomes the file loaded.

    Returns the checkpoint when fitting (for `restore_training_state`), else None.
    """
    path = resolve_ckpt_path(run.trainer, run.fn.value, ckpt_path)
    run.ckpt_path = path  # the path loaded (not a user request: that is `trainer.ckpt_path = ...`)
    if path is None:
        return None
    path, checkpoint = _load_verified(run, ckpt_path, path, weights_only)
    run.ckpt_path = path
    # The load hooks get Lightning's keys only; fulgor's resume record goes on to `restore_training_state`.
    record = checkpoint.pop(resume.RESUME_KEY, None)
    module = run.module
    _call_module_hook(module, "on_load_checkpoint", checkpoint)
    load_weights(module, checkpoint, path, module.strict_loading)
    datamodule = run.datamodule
    if datamodule is not None and type(datamodule).__qualname__ in checkpoint:
        action = f"[LightningDataModule]{type(datamodule).__name__}.load_state_dict"  # a profiler's name for it
        with profile_section(run.trainer.profiler if run.profiling else None, action):
            datamodule.load_state_dict(checkpoint[type(datamodule).__qualname__])
    _restore_callbacks(run, checkpoint)
    if run.fn == TrainerFn.FITTING:
        return checkpoint if record is None else {**checkpoint, resume.RESUME_KEY: record}
    rank_zero_info(f"Loaded model weights from the checkpoint at {path}")
    return None


def _load_verified(run: Run, requested: Any, path: str, weights_only: bool | None) -> tuple[str, dict[str, Any]]:
    """Load `path` after its integrity check. For "last"/"hpc", a damaged file is moved aside (never deleted) with a
    warning and the next newest checkpoint of the same folder is tried; an explicit path fails with the error."""
    if requested not in ("last", "hpc"):
        if _fulgor_files(run) and not fs.exists(path):
            raise FileNotFoundError(_not_found_message(run.trainer, path))
        rank_zero_info(f"Restoring states from the checkpoint path at {path}")
        return path, _load(run, path, weights_only)
    moved: list[str] = []
    for candidate in [path, *_older_checkpoints(path)]:
        rank_zero_info(f"Restoring states from the checkpoint path at {candidate}")
        try:
            return candidate, _load(run, candidate, weights_only)
        except UnsafeCheckpointError:
            raise
        except (CheckpointError, FileNotFoundError) as e:
            aside = _move_aside(candidate) if run.strategy.is_global_zero else candidate
            moved.append(aside)
            rank_zero_warn(
                f"Checkpoint {candidate!r} cannot be used: {e} It was moved to {aside!r} (not deleted);"
                " falling back to the previous checkpoint."
            )
    raise CheckpointError(
        f'`ckpt_path="{requested}"` found no usable checkpoint: the damaged files were moved to {moved}. Pass'
        " `ckpt_path=None` to train from scratch."
    )


def _fulgor_files(run: Run) -> bool:
    """Whether checkpoints are read by fulgor's own plugin (a user's CheckpointIO may store them anywhere, anyhow)."""
    io = run.strategy.checkpoint_io
    writer = io.checkpoint_io if isinstance(io, AsyncCheckpointIO) else io
    return isinstance(writer, TorchCheckpointIO)


def _load(run: Run, path: str, weights_only: bool | None) -> dict[str, Any]:
    """The checkpoint through the strategy's checkpoint IO (a user's plugin reads its own files); files of fulgor's
    own plugin are checked against their CRC-32s first and give fulgor's resume record too."""
    if not _fulgor_files(run) or os.path.isdir(path):  # a folder: a sharded (FSDP) checkpoint, read by the strategy
        return run.strategy.load_checkpoint(path, weights_only=weights_only)
    if not fs.exists(path) and not os.path.lexists(path):
        raise FileNotFoundError(f"Checkpoint file not found: {path}")
    verify_integrity(path)
    checkpoint = run.strategy.load_checkpoint(path, weights_only=weights_only)
    return _with_extra(path, checkpoint)


def _not_found_message(trainer: Any, path: str) -> str:
    """Lightning's first sentence, then the checkpoints that do exist near `path` and in this Trainer's checkpoint
    folders, newest first."""
    found = _nearby_checkpoints(trainer, path)
    message = f"Checkpoint file not found: {path}."
    if found:
        shown = ", ".join(found[:_SHOWN])
        more = f" (and {len(found) - _SHOWN} more)" if len(found) > _SHOWN else ""
        message += f" Checkpoints that exist nearby, newest first: {shown}{more}."
    else:
        message += " No checkpoint exists in its folder or in this Trainer's checkpoint folders."
    return message + ' Check the path, or pass `ckpt_path="last"` to resume from the newest last checkpoint.'


_SHOWN = 8


def _nearby_checkpoints(trainer: Any, path: str) -> list[str]:
    folders = [os.path.dirname(path) if not fs.is_remote(path) else path.rstrip("/").rsplit("/", 1)[0]]
    folders += [str(cb.dirpath) for cb in trainer.checkpoint_callbacks if getattr(cb, "dirpath", None)]
    folders.append(fs.join(trainer.default_root_dir, "checkpoints"))
    found = {fs.join(folder, name) for folder in folders if folder for name in _ckpt_names(folder)}
    if trainer.loggers:
        logger = trainer.loggers[0]
        found.update(_version_checkpoints(fs.join(logger.save_dir or trainer.default_root_dir, str(logger.name))))
    return sorted(found, key=_mtime, reverse=True)


def _ckpt_names(folder: str) -> list[str]:
    try:
        return [name for name in fs.listdir(folder) if name.endswith(".ckpt")]
    except OSError:
        return []


def _with_extra(path: str, checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Add fulgor's resume record (stored beside the dict in the file) under its key, for `restore_training_state`."""
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
    """Rename a damaged checkpoint to `<name>.corrupt[-N]` (no longer matched by `*.ckpt`, so neither `"last"` nor
    a script loading every `*.ckpt` of the folder picks it up again)."""
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
    return target


def _call_module_hook(module: Any, name: str, *args: Any) -> None:
    previous, module._current_fx_name = module._current_fx_name, name
    try:
        getattr(module, name)(*args)
    finally:
        module._current_fx_name = previous


def _restore_callbacks(run: Run, checkpoint: dict[str, Any]) -> None:
    trainer, module = run.trainer, run.module
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


def restore_training_state(run: Run, checkpoint: dict[str, Any]) -> None:
    """Precision state, loop counters, optimizers and schedulers (after `on_fit_start` and hparams logging)."""
    plugin = run.precision
    if plugin.checkpoint_key in checkpoint:
        plugin.load_state_dict(checkpoint[plugin.checkpoint_key])
    _restore_counters(run, checkpoint)
    if run.strategy.lightning_restore_optimizer:  # False: the strategy restores its optimizers itself
        _restore_optimizers(run, checkpoint)
    if "lr_schedulers" not in checkpoint:
        raise KeyError(
            "Trying to restore learning rate scheduler state but checkpoint contains only the model."
            " This is probably due to `ModelCheckpoint.save_weights_only` being set to `True`."
        )
    for config, state in zip(run.lr_scheduler_configs, checkpoint["lr_schedulers"]):
        config.scheduler.load_state_dict(state)
    rank_zero_info(f"Restored all states from the checkpoint at {run.ckpt_path}")


def _restore_optimizers(run: Run, checkpoint: dict[str, Any]) -> None:
    """Each saved optimizer state, checked against the optimizer it goes into, then loaded through the strategy's
    public hook `load_optimizer_state_dict` (a custom strategy may override it; FSDP shards the full states)."""
    if "optimizer_states" not in checkpoint:
        raise KeyError(
            "Trying to restore optimizer state but checkpoint contains only the model."
            " This is probably due to `ModelCheckpoint.save_weights_only` being set to `True`."
        )
    for index, (optimizer, state) in enumerate(zip(run.optimizers, checkpoint["optimizer_states"])):
        check_optimizer_state(optimizer, state, index, run.ckpt_path)
    run.strategy.load_optimizer_state_dict(checkpoint)


def _restore_counters(run: Run, checkpoint: dict[str, Any]) -> None:
    state = run.state
    point = checkpoint.get(resume.RESUME_KEY)
    fit = checkpoint.get("loops", {}).get("fit_loop")
    bump = _note_stale_counts(run, fit) if fit is not None else 0
    if fit is not None:  # the stateful training loaders' states (Lightning's), loaded once the loader exists
        run.loader_states = fit.get("state_dict", {}).get("combined_loader")
    if isinstance(point, dict) and point.get("format") == 1:
        counters = point["counters"]
        point = {**point, "counters": {**counters, "batches_that_stepped": counters["batches_that_stepped"] + bump}}
        resume.restore(run, point)  # exact: the epoch in progress continues where it stopped
        _check_max_epochs(run)
        return
    if fit is None:  # very old checkpoints: only the top-level counters
        state.epoch, state.global_step = int(checkpoint.get("epoch", 0)), int(checkpoint.get("global_step", 0))
        return
    state.epoch = _resume_epoch(fit)
    optim = fit["epoch_loop.automatic_optimization.optim_progress"]["optimizer"]["step"]["total"]["completed"]
    manual = fit["epoch_loop.manual_optimization.optim_step_progress"]["total"]["completed"]
    state.global_step = int(optim if run.module.automatic_optimization else manual)
    stepped = int(fit["epoch_loop.state_dict"].get("_batches_that_stepped", state.global_step))
    state.batches_that_stepped = stepped + bump
    state.total_batch_idx = int(fit["epoch_loop.batch_progress"]["total"]["processed"])
    state.val_batches_seen = int(fit["epoch_loop.val_loop.batch_progress"]["total"]["completed"])
    _check_max_epochs(run)


def _note_stale_counts(run: Run, fit: dict[str, Any]) -> int:
    """Keep what Lightning keeps of an `on_exception` checkpoint's interrupted batch in the totals it reports after
    the resume (`TrainerState.stale_counts`); return 1 where Lightning also counts that batch's logging step (it
    was a batch that steps the optimizer), else 0."""
    epochs = fit["epoch_progress"]["current"]
    stale = run.state.stale_counts = stale_counts(fit, int(epochs["completed"]))
    if not stale.get("batch_ready"):
        return 0
    batches = fit["epoch_loop.batch_progress"]
    accumulate = int(run.config.accumulate_grad_batches)
    return int(batches["current"]["ready"] % accumulate == 0 or bool(batches["is_last_batch"]))


def _check_max_epochs(run: Run) -> None:
    state = run.state
    max_epochs = run.config.max_epochs
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
