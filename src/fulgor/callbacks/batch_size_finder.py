"""BatchSizeFinder: the batch-size search of `Tuner.scale_batch_size`, run when `fit` starts or, in validate, test and
predict, at `setup` (before the stage's loaders are built), so the run reads its data with the size found."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from fulgor.callbacks.callback import Callback
from fulgor.errors import MisconfigurationException
from fulgor.tuner import BATCH_SIZE_MODES, BatchSizeSearch, fit_training_data, is_distributed, passed_loaders_message

if TYPE_CHECKING:
    from fulgor.module import LightningModule
    from fulgor.trainer.trainer import Trainer


class BatchSizeFinder(Callback):
    """Run the search of `Tuner.scale_batch_size` with these arguments; the run then uses the size found (kept as
    `optimal_batch_size`). The dataloaders must be built by the model or datamodule from `batch_arg_name`.

    In `fit` the search runs at `on_fit_start`; in `validate`, `test` and `predict` at `setup`, before the stage's
    loaders are built. Call `scale_batch_size(trainer, pl_module)` from another hook (e.g. `on_train_epoch_start`)
    to search again mid-fit.

    Args:
        mode: ``"power"`` or ``"binsearch"``.
        steps_per_trial: Training steps (or batches) per tried size.
        init_val: First size tried.
        max_trials: Most sizes tried (in binsearch mode: most sizes that succeed).
        batch_arg_name: The attribute (of the model, its hparams or the datamodule) holding the batch size.
        margin: Fraction taken off the size found in binsearch mode.
        max_val: Largest batch size considered.
    """

    order: ClassVar[int] = -1
    SUPPORTED_MODES = BATCH_SIZE_MODES
    _tunes: ClassVar[str] = "batch_size"  # what `Tuner` recognises a configured finder by

    def __init__(
        self,
        mode: str = "power",
        steps_per_trial: int = 3,
        init_val: int = 2,
        max_trials: int = 25,
        batch_arg_name: str = "batch_size",
        margin: float = 0.05,
        max_val: int = 8192,
    ) -> None:
        self._search = BatchSizeSearch(mode, steps_per_trial, init_val, max_trials, batch_arg_name, margin, max_val)
        self._mode = self._search.mode
        self._batch_arg_name = batch_arg_name
        self.optimal_batch_size: int | None = init_val

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str | None = None) -> None:
        """Lightning's checks (one device, loaders built by the model or datamodule); in validate, test and predict,
        the search."""
        if is_distributed(trainer):
            raise MisconfigurationException("The Batch size finder is not supported with distributed strategies.")
        if stage == "fit" and fit_training_data(trainer)[0] is not None:
            raise MisconfigurationException(passed_loaders_message("fit"))
        hook = _STAGE_START.get(stage or "")
        # A subclass that overrides the stage's start hook decides itself when to search (Lightning's customisation).
        if hook is not None and getattr(type(self), hook) is getattr(BatchSizeFinder, hook):
            self.scale_batch_size(trainer, pl_module)

    def scale_batch_size(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Run the search for the running stage on tuning copies of `trainer` and keep the size found."""
        method = trainer.state.fn.value if trainer.state.fn is not None else "fit"
        self.optimal_batch_size = self._search.run(trainer, pl_module, trainer.datamodule, method)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Search before the training data is loaded, so the run's dataloaders use the size found."""
        self.scale_batch_size(trainer, pl_module)

    # The searches of validate, test and predict run in `setup`, before the stage's loaders are built. Override one of
    # these hooks to search there instead: the stage's loaders are built by then, so the size applies from the next run.
    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Nothing: validate's search ran in `setup`."""

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Nothing: test's search ran in `setup`."""

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Nothing: predict's search ran in `setup`."""


_STAGE_START = {"validate": "on_validation_start", "test": "on_test_start", "predict": "on_predict_start"}
