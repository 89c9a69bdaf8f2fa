"""TrainerConfig: the Trainer's flags validated once, in `Trainer.__init__`, into an immutable record (limits,
validation schedule, logging cadence, optimization and debugging flags). Changing a setting derives a new record."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any, NamedTuple

import torch

from fulgor.callbacks.timer import parse_duration
from fulgor.errors import MisconfigurationException, PossibleUserWarning
from fulgor.rank import rank_zero_info, rank_zero_warn
from fulgor.trainer.finite_guard import validate_mode
from fulgor.trainer.input_checks import check_flags

__all__ = ["TrainerConfig", "build_config", "determine_batch_limit"]


class TrainerConfig(NamedTuple):
    """Every Trainer flag that is a setting rather than a part (parts: strategy, precision, callbacks, loggers,
    profiler). Values are as the loops read them: limits resolved, `fast_dev_run` applied. Immutable: a changed
    setting is a new record (`config._replace(...)`). (A NamedTuple rather than a frozen dataclass: as fast to read,
    and built at import without generated code.)"""

    default_root_dir: str
    num_nodes: int = 1
    barebones: bool = False
    fast_dev_run: int | bool = False
    max_epochs: int | None = None
    min_epochs: int | None = None
    max_steps: int = -1
    min_steps: int | None = None
    max_time: Any = None
    limit_train_batches: int | float = 1.0
    limit_val_batches: int | float = 1.0
    limit_test_batches: int | float = 1.0
    limit_predict_batches: int | float = 1.0
    overfit_batches: int | float = 0.0
    val_check_interval: int | float = 1.0
    val_check_time_interval: float | None = None  # seconds, when `val_check_interval` is a duration
    check_val_every_n_epoch: int | None = 1
    num_sanity_val_steps: int | float = 2
    log_every_n_steps: int = 50
    accumulate_grad_batches: int = 1
    gradient_clip_val: int | float | None = None
    gradient_clip_algorithm: str | None = None
    deterministic: bool | str | None = None
    benchmark: bool | None = None
    inference_mode: bool = True
    use_distributed_sampler: bool = True
    reload_dataloaders_every_n_epochs: int = 0
    enable_autolog_hparams: bool = True
    detect_anomaly: bool = False
    non_finite: str = "error"  # fulgor's guard against NaN/inf training losses: "error", "warn" or "off"


def build_config(flags: dict[str, Any]) -> TrainerConfig:
    """Validate the flags (Lightning's messages) and build the config; prints Lightning's notes about them."""
    check_flags(flags)  # fulgor's early checks of every flag's type and range (input_checks.py)
    root = flags["default_root_dir"]
    config = TrainerConfig(
        default_root_dir=_root_dir(root),
        num_nodes=flags["num_nodes"],  # validated with the devices (trainer/parts.py)
        barebones=flags["barebones"],
        inference_mode=flags["inference_mode"],
        use_distributed_sampler=flags["use_distributed_sampler"],
        reload_dataloaders_every_n_epochs=flags["reload_dataloaders_every_n_epochs"],
        enable_autolog_hparams=flags["enable_autolog_hparams"],
        detect_anomaly=flags["detect_anomaly"],
        non_finite=validate_mode(flags.get("non_finite", "error")),
        **_determinism(flags["deterministic"], flags["benchmark"]),
        **_epochs_and_steps(flags),
        **_batch_limits(flags),
        **_validation_schedule(flags["val_check_interval"], flags["check_val_every_n_epoch"]),
        **_optimization(flags),
    )
    return _apply_fast_dev_run(config, flags["fast_dev_run"])


def apply_determinism(config: TrainerConfig) -> None:
    """Set torch's global determinism and cuDNN benchmark switches the config asks for."""
    deterministic = config.deterministic
    if deterministic is not None:
        if deterministic == "warn":
            torch.use_deterministic_algorithms(True, warn_only=True)
        else:
            torch.use_deterministic_algorithms(bool(deterministic))
        if deterministic:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
    if config.benchmark is not None:
        torch.backends.cudnn.benchmark = config.benchmark


def _determinism(deterministic: bool | str | None, benchmark: bool | None) -> dict[str, Any]:
    if deterministic is not None and deterministic != "warn" and not isinstance(deterministic, bool):
        raise ValueError(f"`Trainer(deterministic={deterministic!r})` is invalid: use True, False, 'warn' or None.")
    if deterministic and benchmark:
        rank_zero_warn(
            "You passed `deterministic=True` and `benchmark=True`. Note that PyTorch ignores"
            " torch.backends.cudnn.deterministic=True when torch.backends.cudnn.benchmark=True.",
        )
    if benchmark is None and deterministic:
        benchmark = False
    return {"deterministic": deterministic, "benchmark": benchmark}


def _root_dir(root: Any) -> str:
    """`default_root_dir` as Lightning reads it: the working directory when unset; a local path with `~` expanded
    and normalised (a remote URL such as s3://... as given)."""
    if not root:
        return os.getcwd()
    path: str = os.fspath(root)
    return path if "://" in path else os.path.normpath(os.path.expanduser(path))


def _epochs_and_steps(flags: dict[str, Any]) -> dict[str, Any]:
    max_steps, max_epochs = flags["max_steps"], flags["max_epochs"]
    if not isinstance(max_steps, int) or max_steps < -1:
        raise MisconfigurationException(
            f"`max_steps` must be a non-negative integer or -1 (infinite steps). You passed in {max_steps}."
        )
    if isinstance(max_epochs, int) and max_epochs < -1:
        raise MisconfigurationException(
            f"`max_epochs` must be a non-negative integer or -1. You passed in {max_epochs}."
        )
    return {
        "max_epochs": max_epochs,
        "min_epochs": flags["min_epochs"],
        "max_steps": max_steps,
        "min_steps": flags["min_steps"],
        "max_time": flags["max_time"],
    }


def _batch_limits(flags: dict[str, Any]) -> dict[str, Any]:
    overfit = determine_batch_limit(flags["overfit_batches"], "overfit_batches")
    limits: dict[str, Any] = {"overfit_batches": overfit}
    for stage in ("train", "val", "test", "predict"):
        name = f"limit_{stage}_batches"
        limits[name] = determine_batch_limit(flags[name], name)
    if overfit > 0:
        limits["limit_train_batches"] = limits["limit_val_batches"] = overfit
    sanity = flags["num_sanity_val_steps"]
    sanity = 2 if sanity is None else sanity
    limits["num_sanity_val_steps"] = float("inf") if sanity == -1 else sanity
    log_every = flags["log_every_n_steps"]
    limits["log_every_n_steps"] = 50 if log_every is None else log_every
    return limits


def _validation_schedule(interval: Any, every_n_epoch: int | None) -> dict[str, Any]:
    if every_n_epoch is not None and (not isinstance(every_n_epoch, int) or every_n_epoch < 1):
        raise MisconfigurationException(
            f"`check_val_every_n_epoch` should be an integer >= 1 or None, got {every_n_epoch!r}."
        )
    time_interval: float | None = None
    if isinstance(interval, (str, dict, timedelta)):
        duration = parse_duration(interval)
        assert duration is not None
        time_interval = duration.total_seconds()
        batch_interval: int | float = 1.0
    else:
        batch_interval = determine_batch_limit(interval, "val_check_interval")
    if every_n_epoch is None and not isinstance(batch_interval, int) and time_interval is None:
        raise MisconfigurationException(
            f"`val_check_interval` should be an integer when `check_val_every_n_epoch=None`, found {batch_interval!r}."
        )
    return {
        "check_val_every_n_epoch": every_n_epoch,
        "val_check_interval": batch_interval,
        "val_check_time_interval": time_interval,
    }


def _optimization(flags: dict[str, Any]) -> dict[str, Any]:
    accumulate = flags["accumulate_grad_batches"]
    if not isinstance(accumulate, int) or isinstance(accumulate, bool) or accumulate < 1:
        raise MisconfigurationException(
            f"`Trainer(accumulate_grad_batches={accumulate!r})` was passed, but it can only be an int > 0."
            " For a changing schedule use the `GradientAccumulationScheduler` callback."
        )
    clip_val = flags["gradient_clip_val"]
    if clip_val is not None and (isinstance(clip_val, bool) or not isinstance(clip_val, (int, float))):
        raise TypeError(f"`gradient_clip_val` should be an int or a float. Got {clip_val}.")
    algorithm = flags["gradient_clip_algorithm"]
    if algorithm is not None and algorithm.lower() not in ("norm", "value"):
        raise MisconfigurationException(
            f"`gradient_clip_algorithm` {algorithm} is invalid. Allowed algorithms: ['value', 'norm']."
        )
    return {
        "accumulate_grad_batches": accumulate,
        "gradient_clip_val": clip_val,
        "gradient_clip_algorithm": algorithm.lower() if algorithm is not None else None,
    }


def _apply_fast_dev_run(config: TrainerConfig, fast_dev_run: int | bool) -> TrainerConfig:
    """`fast_dev_run=n`: n batches of every stage, one epoch, no sanity check (loggers are swapped by the Trainer)."""
    if isinstance(fast_dev_run, int) and fast_dev_run < 0:
        raise MisconfigurationException(
            f"fast_dev_run={fast_dev_run!r} is not a valid configuration. It should be >= 0."
        )
    config = config._replace(fast_dev_run=True if fast_dev_run == 1 else fast_dev_run)
    if not fast_dev_run:
        return config
    n = int(fast_dev_run)
    train_val: dict[str, Any] = {} if config.overfit_batches else {"limit_train_batches": n, "limit_val_batches": n}
    rank_zero_info(
        f"Running in `fast_dev_run` mode: will run the requested loop using {n} batch(es)."
        " Logging and checkpointing is suppressed."
    )
    return config._replace(
        **train_val,
        limit_test_batches=n,
        limit_predict_batches=n,
        max_steps=n,
        num_sanity_val_steps=0,
        max_epochs=1,
        val_check_interval=1.0,
        val_check_time_interval=None,
        check_val_every_n_epoch=1,
    )


def fit_limits(config: TrainerConfig, has_timer: bool) -> TrainerConfig:
    """The epoch limits a fit runs with: `max_epochs=None` becomes 1000 (with Lightning's warning) unless steps or
    time bound the run, then -1; `min_epochs=None` becomes 1 when `min_steps` is set, else 0."""
    max_epochs, min_epochs = config.max_epochs, config.min_epochs
    if max_epochs is None:
        if config.max_steps == -1 and not has_timer:
            rank_zero_warn(
                "`max_epochs` was not set. Setting it to 1000 epochs. To train without an epoch limit,"
                " set `max_epochs=-1`.",
                PossibleUserWarning,
            )
            max_epochs = 1000
        else:
            max_epochs = -1
    if min_epochs is None:
        min_epochs = 1 if config.min_steps is not None else 0
    return config._replace(max_epochs=max_epochs, min_epochs=min_epochs)


def determine_batch_limit(value: int | float | None, name: str) -> int | float:
    """Validate a `limit_*_batches`/`overfit_batches`/`val_check_interval` value (None → 1.0)."""
    if value is None:
        return 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MisconfigurationException(
            f"You have passed invalid value {value!r} for {name}, it has to be in [0.0, 1.0] or an int."
        )
    _note_whole_limit(value, name)
    if 0 <= value <= 1:
        return value
    if value > 1 and value % 1.0 == 0:
        return int(value)
    raise MisconfigurationException(
        f"You have passed invalid value {value} for {name}, it has to be in [0.0, 1.0] or an int."
    )


def _note_whole_limit(value: int | float, name: str) -> None:
    """Lightning's info lines for a limit of exactly 1 (one batch) or 1.0 (every batch)."""
    if isinstance(value, int) and value == 1:
        what = {"limit_train_batches": "1 batch per epoch will be used", "val_check_interval": None}.get(
            name, "1 batch will be used"
        )
        rank_zero_info(
            f"`Trainer({name}=1)` was configured so "
            + ("validation will run after every batch." if what is None else f"{what}.")
        )
    elif isinstance(value, float) and value == 1.0:
        what = {
            "limit_train_batches": "100% of the batches per epoch will be used",
            "val_check_interval": "validation will run at the end of the training epoch",
        }.get(name, "100% of the batches will be used")
        rank_zero_info(f"`Trainer({name}=1.0)` was configured so {what}.")
