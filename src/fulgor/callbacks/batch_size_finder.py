"""BatchSizeFinder: the batch-size search of `Tuner.scale_batch_size`, run when `fit` starts (before its data loads)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from fulgor.callbacks.callback import Callback
from fulgor.errors import MisconfigurationException
from fulgor.tuner import BATCH_SIZE_MODES, Tuner, check_batch_size_mode, fit_training_data, passed_loaders_message

if TYPE_CHECKING:
    from fulgor.module import LightningModule
    from fulgor.trainer.trainer import Trainer


class BatchSizeFinder(Callback):
    """Run `Tuner.scale_batch_size` with these arguments at the start of `fit`; the run then trains with the size
    found (kept as `optimal_batch_size`). The dataloaders must be built by the model or datamodule from
    `batch_arg_name`.

    Args:
        mode: ``"power"`` or ``"binsearch"``.
        steps_per_trial: Training steps per tried size.
        init_val: First size tried.
        max_trials: Most sizes tried.
        batch_arg_name: The attribute (of the model, its hparams or the datamodule) holding the batch size.
        margin: Fraction taken off the size found in binsearch mode.
        max_val: Largest batch size considered.
    """

    order: ClassVar[int] = -1
    SUPPORTED_MODES = BATCH_SIZE_MODES

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
        mode = mode.lower()
        check_batch_size_mode(mode)
        self._mode = mode
        self._steps_per_trial = steps_per_trial
        self._init_val = init_val
        self._max_trials = max_trials
        self._batch_arg_name = batch_arg_name
        self._margin = margin
        self._max_val = max_val
        self.optimal_batch_size: int | None = init_val

    def scale_batch_size(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Run the search on a tuning copy of `trainer` and keep the size found."""
        loaders, datamodule = fit_training_data(trainer)
        if loaders is not None:
            raise MisconfigurationException(passed_loaders_message("fit"))
        self.optimal_batch_size = Tuner(trainer).scale_batch_size(
            pl_module, datamodule=datamodule, mode=self._mode, steps_per_trial=self._steps_per_trial,
            init_val=self._init_val, max_trials=self._max_trials, batch_arg_name=self._batch_arg_name,
            margin=self._margin, max_val=self._max_val,
        )  # fmt: skip

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Search before the training data is loaded, so the run's dataloaders use the size found."""
        self.scale_batch_size(trainer, pl_module)
