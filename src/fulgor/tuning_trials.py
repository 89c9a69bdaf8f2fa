"""The tuners' trial runs: short fit/validate/test/predict runs on a quiet copy of the Trainer, a run that stops as
soon as its data is loaded, and the model's weights kept aside meanwhile."""

from __future__ import annotations

import gc
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import torch

from fulgor.callbacks.callback import Callback
from fulgor.loggers.logger import DummyLogger
from fulgor.module import LightningModule
from fulgor.trainer.state import TrainerStatus
from fulgor.trainer.trainer import Trainer, tuning_trial

__all__ = [
    "TUNER_METHODS",
    "free_memory",
    "kept_weights",
    "load_data_only",
    "loaders_of",
    "probe_loaders",
    "short_fit",
    "short_run",
]

TUNER_METHODS = ("fit", "validate", "test", "predict")


@contextmanager
def kept_weights(trainer: Trainer, model: LightningModule) -> Iterator[None]:
    """Run the body, then put the model's weights back as they were (saved to a temporary file meanwhile), even when
    the body fails."""
    path = os.path.join(trainer.default_root_dir, f".tuner_{uuid.uuid4()}.ckpt")
    os.makedirs(trainer.default_root_dir, exist_ok=True)
    torch.save(model.state_dict(), path)
    try:
        yield
    finally:
        model.load_state_dict(torch.load(path, weights_only=True))
        os.remove(path)


def free_memory() -> None:
    """Collect garbage (and CUDA's cache) between trials, so a failed trial's tensors do not fail the next one."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _call(trainer: Trainer, model: LightningModule, method: str, datamodule: Any) -> None:
    if method == "fit":
        trainer.fit(model, datamodule=datamodule)
    elif method == "predict":
        trainer.predict(model, datamodule=datamodule, return_predictions=False)
    else:
        getattr(trainer, method)(model, datamodule=datamodule, verbose=False)


def short_fit(
    trainer: Trainer, model: LightningModule, callback: Callback | None, steps: int, train_dataloaders: Any,
    datamodule: Any, **changes: Any,
) -> None:  # fmt: skip
    """`steps` optimizer steps of `fit` on a trial copy of `trainer` (zero counters, only `callback`): no loggers,
    checkpoints, progress bar, sanity check or (unless `changes` set `limit_val_batches`) validation."""
    callbacks = [callback] if callback is not None else []
    # The learning-rate range test drives the loss to diverge on purpose: the non-finite guard is off in the trials.
    settings = {"max_steps": steps, "limit_val_batches": 0, "num_sanity_val_steps": 0, "non_finite": "off", **changes}
    with tuning_trial(trainer, model, callbacks, **settings) as trial:
        trial.fit(model, train_dataloaders, datamodule=datamodule)


# Per evaluation method: the limit flag a trial sets.
_EVAL_LIMITS = {"validate": "limit_val_batches", "test": "limit_test_batches", "predict": "limit_predict_batches"}


def short_run(trainer: Trainer, model: LightningModule, method: str, steps: int, datamodule: Any) -> None:
    """One trial of the batch-size search: `steps` training steps of fit, or `steps` batches of validate, test or
    predict, on a trial copy of `trainer`."""
    if method == "fit":
        # As Lightning's trials: every training batch available, and `steps` validation batches should an epoch end.
        short_fit(trainer, model, None, steps, None, datamodule, limit_train_batches=1.0, limit_val_batches=steps)
        return
    with tuning_trial(trainer, model, [], **{_EVAL_LIMITS[method]: steps, "non_finite": "off"}) as trial:
        _call(trial, model, method, datamodule)


class _DataLoaded(Exception):
    """Ends a run of `load_data_only` once its data is loaded."""


class _StopWhenLoaded(Callback):
    """Stops the run at the first hook after its loaders are loaded (`on_train_start` in fit, the stage's start
    otherwise)."""

    order = -1  # before every other callback: the others see no hook of the stopped stage

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        raise _DataLoaded

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        raise _DataLoaded

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        raise _DataLoaded

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        raise _DataLoaded


def probe_loaders(trainer: Trainer, model: LightningModule, method: str, datamodule: Any) -> Any:
    """The loaders `method` reads with the current settings of the model (built on a trial copy of `trainer`, no
    batch run)."""
    with tuning_trial(trainer, model, [_StopWhenLoaded()], num_sanity_val_steps=0, non_finite="off") as trial:
        # Only the loaders are wanted: a run that fails once they are built (a check of the step's signature) fails
        # the same way in the first trial, which raises it.
        with suppress(Exception):
            _call(trial, model, method, datamodule)
        return loaders_of(trial, method)


def load_data_only(trainer: Trainer, model: LightningModule, method: str, datamodule: Any) -> None:
    """Run `method` on `trainer` itself until its data is loaded, as the Tuner leaves the Trainer in Lightning: the
    datamodule attached, `trainer.train_dataloader` (and the validation loaders) or the stage's loaders built with the
    batch size found, nothing trained. The user's callbacks and loggers sit out (as during the search)."""
    callbacks = list(trainer.callbacks)
    loggers = trainer.loggers
    sanity_steps = trainer.num_sanity_val_steps
    trainer.callbacks[:] = [_StopWhenLoaded()]
    trainer.loggers = [DummyLogger()] if loggers else []
    trainer.num_sanity_val_steps = 0  # the sanity check would run validation batches before `on_train_start`
    try:
        _call(trainer, model, method, datamodule)
    except _DataLoaded:
        trainer.state.status = TrainerStatus.FINISHED
    finally:
        trainer.callbacks[:] = callbacks
        trainer.loggers = loggers
        trainer.num_sanity_val_steps = sanity_steps


def loaders_of(trainer: Trainer, method: str) -> Any:
    """The loaders of `method`'s main stage, as the Trainer shows them."""
    if method == "fit":
        return trainer.train_dataloader
    name = {"validate": "val_dataloaders", "test": "test_dataloaders", "predict": "predict_dataloaders"}[method]
    return getattr(trainer, name)
