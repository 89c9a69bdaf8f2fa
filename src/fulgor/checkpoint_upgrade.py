"""Upgrading old Lightning checkpoints to the 2.x layout fulgor reads and writes: `migrate_checkpoint` (the key
migrations of Lightning 0.10 -> 2.0, applied in version order, in place), `pl_legacy_patch` (old pickled Lightning
names resolvable while loading) and `main`, the `upgrade_checkpoint` command. A 2.x checkpoint gets no migration: only
its version key is brought up to date."""

from __future__ import annotations

import argparse
import glob
import importlib
import pickle
import re
import shutil
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from fulgor import compat
from fulgor.callbacks.early_stopping import EarlyStopping
from fulgor.callbacks.model_checkpoint import ModelCheckpoint
from fulgor.enums import LightningEnum
from fulgor.errors import PossibleUserWarning
from fulgor.lightning_paths import LIGHTNING_VERSION
from fulgor.rank import log, rank_zero_warn

__all__ = ["main", "migrate_checkpoint", "pl_legacy_patch"]

Checkpoint = dict[str, Any]
VERSION_KEY = "pytorch-lightning_version"
LEGACY_VERSION_KEY = "legacy_pytorch-lightning_version"
_FIT = "fit_loop"
_ARGPARSE_ALIAS = "pytorch_lightning.utilities.argparse"
_ENUMS_ALIAS = "pytorch_lightning.utilities.enums"


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text.split("+")[0])[:3])


# ---------------------------------------------------------------------------------------------------------------- 0.10
_RENAMED_CALLBACK_KEYS = {
    "checkpoint_callback_best_model_score": (ModelCheckpoint, "best_model_score"),
    "checkpoint_callback_best_model_path": (ModelCheckpoint, "best_model_path"),
    "checkpoint_callback_best": (ModelCheckpoint, "best_model_score"),
    "early_stop_callback_wait": (EarlyStopping, "wait_count"),
    "early_stop_callback_patience": (EarlyStopping, "patience"),
}


def _migrate_model_checkpoint_early_stopping(checkpoint: Checkpoint) -> Checkpoint:
    """0.10: top-level ModelCheckpoint/EarlyStopping keys moved into `callbacks[<callback class>]`."""
    callbacks = checkpoint["callbacks"] = checkpoint.get("callbacks") or {}
    for old_key, (callback_type, new_key) in _RENAMED_CALLBACK_KEYS.items():
        if old_key in checkpoint:
            state = callbacks[callback_type] = callbacks.get(callback_type) or {}
            state[new_key] = checkpoint.pop(old_key)
    return checkpoint


# ----------------------------------------------------------------------------------------------------------------- 1.6
def _counts(*fields: str) -> dict[str, dict[str, int]]:
    return {"current": dict.fromkeys(fields, 0), "total": dict.fromkeys(fields, 0)}


def _initial_fit_loop_1_6() -> dict[str, Any]:
    """The fit loop state 1.6 saved for a run that had not started (the progress counters all zero)."""
    batch = {**_counts("completed", "processed", "ready", "started"), "is_last_batch": False}
    return {
        "epoch_loop.batch_loop.manual_loop.optim_step_progress": _counts("completed", "ready"),
        "epoch_loop.batch_loop.manual_loop.state_dict": {},
        "epoch_loop.batch_loop.optimizer_loop.optim_progress": {
            "optimizer": {
                "step": _counts("completed", "ready"),
                "zero_grad": _counts("completed", "ready", "started"),
            },
            "optimizer_position": 0,
        },
        "epoch_loop.batch_loop.optimizer_loop.state_dict": {},
        "epoch_loop.batch_loop.state_dict": {},
        "epoch_loop.batch_progress": batch,
        "epoch_loop.scheduler_progress": _counts("completed", "ready"),
        "epoch_loop.state_dict": {"_batches_that_stepped": 0},
        "epoch_loop.val_loop.dataloader_progress": _counts("completed", "ready"),
        "epoch_loop.val_loop.epoch_loop.batch_progress": {
            **_counts("completed", "processed", "ready", "started"),
            "is_last_batch": False,
        },
        "epoch_loop.val_loop.epoch_loop.state_dict": {},
        "epoch_loop.val_loop.state_dict": {},
        "epoch_progress": _counts("completed", "processed", "ready", "started"),
        "state_dict": {},
    }


def _fit_loop(checkpoint: Checkpoint) -> dict[str, Any]:
    loops = checkpoint.setdefault("loops", {_FIT: _initial_fit_loop_1_6()})
    fit_loop: dict[str, Any] = loops.setdefault(_FIT, _initial_fit_loop_1_6())
    return fit_loop


