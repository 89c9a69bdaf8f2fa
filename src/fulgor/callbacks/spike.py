"""`SpikeDetection` as a Trainer callback: the loss-spike detector of `spike_detector.py`, fed the training loss of
each batch, writing the batches to skip to `default_root_dir/skip_batches.json` unless told otherwise."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from torch import Tensor

from fulgor.callbacks.callback import Callback
from fulgor.callbacks.spike_detector import SpikeDetection as _Detector
from fulgor.callbacks.spike_detector import TrainingSpikeException

if TYPE_CHECKING:
    from fulgor.module import LightningModule
    from fulgor.trainer.trainer import Trainer

__all__ = ["SpikeDetection", "TrainingSpikeException"]


class SpikeDetection(_Detector, Callback):
    """Stop the fit with a :class:`TrainingSpikeException` when the training loss spikes (see the arguments of the
    Fabric detector this extends: ``mode``, ``window``, ``warmup``, ``atol``, ``rtol``, ``exclude_batches_path``,
    ``finite_only``).

    Example::

        trainer = Trainer(callbacks=[SpikeDetection(window=20, rtol=3.0)])
    """

    def on_train_batch_end(  # type: ignore[override]
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Check this batch's loss (``outputs`` as `training_step` returned it: a tensor or a dict with "loss")."""
        if isinstance(outputs, Tensor):
            loss = outputs.detach()
        elif isinstance(outputs, Mapping):
            loss = outputs["loss"].detach()
        else:
            raise TypeError(f"outputs have to be of type torch.Tensor or Mapping, got {type(outputs).__qualname__}")
        if self.exclude_batches_path is None:
            self.exclude_batches_path = os.path.join(trainer.default_root_dir, "skip_batches.json")
        _Detector.on_train_batch_end(self, trainer, loss, batch, batch_idx)
