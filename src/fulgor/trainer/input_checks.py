"""Early checks of user input: the Trainer's flags (types, ranges, consistency, callbacks/loggers being instances,
writable folders) when the Trainer is built, naming the argument, the value and the fix (checks Lightning makes itself
keep its messages in config.py/parts.py); and a note when a training dataloader yields `None`."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from numbers import Integral
from typing import Any

from fulgor.callbacks.callback import Callback
from fulgor.errors import ConfigurationTypeError, MisconfigurationException, PossibleUserWarning
from fulgor.rank import rank_zero_warn

__all__ = ["check_flags", "check_writable_folder", "warn_none_batch"]

# name -> (lowest allowed value, whether None is allowed, what the value means): integer flags.
_INTS: dict[str, tuple[int, bool, str]] = {
    "max_epochs": (-(2**62), True, "an int >= 0, -1 (no limit) or None"),  # its range: Lightning's check
    "min_epochs": (0, True, "an int >= 0 or None"),
    "min_steps": (0, True, "an int >= 0 or None"),
    "log_every_n_steps": (0, True, "an int >= 0 (0: no step logging) or None (50)"),
    "reload_dataloaders_every_n_epochs": (0, False, "an int >= 0"),
}
_BOOLS_OR_NONE = ("enable_checkpointing", "enable_progress_bar", "enable_model_summary", "benchmark")
_BOOLS = (
    "inference_mode",
    "use_distributed_sampler",
    "detect_anomaly",
    "barebones",
    "sync_batchnorm",
    "enable_autolog_hparams",
)


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _invalid(name: str, value: Any, expected: str, example: str | None = None) -> str:
    fix = f" For example `Trainer({name}={example})`." if example is not None else ""
    return f"`Trainer({name}={value!r})` is invalid: `{name}` must be {expected}.{fix}"


def _int_example(value: Any) -> str | None:
    """`"5"` → `5`, `5.0` → `5`: the fix when the value is a whole number of the wrong type."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return str(int(number)) if math.isfinite(number) and number == int(number) else None


def check_flags(flags: dict[str, Any]) -> None:
    """Raise on the first invalid flag (TypeError for a wrong type, MisconfigurationException for a wrong value).

    Args:
        flags: the Trainer's arguments by name (as `Trainer.__init__` received them).
    """
    _check_ints(flags)
    _check_bools(flags)
    _check_fast_dev_run(flags["fast_dev_run"])
    _check_num_sanity_val_steps(flags["num_sanity_val_steps"])
    _check_order(flags)
    _check_clip_value(flags["gradient_clip_val"])
    _check_callbacks(flags["callbacks"])
    _check_loggers(flags["logger"])
    root = flags["default_root_dir"]
    if root is not None:
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(_invalid("default_root_dir", root, "a folder path (str or os.PathLike) or None"))
        if "://" not in os.fspath(root):  # a remote URL (s3://...) is the filesystem library's to check
            check_writable_folder(os.path.expanduser(os.fspath(root)), "default_root_dir")


def _check_ints(flags: dict[str, Any]) -> None:
    for name, (lowest, none_ok, expected) in _INTS.items():
        value = flags[name]
        if value is None and none_ok:
            continue
        if not _is_int(value):
            if name == "reload_dataloaders_every_n_epochs":  # Lightning's exception and sentence, then fulgor's help
                message = _invalid(name, value, expected, _int_example(value))
                raise ConfigurationTypeError(f"`{name}` should be an int >= 0, got {value}. {message}")
            raise TypeError(_invalid(name, value, expected, _int_example(value)))
        if value < lowest:
            if name == "reload_dataloaders_every_n_epochs":  # Lightning's own message
                raise MisconfigurationException(f"`{name}` should be an int >= 0, got {value}.")
            raise MisconfigurationException(_invalid(name, value, expected))


def _check_bools(flags: dict[str, Any]) -> None:
    for name in (*_BOOLS_OR_NONE, *_BOOLS):
        value = flags[name]
        if not isinstance(value, bool) and not (value is None and name in _BOOLS_OR_NONE):
            allowed = "True, False or None" if name in _BOOLS_OR_NONE else "True or False"
            raise TypeError(_invalid(name, value, allowed))


def _check_fast_dev_run(value: Any) -> None:
    if not isinstance(value, bool) and not _is_int(value):
        raise TypeError(_invalid("fast_dev_run", value, "a bool or an int >= 0 (the number of batches)"))


def _check_num_sanity_val_steps(value: Any) -> None:
    if value is None or value == math.inf or (_is_int(value) and value >= -1):
        return
    expected = "an int >= 0, -1 (every batch) or None (2)"
    if _is_int(value):
        raise MisconfigurationException(_invalid("num_sanity_val_steps", value, expected))
    raise TypeError(_invalid("num_sanity_val_steps", value, expected, _int_example(value)))


