"""The hooks' defaults, by kind, as Lightning groups them (`core.hooks`): `ModelHooks` (the notification hooks the
loops call, all no-ops), `DataHooks` (shared by LightningModule and LightningDataModule) and `CheckpointHooks`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import torch
from torch import Tensor
from torch.optim import Optimizer

from fulgor.data.transfer import move_data_to_device
from fulgor.errors import MisconfigurationException

__all__ = ["STEP_OUTPUT", "CheckpointHooks", "DataHooks", "ModelHooks"]

STEP_OUTPUT = Tensor | Mapping[str, Any] | None


class ModelHooks:
    """The notification hooks of a LightningModule. Each default does nothing; the order in which the loops call
    them is the hook table's (`fulgor.hooks`). A hook you do not override costs nothing per step."""

    def configure_model(self) -> None:
        """Create layers here to build them on the target device (the Trainer calls it only when overridden)."""

    def configure_sharded_model(self) -> None:
        """Deprecated name of `configure_model`."""

    def on_fit_start(self) -> None:
        """Called at the very beginning of fit."""

    def on_fit_end(self) -> None:
        """Called at the very end of fit."""

    def on_train_start(self) -> None:
        """Called at the beginning of training after the sanity check."""

    def on_train_end(self) -> None:
        """Called at the end of training before the logger experiment is closed."""

    def on_validation_start(self) -> None:
        """Called at the beginning of validation."""

    def on_validation_end(self) -> None:
        """Called at the end of validation."""

    def on_test_start(self) -> None:
        """Called at the beginning of testing."""

    def on_test_end(self) -> None:
        """Called at the end of testing."""

    def on_predict_start(self) -> None:
        """Called at the beginning of predicting."""

    def on_predict_end(self) -> None:
        """Called at the end of predicting."""

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> int | None:
        """Called before the training batch; return -1 to skip the rest of the epoch."""
        return None

    def on_train_batch_end(self, outputs: STEP_OUTPUT, batch: Any, batch_idx: int) -> None:
        """Called after the training batch with what `training_step` returned (loss divided for accumulation)."""

    def on_validation_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Called before a validation batch."""

    def on_validation_batch_end(
        self, outputs: STEP_OUTPUT, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """Called after a validation batch with what `validation_step` returned."""

    def on_test_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Called before a test batch."""

    def on_test_batch_end(self, outputs: STEP_OUTPUT, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Called after a test batch with what `test_step` returned."""

    def on_predict_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Called before a predict batch."""

    def on_predict_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Called after a predict batch with what `predict_step` returned."""

    def on_train_epoch_start(self) -> None:
        """Called at the start of a training epoch."""

    def on_train_epoch_end(self) -> None:
        """Called at the end of a training epoch, after the epoch's validation."""

    def on_validation_epoch_start(self) -> None:
        """Called at the start of a validation epoch."""

    def on_validation_epoch_end(self) -> None:
        """Called at the end of a validation epoch."""

    def on_test_epoch_start(self) -> None:
        """Called at the start of a test epoch."""

    def on_test_epoch_end(self) -> None:
        """Called at the end of a test epoch."""

    def on_predict_epoch_start(self) -> None:
        """Called at the start of a predict epoch."""

    def on_predict_epoch_end(self) -> None:
        """Called at the end of a predict epoch."""

    def on_before_zero_grad(self, optimizer: Optimizer) -> None:
        """Called before `optimizer.zero_grad()`."""

    def on_before_backward(self, loss: Tensor) -> None:
        """Called before `loss.backward()`."""

    def on_after_backward(self) -> None:
        """Called after `loss.backward()` and before the optimizer step."""

    def on_before_optimizer_step(self, optimizer: Optimizer) -> None:
        """Called before `optimizer.step()`, after unscaling and before clipping."""

    def on_validation_model_zero_grad(self) -> None:
        """Called before validation inside fit; releases the gradients."""
        cast(torch.nn.Module, self).zero_grad()

    def on_validation_model_eval(self) -> None:
        """Called when validation starts; puts the model in eval mode."""
        self._trainer_model().eval()

    def on_validation_model_train(self) -> None:
        """Called when validation ends (only if overridden; else each submodule's mode is restored)."""
        self._trainer_model().train()

    def on_test_model_eval(self) -> None:
        """Called when testing starts; puts the model in eval mode."""
        self._trainer_model().eval()

    def on_test_model_train(self) -> None:
        """Called when testing ends (only if overridden; else each submodule's mode is restored)."""
        self._trainer_model().train()

    def on_predict_model_eval(self) -> None:
        """Called when predicting starts; puts the model in eval mode."""
        self._trainer_model().eval()

    def _trainer_model(self) -> torch.nn.Module:
        model = cast(Any, self).trainer.model  # a LightningModule's Trainer: the model it runs (maybe wrapped)
        return cast(torch.nn.Module, self if model is None else model)


class DataHooks:
    """Where a run's data comes from and how a batch reaches the device. A hook you do not override keeps this
    default; the Trainer uses the datamodule's when both the module and a datamodule define one."""

    def prepare_data(self) -> None:
        """Download or prepare data once per node (or once in total): no state assignment here, it runs in one
        process only."""

    def setup(self, stage: str) -> None:
        """Build datasets and state on every process at the start of ``stage`` ("fit", "validate", "test" or
        "predict")."""

    def teardown(self, stage: str) -> None:
        """Release what ``setup`` built, at the end of ``stage``, on every process."""

    def train_dataloader(self) -> Any:
        """The training data (a DataLoader or any iterable of batches)."""
        raise MisconfigurationException("`train_dataloader` must be implemented to be used with the Lightning Trainer")

    def val_dataloader(self) -> Any:
        """The validation data (one DataLoader or several)."""
        raise MisconfigurationException("`val_dataloader` must be implemented to be used with the Lightning Trainer")

    def test_dataloader(self) -> Any:
        """The test data (one DataLoader or several)."""
        raise MisconfigurationException("`test_dataloader` must be implemented to be used with the Lightning Trainer")

    def predict_dataloader(self) -> Any:
        """The prediction data (one DataLoader or several)."""
        raise MisconfigurationException(
            "`predict_dataloader` must be implemented to be used with the Lightning Trainer"
        )

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Move a batch of any nesting to ``device`` (tensors in collections, and objects with ``.to``)."""
        return move_data_to_device(batch, device)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Alter the batch before it is moved to the device (default: unchanged)."""
        return batch

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Alter the batch after it was moved to the device (default: unchanged)."""
        return batch


class CheckpointHooks:
    """What a LightningModule (or a datamodule's user) adds to or reads from a checkpoint."""

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add anything you need to the checkpoint dict before it is written."""

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Read what you added in `on_save_checkpoint`, before the weights are restored."""