def _migrate_loop_global_step_to_progress_tracking(checkpoint: Checkpoint) -> Checkpoint:
    """1.6: the global step is read from the optimizer progress counters (a saved loop state overrides it)."""
    fit_loop, step = _fit_loop(checkpoint), checkpoint["global_step"]
    fit_loop["epoch_loop.batch_loop.optimizer_loop.optim_progress"]["optimizer"]["step"]["total"]["completed"] = step
    fit_loop["epoch_loop.batch_loop.manual_loop.optim_step_progress"]["total"]["completed"] = step
    return checkpoint


def _migrate_loop_current_epoch_to_progress_tracking(checkpoint: Checkpoint) -> Checkpoint:
    """1.6: the epoch is read from the epoch progress counter."""
    _fit_loop(checkpoint)["epoch_progress"]["current"]["completed"] = checkpoint["epoch"]
    return checkpoint


def _migrate_loop_batches_that_stepped(checkpoint: Checkpoint) -> Checkpoint:
    """1.6.5: the epoch loop counts the batches that stepped (the logging step); older runs: the global step."""
    checkpoint["loops"][_FIT]["epoch_loop.state_dict"].setdefault("_batches_that_stepped", checkpoint["global_step"])
    return checkpoint


# ----------------------------------------------------------------------------------------------------------------- 1.9
def _migrate_model_checkpoint_save_on_train_epoch_end_default(checkpoint: Checkpoint) -> Checkpoint:
    """1.9: `save_on_train_epoch_end` left ModelCheckpoint's state key; old keys lose it (unless that merges two)."""
    if "callbacks" not in checkpoint:
        return checkpoint
    pattern = re.compile(r", 'save_on_train_epoch_end': (None|True|False)")
    states = checkpoint["callbacks"]
    renamed = {
        (pattern.sub("", key) if key.startswith("ModelCheckpoint") else key): state
        for key, state in states.items()
        if isinstance(key, str)
    }
    if len(renamed) < len(states):
        rank_zero_warn(
            "You have multiple `ModelCheckpoint` callback states in this checkpoint, but we found state keys that would"
            " end up colliding with each other after an upgrade, which means we can't differentiate which of your"
            " checkpoint callbacks needs which states. At least one of your `ModelCheckpoint` callbacks will not be"
            " able to reload the state.",
            PossibleUserWarning,
        )
        return checkpoint
    checkpoint["callbacks"] = renamed
    return checkpoint


# ----------------------------------------------------------------------------------------------------------------- 2.0
def _drop_apex_amp_state(checkpoint: Checkpoint) -> Checkpoint:
    """2.0: apex AMP is gone; its state is dropped."""
    if "amp_scaling_state" in checkpoint:
        rank_zero_warn("This checkpoint contains apex AMP data, but apex support has been removed in v2.0.0.")
        del checkpoint["amp_scaling_state"]
    return checkpoint


def _rename_keys(loop: dict[str, Any], renames: dict[str, str]) -> None:
    for old, new in renames.items():
        if old in loop:
            loop[new] = loop.pop(old)


def _migrate_loop_structure_after_tbptt_removal(checkpoint: Checkpoint) -> Checkpoint:
    """2.0: without truncated backprop there is no batch loop; its optimizer and manual loops move up a level."""
    fit_loop = checkpoint.get("loops", {}).get(_FIT)
    if fit_loop is None:
        return checkpoint
    old, new = "epoch_loop.batch_loop.", "epoch_loop."
    nested = (
        "manual_loop.optim_step_progress",
        "manual_loop.state_dict",
        "optimizer_loop.optim_progress",
        "optimizer_loop.state_dict",
    )
    _rename_keys(fit_loop, {old + key: new + key for key in nested})
    batch_loop_state = fit_loop.pop(old + "state_dict", None)
    if batch_loop_state:
        fit_loop["epoch_loop.state_dict"]["old_batch_loop_state_dict"] = batch_loop_state
    return checkpoint


