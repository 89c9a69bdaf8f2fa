"""Checks that the module defines what a run needs (training_step, configure_optimizers, the step of the stage),
with Lightning's messages, before any hook runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fulgor.datamodule import LightningDataModule, dataloader_is_defined
from fulgor.errors import MisconfigurationException, PossibleUserWarning
from fulgor.lightning_errors import LightningDeprecationWarning
from fulgor.module import LightningModule
from fulgor.overridden import is_overridden
from fulgor.rank import rank_zero_warn
from fulgor.trainer.state import TrainerFn

if TYPE_CHECKING:
    from fulgor.trainer.run import Run


def verify_loop_configuration(run: Run) -> None:
    """Lightning's checks that the module defines what the requested run needs (1.x `*_epoch_end` hooks are
    supported: see `fulgor.trainer.legacy_hooks`)."""
    module, fn = run.module, run.fn
    _verify_configure_model(module)
    if fn == TrainerFn.FITTING:
        _verify_fit(run, module)
    elif fn == TrainerFn.PREDICTING:
        if getattr(module, "predict_step", None) is None:
            raise MisconfigurationException("`predict_step` cannot be None to run `Trainer.predict`")
        if not is_overridden("predict_step", module) and not is_overridden("forward", module):
            raise MisconfigurationException("`Trainer.predict` requires `forward` method to run.")
    else:
        step = "validation_step" if fn == TrainerFn.VALIDATING else "test_step"
        if not is_overridden(step, module):
            raise MisconfigurationException(f"No `{step}()` method defined to run `Trainer.{fn.value}`.")
    _verify_stage_data(run)


# Per entry point: the data source of its main stage, the step that needs it (None: always) and its limit flag.
_STAGE_DATA = {
    TrainerFn.FITTING: ("train", "training_step", "limit_train_batches"),
    TrainerFn.VALIDATING: ("val", "validation_step", "limit_val_batches"),
    TrainerFn.TESTING: ("test", "test_step", "limit_test_batches"),
    TrainerFn.PREDICTING: ("predict", None, "limit_predict_batches"),
}


def _verify_stage_data(run: Run) -> None:
    """The main stage reads its data from a method of the datamodule (when given) or of the module when no
    dataloaders were passed: that method must exist (Lightning's errors, raised here before any hook instead of when
    the data is requested)."""
    prefix, step, limit = _STAGE_DATA[run.fn]
    source = run.sources.get(prefix)
    if source is None or getattr(run.config, limit) == 0 or (step is not None and not is_overridden(step, run.module)):
        return
    instance = source.instance
    if not isinstance(instance, (LightningModule, LightningDataModule)):
        return
    fn = run.fn.value
    if not callable(getattr(instance, source.name, None)):
        argument = "train_dataloaders" if run.fn == TrainerFn.FITTING else "dataloaders"
        raise TypeError(
            f"An invalid dataloader was passed to `Trainer.{fn}({argument}=...)`. Found None. Either pass the"
            f" dataloader to the `.{fn}()` method OR implement `def {source.name}(self):` in your"
            " LightningModule/LightningDataModule."
        )
    defined = (
        is_overridden(source.name, instance, LightningModule)
        if isinstance(instance, LightningModule)
        else dataloader_is_defined(instance, source.name)
    )
    if run.fn != TrainerFn.FITTING and not defined:
        raise MisconfigurationException(f"`{source.name}` must be implemented to be used with the Lightning Trainer")


def _verify_configure_model(module: LightningModule) -> None:
    """The 1.x `configure_sharded_model` hook still runs (before `configure_model`), with Lightning's deprecation."""
    if not is_overridden("configure_sharded_model", module):
        return
    name = type(module).__name__
    if is_overridden("configure_model", module):
        raise RuntimeError(
            f"Both `{name}.configure_model`, and `{name}.configure_sharded_model` are overridden. The latter is"
            " deprecated and it should be replaced with the former."
        )
    rank_zero_warn(
        f"You have overridden `{name}.configure_sharded_model` which is deprecated. Please override the"
        " `configure_model` hook instead. Instantiation with the newer hook will be created on the device right"
        " away and have the right data type depending on the precision setting in the Trainer.",
        LightningDeprecationWarning,
    )


def _verify_fit(run: Run, module: LightningModule) -> None:
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
    has_val_loader = run.sources["val"].is_defined()
    has_val_step = is_overridden("validation_step", module)
    if has_val_loader and not has_val_step:
        rank_zero_warn("You passed in a `val_dataloader` but have no `validation_step`. Skipping val loop.")
    if has_val_step and not has_val_loader:
        rank_zero_warn(
            "You defined a `validation_step` but have no `val_dataloader`. Skipping val loop.", PossibleUserWarning
        )
    config = run.config
    if not module.automatic_optimization:
        if config.gradient_clip_val is not None and config.gradient_clip_val > 0:
            raise MisconfigurationException(
                "Automatic gradient clipping is not supported for manual optimization."
                f" Remove `Trainer(gradient_clip_val={config.gradient_clip_val})`"
                " or switch to automatic optimization."
            )
        if config.accumulate_grad_batches != 1:
            raise MisconfigurationException(
                "Automatic gradient accumulation is not supported for manual optimization."
                f" Remove `Trainer(accumulate_grad_batches={config.accumulate_grad_batches})`"
                " or switch to automatic optimization."
            )
