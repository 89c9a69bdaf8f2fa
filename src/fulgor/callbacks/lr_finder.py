"""LearningRateFinder: the learning-rate range test of `Tuner.lr_find`, run when `fit` starts (before training)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from fulgor.callbacks.callback import Callback
from fulgor.lr_finding import LR_MODES, check_lr_mode, find_lr
from fulgor.tuner import fit_training_data

if TYPE_CHECKING:
    from fulgor.lr_finding import _LRFinder
    from fulgor.module import LightningModule
    from fulgor.trainer.trainer import Trainer


class LearningRateFinder(Callback):
    """Run `Tuner.lr_find` with these arguments at the start of `fit` and, with `update_attr`, train with the
    suggested learning rate. The finder is kept as `optimal_lr` (with `results`, `suggestion()`, `plot()`).

    Args:
        min_lr: First learning rate.
        max_lr: Last learning rate.
        num_training_steps: Learning rates (optimizer steps) to try.
        mode: ``"exponential"`` or ``"linear"``.
        early_stop_threshold: Stop when the smoothed loss exceeds this multiple of the best (None: never).
        update_attr: Set the suggestion on the model's attribute and on the optimizers of this run.
        attr_name: The attribute holding the learning rate, when not `lr`/`learning_rate`.
    """

    order: ClassVar[int] = -1
    SUPPORTED_MODES = LR_MODES
    _tunes: ClassVar[str] = "lr"  # what `Tuner` recognises a configured finder by

    def __init__(
        self,
        min_lr: float = 1e-8,
        max_lr: float = 1,
        num_training_steps: int = 100,
        mode: str = "exponential",
        early_stop_threshold: float | None = 4.0,
        update_attr: bool = True,
        attr_name: str = "",
    ) -> None:
        mode = mode.lower()
        check_lr_mode(mode)
        self._kwargs: dict[str, Any] = {
            "min_lr": min_lr, "max_lr": max_lr, "num_training": num_training_steps, "mode": mode,
            "early_stop_threshold": early_stop_threshold, "update_attr": update_attr, "attr_name": attr_name,
        }  # fmt: skip
        self.optimal_lr: _LRFinder | None = None

    def lr_find(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Run the search on a tuning copy of `trainer`; apply the suggestion to `trainer`'s optimizers."""
        loaders, datamodule = fit_training_data(trainer)
        self.optimal_lr = find_lr(trainer, pl_module, loaders, datamodule, **self._kwargs)
        lr = self.optimal_lr.suggestion() if self.optimal_lr is not None and self._kwargs["update_attr"] else None
        if lr is not None:
            for optimizer in trainer.optimizers:
                for group in optimizer.param_groups:
                    group["lr"] = lr

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Search before the first training step (optimizers exist, the training data is not loaded yet)."""
        self.lr_find(trainer, pl_module)