def _check_order(flags: dict[str, Any]) -> None:
    """min_epochs <= max_epochs and min_steps <= max_steps, when both are set and the maximum is a limit."""
    for low, high, unlimited in (("min_epochs", "max_epochs", -1), ("min_steps", "max_steps", -1)):
        lo, hi = flags[low], flags[high]
        if _is_int(lo) and _is_int(hi) and hi != unlimited and lo > hi:
            raise MisconfigurationException(
                f"`Trainer({low}={lo}, {high}={hi})` is invalid: `{low}` is greater than `{high}`, so the run could"
                f" never stop at its minimum. Lower `{low}` or raise `{high}` (or pass `{high}=-1` for no limit)."
            )


def _check_clip_value(value: Any) -> None:
    # Lightning's own type check (a TypeError) is in config.py; a negative clip would reverse the gradients' direction.
    if (_is_int(value) or isinstance(value, float)) and (value < 0 or math.isnan(value)):
        raise MisconfigurationException(
            _invalid("gradient_clip_val", value, "a number >= 0 (0 or None: no clipping)", "1.0")
        )


def _describe(item: Any) -> str:
    return f"the class `{item.__name__}`" if isinstance(item, type) else f"{type(item).__name__} {item!r}"


def _check_callbacks(callbacks: Any) -> None:
    if callbacks is None or isinstance(callbacks, Callback):
        return
    if isinstance(callbacks, type) or not isinstance(callbacks, Iterable) or isinstance(callbacks, (str, bytes)):
        items = [callbacks]
    else:
        items = list(callbacks)
    for item in items:
        if isinstance(item, Callback):
            continue
        if isinstance(item, type) and issubclass(item, Callback):
            raise TypeError(
                f"`Trainer(callbacks=...)` received {_describe(item)} instead of an instance: pass"
                f" `callbacks=[{item.__name__}(...)]`."
            )
        raise TypeError(
            f"`Trainer(callbacks=...)` received {_describe(item)}, which is not a `Callback`: pass a `Callback`"
            " instance or a list of them (e.g. `callbacks=[EarlyStopping(monitor='val_loss')]`)."
        )


def _check_loggers(logger: Any) -> None:
    if logger is None or isinstance(logger, bool):
        return
    items = list(logger) if isinstance(logger, Iterable) and not isinstance(logger, (str, bytes, type)) else [logger]
    if isinstance(logger, (str, bytes)):
        items = [logger]
    for item in items:
        if isinstance(item, (str, bytes, type, bool, int, float)) or not hasattr(item, "log_metrics"):
            name = f"{item.__name__}(save_dir=...)" if isinstance(item, type) else "CSVLogger(save_dir='logs')"
            raise TypeError(
                f"`Trainer(logger=...)` received {_describe(item)}: pass a logger instance such as `{name}`, a list"
                " of them, True (the default logger) or False (none)."
            )
        save_dir = getattr(item, "save_dir", None)
        if isinstance(save_dir, (str, os.PathLike)) and "://" not in os.fspath(save_dir):  # local folders only
            check_writable_folder(os.fspath(save_dir), f"{type(item).__name__}(save_dir")


def check_writable_folder(path: str, argument: str) -> None:
    """Refuse a folder that cannot be created or written: it is a file, or sits under a file or a read-only folder.

    Args:
        path: the folder (it may not exist yet).
        argument: how the user passed it, for the message: ``"default_root_dir"`` or ``"CSVLogger(save_dir"``.
    """
    shown = f"`{argument}={path!r}{')' if '(' in argument else ''}`"
    if os.path.exists(path) and not os.path.isdir(path):
        raise MisconfigurationException(f"{shown} is a file, not a folder: pass a folder path (created if missing).")
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise MisconfigurationException(
            f"{shown} cannot be created: {existing!r} is a file. Pass a folder path under a folder."
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise MisconfigurationException(
            f"{shown} is not writable ({existing!r} is read-only for this user): pass a folder you can write to."
        )


def warn_none_batch(epoch: int) -> None:
    """A training dataloader yielded `None` (often a `collate_fn` or `__getitem__` that returns nothing): a warning
    (shown once per epoch by Python's default filter), not an error: `training_step` may skip such batches on purpose.
    """
    rank_zero_warn(
        f"train_dataloader yielded None. If this was on purpose, ignore this warning. (In epoch {epoch},"
        " the batch is skipped: no `training_step`, `on_train_batch_end` gets `outputs=None`.) Check that your"
        " Dataset's `__getitem__` and your `collate_fn` return the samples.",
        category=PossibleUserWarning,
    )
