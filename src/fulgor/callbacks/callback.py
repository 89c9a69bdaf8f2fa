"""The `Callback` base class: every hook a callback can implement, its state protocol and its ordering attributes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from torch import Tensor
from torch.optim import Optimizer

from fulgor.argument_hints import with_keyword_hints
from fulgor.hook_defaults import STEP_OUTPUT

if TYPE_CHECKING:
    from fulgor.module import LightningModule
    from fulgor.trainer.trainer import Trainer

__all__ = ["STEP_OUTPUT", "Callback"]


class Callback:
    """Base class for callbacks. Override any hook; hooks you do not override cost nothing per step.

    Class attributes decide where the Trainer puts the callback (a stable sort of the user's list):

    * ``order``: tuner callbacks use -1 (first), checkpoint callbacks 100 (last); everything else 0.
    * ``monitors_metrics``: True for callbacks that act on metrics logged in ``on_train_epoch_end``
      (ModelCheckpoint, EarlyStopping); their ``on_train_epoch_end`` runs after the LightningModule's.
    """

    order: ClassVar[int] = 0
    monitors_metrics: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # fulgor's own callbacks answer a mistyped argument with "Did you mean `monitor`?" (still Python's TypeError).
        if cls.__module__.startswith("fulgor.") and "__init__" in cls.__dict__:
            cls.__init__ = with_keyword_hints(cls.__dict__["__init__"])  # type: ignore[method-assign]

    @property
    def state_key(self) -> str:
        """Identifier of this callback's state in checkpoints (the class name unless several may coexist)."""
        return self.__class__.__qualname__

    @property
    def _legacy_state_key(self) -> type[Callback]:
        return type(self)

    def _idle_hooks(self) -> frozenset[str]:
        """Overridden hooks that cannot act in this run's configuration, read when a run starts; the Trainer does not
        call them (a per-batch hook that always returns at once would still cost a dispatch every step)."""
        return frozenset()

    def _generate_state_key(self, **kwargs: Any) -> str:
        """A state key that includes the arguments that tell several instances of one class apart."""
        return f"{self.__class__.__qualname__}{kwargs!r}"

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Called when fit, validate, test or predict begins."""

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Called when fit, validate, test or predict ends."""

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when fit begins."""

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when fit ends."""

    def on_sanity_check_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when the validation sanity check starts."""

    def on_sanity_check_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when the validation sanity check ends."""

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        """Called when the train batch begins."""

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: STEP_OUTPUT, batch: Any, batch_idx: int
    ) -> None:
        """Called when the train batch ends; ``outputs["loss"]`` is divided by ``accumulate_grad_batches``."""

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when the train epoch begins."""

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when the train epoch ends (after the epoch's validation)."""

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when the val epoch begins."""

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when the val epoch ends."""

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when the test epoch begins."""

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when the test epoch ends."""

    def on_predict_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when the predict epoch begins."""

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when the predict epoch ends."""

    def on_validation_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """Called when the validation batch begins."""

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: STEP_OUTPUT,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Called when the validation batch ends, with what ``validation_step`` returned."""

    def on_test_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """Called when the test batch begins."""

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: STEP_OUTPUT,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Called when the test batch ends, with what ``test_step`` returned."""

    def on_predict_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """Called when the predict batch begins."""

    def on_predict_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Called when the predict batch ends, with what ``predict_step`` returned."""

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when the train begins."""

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when the train ends."""

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when the validation loop begins."""

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when the validation loop ends."""

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when the test begins."""

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when the test ends."""

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when the predict begins."""

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when predict ends."""

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        """Called when any trainer execution is interrupted by an exception."""

    def state_dict(self) -> dict[str, Any]:
        """The callback's state, saved in checkpoints under ``state_key`` when non-empty."""
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the callback's state from a checkpoint."""

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        """Called when saving a checkpoint; add anything you want to ``checkpoint``."""

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        """Called when loading a checkpoint."""

    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: Tensor) -> None:
        """Called before ``loss.backward()``."""

    def on_after_backward(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called after ``loss.backward()`` and before optimizers are stepped."""

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Optimizer) -> None:
        """Called before ``optimizer.step()`` (after AMP unscaling, before gradient clipping)."""

    def on_before_zero_grad(self, trainer: Trainer, pl_module: LightningModule, optimizer: Optimizer) -> None:
        """Called before ``optimizer.zero_grad()``."""
