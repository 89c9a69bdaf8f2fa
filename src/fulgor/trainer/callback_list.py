"""The Trainer's callback list: user callbacks plus the defaults the flags ask for (Timer, progress bar, model
summary, checkpointing), ordered by each callback's `order` attribute, and merged with `configure_callbacks()`."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from fulgor.callbacks.callback import Callback
from fulgor.callbacks.checkpoint import Checkpoint
from fulgor.callbacks.model_checkpoint import ModelCheckpoint
from fulgor.callbacks.model_summary import ModelSummary
from fulgor.callbacks.progress import ProgressBar
from fulgor.callbacks.rich_model_summary import RichModelSummary
from fulgor.callbacks.rich_progress import RichProgressBar
from fulgor.callbacks.timer import Timer
from fulgor.callbacks.tqdm_progress import TQDMProgressBar
from fulgor.errors import MisconfigurationException
from fulgor.rank import rank_zero_info


def build_callbacks(
    callbacks: Callback | Sequence[Callback] | None,
    *,
    max_time: str | timedelta | dict[str, int] | None,
    enable_progress_bar: bool,
    enable_model_summary: bool,
    enable_checkpointing: bool,
) -> list[Callback]:
    """User callbacks first, then Timer, progress bar and summary; checkpoint callbacks end up last."""
    result: list[Callback] = [callbacks] if isinstance(callbacks, Callback) else list(callbacks or [])
    if max_time is not None:
        if any(isinstance(cb, Timer) for cb in result):
            rank_zero_info("Ignoring `Trainer(max_time=...)`, callbacks list already contains a Timer.")
        else:
            result.append(Timer(duration=max_time, interval="step"))
    bars = [cb for cb in result if isinstance(cb, ProgressBar)]
    if len(bars) > 1:
        raise MisconfigurationException(
            "You added multiple progress bar callbacks to the Trainer, but currently only one"
            " progress bar is supported."
        )
    if bars and not enable_progress_bar:
        raise MisconfigurationException(
            "Trainer was configured with `enable_progress_bar=False`"
            f" but found `{type(bars[0]).__name__}` in callbacks list."
        )
    # Lightning's rule: the rich bar and summary when rich is installed (found without importing it).
    rich = importlib.util.find_spec("rich") is not None
    if enable_progress_bar and not bars:
        if rich:
            result.append(RichProgressBar())
        else:
            result.append(TQDMProgressBar())
    if enable_model_summary and not any(isinstance(cb, ModelSummary) for cb in result):
        if rich:
            result.append(RichModelSummary(max_depth=1))
        else:
            result.append(ModelSummary(max_depth=1))
    _add_checkpointing(result, enable_checkpointing)
    check_unique_state_keys(result)  # as Lightning: when the Trainer is built, not only when a run starts
    return sort_callbacks(result)


def _add_checkpointing(callbacks: list[Callback], enabled: bool) -> None:
    present = any(isinstance(cb, Checkpoint) for cb in callbacks)
    if present and not enabled:
        raise MisconfigurationException(
            "Trainer was configured with `enable_checkpointing=False` but found `ModelCheckpoint` in callbacks list."
        )
    if enabled and not present:
        callbacks.append(ModelCheckpoint())


def sort_callbacks(callbacks: list[Callback]) -> list[Callback]:
    """Stable sort by `order`: tuner callbacks (-1) first, checkpoint callbacks (100) last."""
    # Read on the class: a `Mock(spec=Callback)`, common in user tests, answers `order` with another Mock.
    return sorted(callbacks, key=lambda cb: getattr(type(cb), "order", 0))


def merge_model_callbacks(trainer_callbacks: list[Callback], model_callbacks: Any) -> list[Callback]:
    """Callbacks from `configure_callbacks()` replace Trainer callbacks of the same type (or a parent type)."""
    if not model_callbacks:
        return trainer_callbacks
    extra = [model_callbacks] if isinstance(model_callbacks, Callback) else list(model_callbacks)
    model_types = {type(cb) for cb in extra}
    overridden = [cb for cb in trainer_callbacks if any(isinstance(cb, t) for t in model_types)]
    if overridden:
        names = ", ".join(sorted({type(cb).__name__ for cb in overridden}))
        rank_zero_info(
            "The following callbacks returned in `LightningModule.configure_callbacks` will override"
            f" existing callbacks passed to Trainer: {names}"
        )
    kept = [cb for cb in trainer_callbacks if cb not in overridden]
    return sort_callbacks(kept + extra)


def check_unique_state_keys(callbacks: list[Callback]) -> None:
    """Two stateful callbacks with one `state_key` would overwrite each other's state in checkpoints."""
    seen: set[str] = set()
    for cb in callbacks:
        if getattr(type(cb), "state_dict", Callback.state_dict) is Callback.state_dict:
            continue  # stateless (a `Mock(spec=Callback)` has no `state_dict` of its own either)
        key = cb.state_key
        if key in seen:
            raise RuntimeError(
                f"Found more than one stateful callback of type `{type(cb).__name__}`. In the current configuration,"
                " this callback does not support being saved alongside other instances of the same type."
                f" Please consult the documentation of `{type(cb).__name__}` regarding valid settings for"
                " the callback state to be checkpointable."
                " HINT: The `callback.state_key` must be unique among all callbacks in the Trainer."
            )
        seen.add(key)
