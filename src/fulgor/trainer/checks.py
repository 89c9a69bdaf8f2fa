"""Checks that the module defines what a run needs (training_step, configure_optimizers, the step of the stage),
with Lightning's messages, before any hook runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fulgor.errors import MisconfigurationException, PossibleUserWarning
from fulgor.module import LightningModule, is_overridden
from fulgor.rank import rank_zero_warn
from fulgor.trainer.state import TrainerFn

if TYPE_CHECKING:
    from fulgor.trainer.trainer import Trainer


def verify_loop_configuration(trainer: Trainer, fn: TrainerFn) -> None:
    """Lightning's checks that the module defines what the requested run needs."""
    from fulgor.hooks import REMOVED_EPOCH_END_HOOKS

    module = trainer.lightning_module
    needed = {"fit": ("training_epoch_end", "validation_epoch_end"), "validate": ("validation_epoch_end",),
              "test": ("test_epoch_end",), "predict": ()}[fn.value]  # fmt: skip
    for hook in needed:
        if callable(getattr(module, hook, None)):
            raise NotImplementedError(
                f"Support for `{hook}` has been removed in v2.0.0. `{type(module).__name__}` implements this"
                f" method. You can use the `{REMOVED_EPOCH_END_HOOKS[hook]}` hook instead. To access outputs, save"
                " them in-memory as instance attributes."
                " You can find migration examples in https://github.com/Lightning-AI/pytorch-lightning/pull/16520."
            )
    if fn == TrainerFn.FITTING:
        _verify_fit(trainer, module)
    elif fn == TrainerFn.PREDICTING:
        if getattr(module, "predict_step", None) is None:
            raise MisconfigurationException("`predict_step` cannot be None to run `Trainer.predict`")
        if not is_overridden("predict_step", module) and not is_overridden("forward", module):
            raise MisconfigurationException("`Trainer.predict` requires `forward` method to run.")
    else:
        step = "validation_step" if fn == TrainerFn.VALIDATING else "test_step"
        if not is_overridden(step, module):
            raise MisconfigurationException(f"No `{step}()` method defined to run `Trainer.{fn.value}`.")


def _verify_fit(trainer: Trainer, module: LightningModule) -> None:
    if not is_overridden("training_step", module):
        raise MisconfigurationException(
            "No `training_step()` method defined. Lightning `Trainer` expects as minimum a"
            " `training_step()`, `train_dataloader()` and `configure_optimizers()` to be defined."
        )
    if not is_overridden("configure_optimizers", module):
        raise MisconfigurationException(
            "No `configure_optimizers()` method defined. Lightning `Trainer` expects as minimum a"
            " `training_step()`, `train_dataloader()` and `configure_optimizers()` to be defined."
        )
    has_val_loader = trainer._sources["val"].is_defined()
    has_val_step = is_overridden("validation_step", module)
    if has_val_loader and not has_val_step:
        rank_zero_warn("You passed in a `val_dataloader` but have no `validation_step`. Skipping val loop.")
    if has_val_step and not has_val_loader:
        rank_zero_warn(
            "You defined a `validation_step` but have no `val_dataloader`. Skipping val loop.", PossibleUserWarning
        )
    if not module.automatic_optimization:
        if trainer.gradient_clip_val is not None and trainer.gradient_clip_val > 0:
            raise MisconfigurationException(
                "Automatic gradient clipping is not supported for manual optimization."
                f" Remove `Trainer(gradient_clip_val={trainer.gradient_clip_val})`"
                " or switch to automatic optimization."
            )
        if trainer.accumulate_grad_batches != 1:
            raise MisconfigurationException(
                "Automatic gradient accumulation is not supported for manual optimization."
                f" Remove `Trainer(accumulate_grad_batches={trainer.accumulate_grad_batches})`"
                " or switch to automatic optimization."
            )
