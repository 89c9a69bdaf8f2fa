"""What fit/validate/test/predict were given, checked and resolved: the model, the datamodule (also when passed in place
of the dataloaders), where each stage's data comes from, and which checkpoint to load."""

from __future__ import annotations

from typing import Any

from fulgor import checkpoint_restore
from fulgor.compiled_modules import from_compiled
from fulgor.datamodule import LightningDataModule
from fulgor.errors import MisconfigurationException
from fulgor.module import LightningModule
from fulgor.rank import rank_zero_warn
from fulgor.trainer import data, lifecycle
from fulgor.trainer.state import TrainerFn

__all__ = ["choose_ckpt_path", "datamodule_in_place_of_loaders", "evaluation_inputs", "fit_sources", "module_of"]


def fit_sources(
    model: LightningModule, train_dataloaders: Any, val_dataloaders: Any, datamodule: Any
) -> tuple[Any, dict[str, data.DataSource]]:
    """fit's datamodule and its train/val data sources (`model` already checked by `module_of`)."""
    train_dataloaders, datamodule = datamodule_in_place_of_loaders(train_dataloaders, datamodule)
    if datamodule is not None and (train_dataloaders is not None or val_dataloaders is not None):
        raise MisconfigurationException(
            "You cannot pass `train_dataloader` or `val_dataloaders` to `trainer.fit(datamodule=...)`"
        )
    return datamodule, {
        "train": data.select_source(model, datamodule, train_dataloaders, "train_dataloader"),
        "val": data.select_source(model, datamodule, val_dataloaders, "val_dataloader"),
    }


def evaluation_inputs(
    fn: TrainerFn, model: LightningModule | None, last_model: LightningModule | None, dataloaders: Any, datamodule: Any
) -> tuple[LightningModule, Any, dict[str, data.DataSource]]:
    """validate/test/predict: the model (the last run's when None), the datamodule and the stage's data source."""
    dataloaders, datamodule = datamodule_in_place_of_loaders(dataloaders, datamodule)
    if dataloaders is not None and datamodule is not None:
        raise MisconfigurationException(f"You cannot pass both `trainer.{fn.value}(dataloaders=..., datamodule=...)`")
    if model is None:
        if last_model is None:
            raise TypeError(
                f"`Trainer.{fn.value}()` requires a `LightningModule` when it hasn't been passed in a previous run"
            )
        model = last_model
    else:
        model = module_of(model)
    prefix = lifecycle.FIRST_STAGE[fn].dataloader_prefix
    return model, datamodule, {prefix: data.select_source(model, datamodule, dataloaders, f"{prefix}_dataloader")}


def choose_ckpt_path(
    fn: TrainerFn, ckpt_path: Any, user_path: str | None, model_provided: bool, had_model: bool, on_exception: bool
) -> Any:
    """The checkpoint to load: a path set with `trainer.ckpt_path = ...` (`user_path`) applies unless one is passed;
    otherwise `checkpoint_restore.select_ckpt_path` says what None means (`on_exception`: the Trainer has an
    `OnExceptionCheckpoint`)."""
    if user_path is not None:
        if ckpt_path:
            rank_zero_warn(
                f"`trainer.ckpt_path = {user_path!r}` was called but then you"
                f" passed `trainer.{fn.value}(ckpt_path={ckpt_path!r})`. The latter will be loaded."
            )
        else:
            ckpt_path = user_path
    return checkpoint_restore.select_ckpt_path(fn.value, ckpt_path, model_provided, had_model, on_exception)


def datamodule_in_place_of_loaders(loaders: Any, datamodule: Any) -> tuple[Any, Any]:
    """Lightning accepts a LightningDataModule as the second positional argument of fit/validate/test/predict."""
    if isinstance(loaders, LightningDataModule):
        return None, loaders
    return loaders, datamodule


def module_of(model: Any) -> LightningModule:
    """The LightningModule to run: `model` itself, or the module inside `torch.compile(module)` (its forward and step
    methods compiled, as Lightning runs a compiled model)."""
    if isinstance(model, LightningModule):
        return model
    if type(model).__name__ == "OptimizedModule":  # torch's compiler is imported only for a compiled model
        return from_compiled(model)
    raise TypeError(
        f"`model` must be a `LightningModule` or `torch._dynamo.OptimizedModule`, got `{type(model).__qualname__}`"
    )
