"""BasePredictionWriter: the base class for callbacks that write predictions to disk per batch and/or per epoch."""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

from fulgor.callbacks.callback import Callback
from fulgor.errors import MisconfigurationException

if TYPE_CHECKING:
    from fulgor.module import LightningModule
    from fulgor.trainer.trainer import Trainer

WRITE_INTERVALS = ("batch", "epoch", "batch_and_epoch")


class WriteInterval(str, Enum):
    """When a `BasePredictionWriter` writes: after each batch, once at the end, or both."""

    BATCH = "batch"
    EPOCH = "epoch"
    BATCH_AND_EPOCH = "batch_and_epoch"

    @classmethod
    def _missing_(cls, value: object) -> WriteInterval | None:
        # Case-insensitive, as Lightning's enums.
        return next((m for m in cls if isinstance(value, str) and m.value == value.lower()), None)

    @property
    def on_batch(self) -> bool:
        """Whether predictions are written after each batch."""
        return self in (WriteInterval.BATCH, WriteInterval.BATCH_AND_EPOCH)

    @property
    def on_epoch(self) -> bool:
        """Whether all predictions are written at the end."""
        return self in (WriteInterval.EPOCH, WriteInterval.BATCH_AND_EPOCH)


class BasePredictionWriter(Callback):
    """Subclass it and implement `write_on_batch_end` and/or `write_on_epoch_end` to store predictions.

    With ``write_interval="epoch"`` use ``trainer.predict(model, return_predictions=False)`` to avoid keeping a second
    copy of the outputs: the writer still receives all of them.

    Args:
        write_interval: ``"batch"`` (after every predict batch), ``"epoch"`` (once, with every prediction) or
            ``"batch_and_epoch"``.
    """

    def __init__(self, write_interval: str = "batch") -> None:
        super().__init__()
        if write_interval not in WRITE_INTERVALS:
            raise MisconfigurationException(f"`write_interval` should be one of {list(WRITE_INTERVALS)}.")
        self.write_interval = write_interval
        self.interval = WriteInterval(write_interval)

    @property
    def writes_on_batch(self) -> bool:
        return self.write_interval in ("batch", "batch_and_epoch")

    @property
    def writes_on_epoch(self) -> bool:
        return self.write_interval in ("epoch", "batch_and_epoch")

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        """Override with the logic to write one batch's prediction (``batch_indices``: the samples' dataset indices)."""
        raise NotImplementedError

    def write_on_epoch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        predictions: Sequence[Any],
        batch_indices: Sequence[Any],
    ) -> None:
        """Override with the logic to write every prediction of the epoch (one list per dataloader when several)."""
        raise NotImplementedError

    def on_predict_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self.writes_on_batch:
            indices = getattr(_predict_loop(trainer), "current_batch_indices", None)
            self.write_on_batch_end(trainer, pl_module, outputs, indices, batch, batch_idx, dataloader_idx)

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.writes_on_epoch:
            loop = _predict_loop(trainer)
            predictions = getattr(loop, "predictions", [])
            indices = getattr(loop, "epoch_batch_indices", [])
            self.write_on_epoch_end(trainer, pl_module, predictions, indices)


def _predict_loop(trainer: Trainer) -> Any:
    """The Trainer's record of the running predict epoch (`predictions`, `epoch_batch_indices`,
    `current_batch_indices`), named `predict_loop` as in Lightning."""
    return getattr(trainer, "predict_loop", None)