def _migrate_loop_structure_after_optimizer_loop_removal(checkpoint: Checkpoint) -> Checkpoint:
    """2.0: automatic optimization has one optimizer, so no optimizer loop (nor its position); the loops are named
    after the optimization mode."""
    fit_loop = checkpoint.get("loops", {}).get(_FIT)
    if fit_loop is None:
        return checkpoint
    if "epoch_loop.optimizer_loop.optim_progress" in fit_loop:
        fit_loop["epoch_loop.optimizer_loop.optim_progress"].pop("optimizer_position", None)
    if "epoch_loop.optimizer_loop.state_dict" in fit_loop:
        _rename_keys(
            fit_loop,
            {
                "epoch_loop.optimizer_loop.state_dict": "epoch_loop.automatic_optimization.state_dict",
                "epoch_loop.optimizer_loop.optim_progress": "epoch_loop.automatic_optimization.optim_progress",
            },
        )
    if "epoch_loop.manual_loop.state_dict" in fit_loop:
        _rename_keys(
            fit_loop,
            {
                "epoch_loop.manual_loop.state_dict": "epoch_loop.manual_optimization.state_dict",
                "epoch_loop.manual_loop.optim_step_progress": "epoch_loop.manual_optimization.optim_step_progress",
            },
        )
    return checkpoint


def _migrate_loop_structure_after_dataloader_loop_removal(checkpoint: Checkpoint) -> Checkpoint:
    """2.0: the evaluation and prediction loops lost their per-dataloader level; `epoch_loop.` keys move up."""
    loops = checkpoint.get("loops", {})
    for name in ("predict_loop", "validate_loop", "test_loop"):
        loop = loops.get(name)
        if loop is None:
            continue
        loop.pop("dataloader_progress", None)
        prefix = "epoch_loop."
        loop.update({key[len(prefix) :]: loop.pop(key) for key in list(loop) if key.startswith(prefix)})
    return checkpoint


MIGRATIONS: dict[str, list[Callable[[Checkpoint], Checkpoint]]] = {
    "0.10.0": [_migrate_model_checkpoint_early_stopping],
    "1.6.0": [_migrate_loop_global_step_to_progress_tracking, _migrate_loop_current_epoch_to_progress_tracking],
    "1.6.5": [_migrate_loop_batches_that_stepped],
    "1.9.0": [_migrate_model_checkpoint_save_on_train_epoch_end_default],
    "2.0.0": [
        _drop_apex_amp_state,
        _migrate_loop_structure_after_tbptt_removal,
        _migrate_loop_structure_after_optimizer_loop_removal,
        _migrate_loop_structure_after_dataloader_loop_removal,
    ],
}


def get_version(checkpoint: Checkpoint) -> str:
    """The Lightning version a checkpoint says it was written with."""
    return str(checkpoint[VERSION_KEY])


def set_version(checkpoint: Checkpoint, version: str) -> None:
    """Record `version` as the checkpoint's Lightning version."""
    checkpoint[VERSION_KEY] = version


def set_legacy_version(checkpoint: Checkpoint, version: str) -> None:
    """Keep the version the checkpoint was first written with (the first one recorded stays)."""
    checkpoint.setdefault(LEGACY_VERSION_KEY, version)


def migrate_checkpoint(
    checkpoint: Checkpoint, target_version: str | None = None
) -> tuple[Checkpoint, dict[str, list[str]]]:
    """Apply, in place, every migration newer than the checkpoint's `pytorch-lightning_version`, then set that key to
    the version fulgor follows (the old one is kept under `legacy_pytorch-lightning_version`).

    Args:
        checkpoint: a loaded checkpoint dict.
        target_version: apply migrations only up to this version (inclusive).

    Returns:
        The checkpoint and, per migration version applied, the names of its migrations.
    """
    saved = get_version(checkpoint)
    if _version(saved) > _version(LIGHTNING_VERSION):
        rank_zero_warn(
            f"The loaded checkpoint was produced with Lightning v{saved}, which is newer than your current Lightning"
            f" version: v{LIGHTNING_VERSION}",
            PossibleUserWarning,
        )
        return checkpoint, {}
    applied: dict[str, list[str]] = {}
    for version, migrations in MIGRATIONS.items():
        too_new = target_version is not None and _version(version) > _version(target_version)
        if too_new or _version(get_version(checkpoint)) >= _version(version):
            continue
        for migration in migrations:
            checkpoint = migration(checkpoint)
        applied[version] = [migration.__name__ for migration in migrations]
    if saved != LIGHTNING_VERSION:
        set_legacy_version(checkpoint, saved)
    set_version(checkpoint, LIGHTNING_VERSION)
    return checkpoint, applied


class _FaultTolerantMode(LightningEnum):
    """An enum 1.x pickled into checkpoints (removed in 2.0)."""

    DISABLED = "disabled"
    AUTOMATIC = "automatic"
    MANUAL = "manual"


def _gpus_arg_default(value: Any) -> Any:
    """A function 1.2-era checkpoints pickled by reference (their hparams' argparse defaults)."""
    return value


