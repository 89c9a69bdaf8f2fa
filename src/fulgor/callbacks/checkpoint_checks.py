"""ModelCheckpoint's checks before the first training step: the `save_last` value, the `filename` template, the
checkpoint folder (not a file, writable) and hyperparameters that every checkpoint must be able to pickle."""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from typing import Any

import torch

from fulgor import fs
from fulgor.callbacks.checkpoint_naming import fill_template
from fulgor.errors import MisconfigurationException

__all__ = ["check_filename", "check_save_last", "check_triggers", "folder_problem", "unpicklable_hparams_message"]

_SAVE_LAST_VALUES = (None, False, True, "link")


def check_save_last(value: Any) -> None:
    """Refuse a `save_last` that is none of None, False, True, "link" (any other truthy value would silently act
    as True).

    Raises:
        MisconfigurationException: naming the value and the accepted ones.
    """
    if not any(value is choice or (isinstance(choice, str) and value == choice) for choice in _SAVE_LAST_VALUES):
        raise MisconfigurationException(
            f"`ModelCheckpoint(save_last={value!r})` is not a valid value. Use `save_last=True` (write `last.ckpt`),"
            " `save_last='link'` (make `last.ckpt` a link to the latest checkpoint), or `False`/`None` (no"
            " `last.ckpt`)."
        )


def check_triggers(callback: Any) -> None:
    """Lightning's checks of `save_top_k`, `every_n_train_steps`, `every_n_epochs`, `train_time_interval` and
    `monitor`, with its messages.

    Raises:
        MisconfigurationException: a negative value, two triggers at once, or `save_top_k > 1` without a monitor.
    """
    steps, epochs, interval = callback._every_n_train_steps, callback._every_n_epochs, callback._train_time_interval
    if callback.save_top_k < -1:
        raise MisconfigurationException(f"Invalid value for save_top_k={callback.save_top_k}. Must be >= -1")
    if steps < 0:
        raise MisconfigurationException(f"Invalid value for every_n_train_steps={steps}. Must be >= 0")
    if epochs < 0:
        raise MisconfigurationException(f"Invalid value for every_n_epochs={epochs}. Must be >= 0")
    if (steps >= 1) + (epochs >= 1) + (interval is not None) > 1:
        raise MisconfigurationException(
            f"Combination of parameters every_n_train_steps={steps}, every_n_epochs={epochs} and"
            f" train_time_interval={interval} should be mutually exclusive."
        )
    if callback.monitor is None and callback.save_top_k not in (-1, 0, 1):
        raise MisconfigurationException(
            f"ModelCheckpoint(save_top_k={callback.save_top_k}, monitor=None) is not a valid"
            " configuration. No quantity for top_k to track."
        )


def check_filename(template: str | None, auto_insert_metric_name: bool, equals: str) -> None:
    """Fill `template` once with dummy values, so that a malformed one fails now rather than at the first save.

    Raises:
        MisconfigurationException: the template cannot be formatted (e.g. an unbalanced brace).
    """
    if not template:
        return
    try:
        fill_template(template, {}, auto_insert_metric_name, equals)
    except (ValueError, KeyError, IndexError, AttributeError, TypeError) as e:
        raise MisconfigurationException(
            f"`ModelCheckpoint(filename={template!r})` is not a valid file name template ({type(e).__name__}: {e})."
            " Put each metric name in one pair of braces, optionally with a format, e.g."
            " `filename='{epoch}-{val_loss:.2f}'`; write a literal brace as `{{` or `}}`."
        ) from e


def folder_problem(dirpath: str) -> str | None:
    """Why checkpoints cannot be written into `dirpath` (None when they can, or when only a save can tell: URLs).

    Nothing is created: the nearest existing folder on the way must be a writable directory.
    """
    if fs.is_remote(dirpath):
        return None
    existing = dirpath
    while existing and not os.path.exists(existing):
        parent = os.path.dirname(existing)
        if parent == existing:
            break
        existing = parent
    if not os.path.isdir(existing):
        which = "is a file" if existing == dirpath else f"is under {existing!r}, which is a file"
        return (
            f"`ModelCheckpoint(dirpath={dirpath!r})` {which}, not a directory: no checkpoint can be saved there."
            " Pass a folder path as `dirpath` (or as the Trainer's `default_root_dir`), or move that file."
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == dirpath else f" ({existing!r}, where it would be created)"
        return (
            f"`ModelCheckpoint(dirpath={dirpath!r})` is not writable{where}: no checkpoint can be saved there. Pass"
            " a writable folder as `dirpath` (or as the Trainer's `default_root_dir`), or fix its permissions."
        )
    return None


def unpicklable_hparams_message(owner: Any) -> str | None:
    """Why the hyperparameters of `owner` (a LightningModule or LightningDataModule) cannot go into a checkpoint, or
    None. Every value is pickled once into nothing; tensors are not copied."""
    hparams = getattr(owner, "hparams", None) if owner is not None else None
    if not isinstance(hparams, Mapping) or not hparams:
        return None
    found = _unpicklable(hparams, "")
    if found is None:
        return None
    key, error = found
    top = key.split("[", 1)[0]
    return (
        f"The hyperparameter {key!r} of `{type(owner).__name__}` cannot be saved in a checkpoint: {error}. Every"
        f" checkpoint stores the hyperparameters, so none could be written. Exclude it with"
        f" `self.save_hyperparameters(ignore=[{top!r}])`, or pass a picklable value (e.g. its configuration instead"
        " of the object)."
    )


def _unpicklable(values: Mapping[Any, Any], prefix: str) -> tuple[str, Exception] | None:
    for key, value in values.items():
        name = f"{prefix}[{key!r}]" if prefix else str(key)
        try:
            _Probe(_Discard(), protocol=2).dump(value)  # torch.save's protocol
        except Exception as e:  # pickling raises TypeError, PicklingError, AttributeError, RecursionError ...
            if isinstance(value, Mapping):  # name the innermost key
                inner = _unpicklable(value, name)
                if inner is not None:
                    return inner
            return name, e
    return None


class _Discard:
    def write(self, data: bytes) -> int:
        return len(data)


class _Probe(pickle.Pickler):
    """Pickles like `torch.save` does for everything but tensors, which it stores apart (so they are skipped)."""

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, (torch.Tensor, torch.UntypedStorage, torch.TypedStorage)):
            return ("tensor", id(obj))
        return None
