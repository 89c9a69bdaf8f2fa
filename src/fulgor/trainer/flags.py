"""Trainer flags before they become parts: `PL_TRAINER_<FLAG>` environment defaults, positional arguments,
`barebones` and the flags not implemented yet (refused by name, never silently ignored)."""

from __future__ import annotations

import ast
import inspect
import os
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from fulgor.argument_hints import unexpected_keyword
from fulgor.rank import rank_zero_info
from fulgor.trainer.removed_args import translate_removed_args

F = TypeVar("F", bound=Callable[..., Any])


def defaults_from_env_vars(init: F) -> F:
    """Map positional arguments to names, refuse unknown names (suggesting the closest flag) and fill unset flags from
    `PL_TRAINER_<NAME>` (literal-eval'd)."""
    names = [name for name in inspect.signature(init).parameters if name != "self"]
    valid = frozenset(names)

    @wraps(init)
    def wrapped(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(names):
            raise TypeError(f"Trainer() takes at most {len(names)} positional arguments but {len(args)} were given")
        kwargs = {**dict(zip(names, args)), **kwargs}
        kwargs, after_init = translate_removed_args(kwargs)  # 1.x arguments: translated with a note, or refused
        if not valid.issuperset(kwargs):  # Python's own error, with "Did you mean `max_epochs`?"
            raise unexpected_keyword("Trainer.__init__", next(k for k in kwargs if k not in valid), valid)
        env = env_defaults(names)
        init(self, **{**env, **kwargs})
        for name, value in after_init.items():
            setattr(self, name, value)

    return wrapped  # type: ignore[return-value]


def env_defaults(names: list[str]) -> dict[str, Any]:
    """The `PL_TRAINER_*` values set in the environment, parsed like Python literals (else kept as strings)."""
    values: dict[str, Any] = {}
    for name in names:
        raw = os.environ.get(f"PL_TRAINER_{name.upper()}")
        if not raw:
            continue
        try:
            values[name] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            values[name] = raw
    return values


_SPEED = "can impact raw speed so it is disabled in barebones mode."
_BAREBONES_CONFLICTS: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("enable_checkpointing", bool, f"Checkpointing {_SPEED}"),
    ("logger", lambda v: v is not None and v is not False, f"Logging {_SPEED}"),
    ("enable_progress_bar", bool, f"The progress bar {_SPEED}"),
    ("log_every_n_steps", lambda v: v not in (None, 0), f"Logging {_SPEED}"),
    ("enable_model_summary", bool, f"Model summary {_SPEED}"),
    ("num_sanity_val_steps", lambda v: v not in (None, 0), f"Sanity checking {_SPEED}"),
    (
        "fast_dev_run",
        lambda v: v is not False and v != 0,
        "Development run is not meant for raw speed evaluation so it is disabled in barebones mode.",
    ),
    ("detect_anomaly", bool, f"Anomaly detection {_SPEED}"),
    ("profiler", lambda v: v is not None, f"Profiling {_SPEED}"),
)

_BAREBONES_OFF = (
    " - Checkpointing: `Trainer(enable_checkpointing=True)`",
    " - Progress bar: `Trainer(enable_progress_bar=True)`",
    " - Model summary: `Trainer(enable_model_summary=True)`",
    " - Logging: `Trainer(logger=True)`, `Trainer(log_every_n_steps>0)`, `LightningModule.log(...)`,"
    " `LightningModule.log_dict(...)`",
    " - Sanity checking: `Trainer(num_sanity_val_steps>0)`",
    " - Development run: `Trainer(fast_dev_run=True)`",
    " - Anomaly detection: `Trainer(detect_anomaly=True)`",
    " - Profiling: `Trainer(profiler=...)`",
)


def apply_barebones(flags: dict[str, Any]) -> None:
    """`barebones=True` turns off everything that costs speed, and refuses flags that contradict it."""
    for name, conflicts, reason in _BAREBONES_CONFLICTS:
        if conflicts(flags[name]):
            raise ValueError(f"`Trainer(barebones=True, {name}={flags[name]!r})` was passed. {reason}")
    flags.update(
        enable_checkpointing=False,
        logger=False,
        enable_progress_bar=False,
        log_every_n_steps=0,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    rank_zero_info(
        "You are running in `Trainer(barebones=True)` mode. All features that may impact raw speed have been"
        " disabled to facilitate analyzing the Trainer overhead. Specifically, the following features are"
        f" deactivated:{os.linesep}{os.linesep.join(_BAREBONES_OFF)}"
    )


# Flags that are accepted by name but whose feature is built later: any non-default value is refused loudly.
NOT_YET: dict[str, tuple[Any, str]] = {
    "model_registry": (None, "the Lightning model registry (litmodels) is not supported"),
}


def refuse_unimplemented(flags: dict[str, Any]) -> None:
    """Raise NotImplementedError naming the first flag whose feature fulgor does not have yet."""
    for name, (default, why) in NOT_YET.items():
        if flags[name] != default:
            raise NotImplementedError(
                f"`Trainer({name}={flags[name]!r})` is not supported by fulgor yet: {why}."
                f" Remove the argument (or pass `{name}={default!r}`) to continue."
            )
