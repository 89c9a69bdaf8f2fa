"""GradientAccumulationScheduler: change `accumulate_grad_batches` by epoch following a {epoch: factor} schedule."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fulgor.callbacks.callback import Callback
from fulgor.errors import MisconfigurationException
from fulgor.module import is_overridden
from fulgor.rank import rank_zero_warn

if TYPE_CHECKING:
    from fulgor.module import LightningModule
    from fulgor.trainer.trainer import Trainer


class GradientAccumulationScheduler(Callback):
    """Accumulate gradients over a number of batches that changes with the epoch.

    Example: ``GradientAccumulationScheduler(scheduling={0: 8, 4: 4, 8: 1})`` accumulates 8 batches per optimizer
    step in epochs 0-3, 4 in epochs 4-7 and 1 from epoch 8 on. Epochs before the first key use 1.

    Args:
        scheduling: epoch (0-based, ``>= 0``) -> accumulation factor (``>= 1``).
    """

    def __init__(self, scheduling: dict[int, int]) -> None:
        super().__init__()
        if not scheduling:
            raise TypeError("Empty dict cannot be interpreted correct")
        if any(not isinstance(key, int) or key < 0 for key in scheduling):
            raise MisconfigurationException(
                f"Epoch should be an int greater than or equal to 0. Got {list(scheduling.keys())}."
            )
        if any(not isinstance(value, int) or value < 1 for value in scheduling.values()):
            raise MisconfigurationException(
                f"Accumulation factor should be an int greater than 0. Got {list(scheduling.values())}."
            )
        if min(scheduling) != 0:
            scheduling.update({0: 1})  # Lightning updates the caller's dict too
        self.scheduling = scheduling
        self.epochs = sorted(scheduling)

    def going_to_accumulate_grad_batches(self) -> bool:
        return any(value > 1 for value in self.scheduling.values())

    def get_accumulate_grad_batches(self, epoch: int) -> int:
        """The factor in force at `epoch`: the one of the last scheduled epoch not after it."""
        factor = 1
        for start in self.epochs:
            if epoch >= start:
                factor = self.scheduling[start]
        return factor

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not pl_module.automatic_optimization:
            raise RuntimeError(
                "Automatic gradient accumulation and the `GradientAccumulationScheduler` is not supported for"
                " manual optimization. Please remove the callback or switch to automatic optimization."
            )
        overridden = is_overridden("optimizer_step", pl_module) or is_overridden("optimizer_zero_grad", pl_module)
        if overridden and self.going_to_accumulate_grad_batches():
            rank_zero_warn(
                "When using `Trainer(accumulate_grad_batches != 1)` and overriding"
                " `LightningModule.optimizer_{step,zero_grad}`, the hooks will not be called on every batch"
                " (rather, they are called on every optimization step)."
            )
        if trainer.accumulate_grad_batches != 1:
            raise ValueError(
                "You have set `accumulate_grad_batches` and are using the `GradientAccumulationScheduler`"
                " callback. Either remove `accumulate_grad_batches` from the Trainer or remove the callback."
            )

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        trainer.accumulate_grad_batches = self.get_accumulate_grad_batches(trainer.current_epoch)
