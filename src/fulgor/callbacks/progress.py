"""`ProgressBar`: the base callback of progress bars (the totals and the metrics to show). The bars themselves are
`TQDMProgressBar` (`tqdm_progress.py`) and `RichProgressBar` (`rich_progress.py`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from fulgor.callbacks.callback import Callback
from fulgor.rank import warn_once

if TYPE_CHECKING:
    from fulgor.module import LightningModule
    from fulgor.trainer.trainer import Trainer

__all__ = ["ProgressBar", "get_standard_metrics"]


class ProgressBar(Callback):
    """Base class for progress bars: keeps the trainer reference and computes the totals and metrics to show.

    Subclass it for a custom bar; the Trainer recognises progress bars by the ``is_progress_bar`` class attribute.
    """

    is_progress_bar: ClassVar[bool] = True

    def __init__(self) -> None:
        self._trainer: Trainer | None = None
        self._pl_module: LightningModule | None = None
        self._current_eval_dataloader_idx: int | None = None
        self._enabled = True

    @property
    def trainer(self) -> Trainer:
        """The trainer this bar is attached to (set in ``setup``)."""
        if self._trainer is None:
            raise TypeError(f"The `{type(self).__name__}._trainer` reference has not been set yet.")
        return self._trainer

    @property
    def pl_module(self) -> LightningModule:
        """The module being run (set in ``setup``)."""
        if self._pl_module is None:
            raise TypeError(f"The `{type(self).__name__}._pl_module` reference has not been set yet.")
        return self._pl_module

    sanity_check_description = "Sanity Checking"
    train_description = "Training"
    validation_description = "Validation"
    test_description = "Testing"
    predict_description = "Predicting"

    @property
    def is_enabled(self) -> bool:
        """Whether the bar draws anything."""
        return self._enabled

    @property
    def is_disabled(self) -> bool:
        """``not is_enabled``."""
        return not self.is_enabled

    def enable(self) -> None:
        """Turn the display on (the Trainer calls this after tuning runs that hide it)."""
        self._enabled = True

    def disable(self) -> None:
        """Turn the display off (the Trainer calls this on ranks other than 0)."""
        self._enabled = False

    @property
    def total_train_batches(self) -> int | float:
        """Training batches in this epoch (``inf`` for unsized loaders), capped by the steps left when
        ``max_epochs=-1`` and ``max_steps`` is set."""
        trainer = self.trainer
        batches: int | float = trainer.num_training_batches
        if trainer.max_epochs == -1 and trainer.max_steps is not None and trainer.max_steps > 0:
            remaining: int = trainer.max_steps - trainer.global_step
            return min(batches, remaining)
        return batches

    def _current(self, batches: list[int | float] | int | float) -> int | float:
        if isinstance(batches, list):
            assert self._current_eval_dataloader_idx is not None, "no eval dataloader has started yet"
            return batches[self._current_eval_dataloader_idx]
        return batches

    @property
    def total_val_batches_current_dataloader(self) -> int | float:
        """Batches of the current validation (or sanity check) dataloader."""
        trainer = self.trainer
        return self._current(trainer.num_sanity_val_batches if trainer.sanity_checking else trainer.num_val_batches)

    @property
    def total_test_batches_current_dataloader(self) -> int | float:
        """Batches of the current test dataloader."""
        return self._current(self.trainer.num_test_batches)

    @property
    def total_predict_batches_current_dataloader(self) -> int | float:
        """Batches of the current predict dataloader."""
        return self._current(self.trainer.num_predict_batches)

    @property
    def total_val_batches(self) -> int | float:
        """Validation batches over all dataloaders in this epoch (0 in epochs that skip validation)."""
        trainer = self.trainer
        every_n = getattr(trainer, "check_val_every_n_epoch", 1)
        if not getattr(trainer, "enable_validation", True) or (
            every_n is not None and (trainer.current_epoch + 1) % every_n != 0
        ):
            return 0
        batches = trainer.num_val_batches
        return sum(batches) if isinstance(batches, list) else batches

    def has_dataloader_changed(self, dataloader_idx: int) -> bool:
        """Record ``dataloader_idx`` as current; True when it differs from the previous one."""
        changed = self._current_eval_dataloader_idx != dataloader_idx
        self._current_eval_dataloader_idx = dataloader_idx
        return changed

    def reset_dataloader_idx_tracker(self) -> None:
        """Forget the current eval dataloader (at the end of an eval loop)."""
        self._current_eval_dataloader_idx = None

    def print(self, *args: Any, **kwargs: Any) -> None:
        """Print without breaking the bar's display."""
        print(*args, **kwargs)  # noqa: T201

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Attach the trainer; only global rank 0 draws."""
        self._trainer = trainer
        self._pl_module = pl_module
        if not trainer.is_global_zero:
            self.disable()

    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        """What the bar's postfix shows: ``v_num`` (the logger version) and the ``prog_bar=True`` metrics.

        Override it to change the postfix, e.g. ``items = super().get_metrics(...); items.pop("v_num", None)``.
        """
        standard = get_standard_metrics(trainer)
        logged = trainer.progress_bar_metrics
        duplicates = [key for key in standard if key in logged]
        if duplicates:
            warn_once(
                f"The progress bar already tracks a metric with the name(s) '{', '.join(duplicates)}' and"
                f" `self.log('{duplicates[0]}', ..., prog_bar=True)` will overwrite this value. "
                " If this is undesired, change the name or override `get_metrics()` in the progress bar callback."
            )
        return {**standard, **logged}


def get_standard_metrics(trainer: Trainer) -> dict[str, int | str]:
    """What every progress bar shows: ``{"v_num": version}`` when there are loggers with a version (several loggers'
    versions joined with "_"; strings keep their last 4 characters).

    Args:
        trainer: the Trainer whose loggers are read.
    """
    loggers = trainer.loggers
    if not loggers:
        return {}
    version: Any
    if len(loggers) == 1:
        version = loggers[0].version
    else:
        version = "_".join(dict.fromkeys(str(logger.version) for logger in loggers))
    if version in ("", None):
        return {}
    return {"v_num": version[-4:] if isinstance(version, str) else version}