class pl_legacy_patch:
    """While open, names that old checkpoints pickled by reference load: `pytorch_lightning.*` answered by fulgor (the
    import aliases, installed for the duration if they are not already), the removed `utilities.argparse_utils`
    module, `_gpus_arg_default` and `_FaultTolerantMode`.

    Example: `with pl_legacy_patch(): checkpoint = torch.load(path, weights_only=False)`.
    """

    _LEGACY_MODULE = "pytorch_lightning.utilities.argparse_utils"

    def __enter__(self) -> pl_legacy_patch:
        self._installed_here = not compat.is_installed()
        compat.install()
        legacy = types.ModuleType(self._LEGACY_MODULE)
        legacy._gpus_arg_default = _gpus_arg_default  # type: ignore[attr-defined]
        sys.modules[self._LEGACY_MODULE] = legacy
        # The alias modules (fulgor's, through the finder just installed) receive the removed names.
        importlib.import_module(_ARGPARSE_ALIAS)._gpus_arg_default = _gpus_arg_default  # type: ignore[attr-defined]
        importlib.import_module(_ENUMS_ALIAS)._FaultTolerantMode = _FaultTolerantMode  # type: ignore[attr-defined]
        return self

    def __exit__(self, *exc_info: object) -> None:
        sys.modules.pop(self._LEGACY_MODULE, None)
        for alias, name in ((_ARGPARSE_ALIAS, "_gpus_arg_default"), (_ENUMS_ALIAS, "_FaultTolerantMode")):
            module = sys.modules.get(alias)
            if module is not None and name in vars(module):
                delattr(module, name)
        if self._installed_here:
            compat.uninstall()


def _checkpoint_files(path: Path, extension: str) -> list[Path]:
    if path.is_file():
        return [path]
    return [Path(p) for p in sorted(glob.glob(str(path / "**" / f"*{extension}"), recursive=True))]


def upgrade(path: str | Path, extension: str = ".ckpt", map_to_cpu: bool = False) -> list[Path]:
    """Upgrade a checkpoint file, or every `*<extension>` file under a folder, in place; each original is first copied
    to `<name>.bak` (an existing backup is never overwritten).

    Returns:
        The files upgraded.

    Raises:
        FileNotFoundError: `path` does not exist or holds no such file.
    """
    root = Path(path).absolute()
    suffix = extension if extension.startswith(".") else f".{extension}"
    if not root.exists():
        raise FileNotFoundError(f"The path {root} does not exist: pass a checkpoint file or a folder of `*{suffix}`.")
    files = _checkpoint_files(root, suffix)
    if not files:
        raise FileNotFoundError(f"No checkpoint files with extension {suffix} were found in {root} (see --extension).")
    for file in files:
        backup = file.with_suffix(".bak")
        if not backup.exists():
            shutil.copyfile(file, backup)
    for file in files:
        with pl_legacy_patch():
            checkpoint = _load_for_upgrade(file, torch.device("cpu") if map_to_cpu else None)
        saved = checkpoint.get(VERSION_KEY)
        migrate_checkpoint(checkpoint)  # in place
        torch.save(checkpoint, file)
        log.info(f"{file}: upgraded from Lightning {saved} to the {LIGHTNING_VERSION} layout")
    return files


def _load_for_upgrade(file: Path, map_location: torch.device | None) -> Any:
    """The checkpoint, read safely (tensors and plain types) when it can be; old checkpoints often pickled other
    objects (hparams Namespaces, callback states), which the command the user pointed at their own files reads by
    full unpickling."""
    try:
        return torch.load(file, map_location=map_location)
    except pickle.UnpicklingError:
        return torch.load(file, map_location=map_location, weights_only=False)


def main(argv: list[str] | None = None) -> None:
    """`python -m pytorch_lightning.utilities.upgrade_checkpoint PATH [--extension .ckpt] [--map-to-cpu]`."""
    parser = argparse.ArgumentParser(
        description="Upgrade old Lightning checkpoints to the current layout (the originals are kept as *.bak)."
    )
    parser.add_argument("path", help="a checkpoint file, or a folder searched recursively")
    parser.add_argument("--extension", "-e", default=".ckpt", help="the extension of the files to upgrade in a folder")
    parser.add_argument("--map-to-cpu", action="store_true", help="load GPU tensors on the CPU")
    args = parser.parse_args(argv)
    try:
        upgrade(args.path, args.extension, args.map_to_cpu)
    except FileNotFoundError as error:
        log.error(str(error))
        sys.exit(1)
