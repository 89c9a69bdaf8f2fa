"""`StagedProgressBar`: what the built-in bars share. It turns the Trainer's hooks into calls on one display per stage
(open it, restart it for each epoch or eval dataloader, advance it batch by batch, redraw it when due, close it) and
keeps the bookkeeping: which eval dataloader is current, each stage's total and description, the refresh rate and the
redraw clock. `TQDMProgressBar` and `RichProgressBar` only say how their own display is created, updated and closed."""

from __future__ import annotations

import time
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, Literal

from fulgor.callbacks.progress import ProgressBar

if TYPE_CHECKING:
    from fulgor.module import LightningModule
    from fulgor.trainer.trainer import Trainer

__all__ = ["Stage", "StagedProgressBar"]

Stage = Literal["sanity", "train", "validation", "test", "predict"]


class StagedProgressBar(ProgressBar):
    """The hook bodies of the built-in bars, written once over the display calls a subclass implements.

    The display calls are ``_open``, ``_start_epoch``, ``_start_dataloader``, ``_advance``, ``_update_metrics``,
    ``_draw`` and ``_close`` (and, optionally, ``_redraw_live``); the hooks decide when each runs. Per batch a bar
    pays for ``_advance`` (record the count, say whether a redraw is due, usually through ``_redraw_due``) and, only
    when one is due, for the metrics and ``_draw``.

    Args:
        refresh_rate: how often the display redraws, in the bar's own unit; 0 disables the bar.
        leave: keep each finished training epoch's display on screen.
        rate_meaning: what ``refresh_rate`` counts, for the message that rejects an invalid value.
    """

    def __init__(self, refresh_rate: int, leave: bool, rate_meaning: str) -> None:
        super().__init__()
        if not isinstance(refresh_rate, int) or refresh_rate < 0:
            raise ValueError(f"`refresh_rate` must be an int >= 0 ({rate_meaning}), got {refresh_rate!r}.")
        self._refresh_rate = refresh_rate
        self._leave = leave
        # Which display validation batches advance, chosen when a dataloader starts so that no batch asks the trainer.
        self._validation_stage: Stage = "validation"
        self._last_draw: dict[Hashable, float] = {}  # the monotonic time of each display's last redraw

    @property
    def refresh_rate(self) -> int:
        """How often the display redraws, in the bar's own unit (0: disabled)."""
        return self._refresh_rate

    @property
    def is_enabled(self) -> bool:
        """Enabled and ``refresh_rate > 0``."""
        return self._enabled and self._refresh_rate > 0

    # ---- the display calls a bar implements ----

    def _open(self, stage: Stage) -> None:
        """Create the display of ``stage`` when its loop starts."""
        raise NotImplementedError

    def _start_epoch(self, total: int | float) -> None:
        """Restart the training display at 0 of ``total`` batches for a new epoch."""
        raise NotImplementedError

    def _start_dataloader(self, stage: Stage, total: int | float, dataloader_idx: int) -> None:
        """Restart the display of eval ``stage`` at 0 of ``total`` batches for dataloader ``dataloader_idx``."""
        raise NotImplementedError

    def _advance(self, stage: Stage, n: int) -> bool:
        """Record ``n`` finished batches on the display of ``stage``; True when a redraw is due."""
        raise NotImplementedError

    def _update_metrics(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Read ``get_metrics`` into the training display without drawing it."""
        raise NotImplementedError

    def _draw(self, stage: Stage) -> None:
        """Redraw the display of ``stage``."""
        raise NotImplementedError

    def _redraw_live(self, stage: Stage) -> None:
        """Redraw the display of ``stage`` if it is drawn live, writing nothing to a log (new metrics after
        validation). By default nothing: the next ``_draw`` shows them."""

    def _close(self, stage: Stage) -> None:
        """Close the display of ``stage``: its loop (or, with ``leave``, a training epoch) ended.

        ``"validation"`` is closed at the end of every validation loop, the sanity check's included (bars that
        show both in one display close it there); ``"sanity"`` when the sanity check ends.
        """
        raise NotImplementedError

    # ---- shared bookkeeping ----

    def _description(self, stage: Stage) -> str:
        """The description of an eval stage's display."""
        if stage == "sanity":
            return self.sanity_check_description
        if stage == "test":
            return self.test_description
        return self.predict_description if stage == "predict" else self.validation_description

    def _redraw_due(self, key: Hashable, last: bool, interval: float) -> bool:
        """Whether display ``key`` redraws now: on its ``last`` batch, or ``interval`` seconds after its last redraw.

        The clock is read once (callers check their cheaper conditions first); a yes counts as the redraw.
        """
        now = time.monotonic()
        if not last and now - self._last_draw.get(key, 0.0) < interval:
            return False
        self._last_draw[key] = now
        return True

    def _restart_clock(self, key: Hashable) -> None:
        """Count the redraw interval of display ``key`` from now (it was just redrawn or restarted)."""
        self._last_draw[key] = time.monotonic()

    # ---- sanity check and training ----

    def _start_stage(self, trainer: Trainer, pl_module: LightningModule, stage: Stage) -> None:
        """Open the display of `stage`; a bar whose hooks are called directly (without `setup`) uses this trainer."""
        if self._trainer is None:
            self._trainer, self._pl_module = trainer, pl_module
        self._open(stage)

    def on_sanity_check_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start_stage(trainer, pl_module, "sanity")

    def on_sanity_check_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._close("sanity")

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start_stage(trainer, pl_module, "train")

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start_epoch(self.total_train_batches)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._advance("train", batch_idx + 1):
            self._update_metrics(trainer, pl_module)  # read only for a redraw: `get_metrics` is not free
            self._draw("train")

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._update_metrics(trainer, pl_module)
        self._draw("train")
        if self._leave:
            self._close("train")

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._close("train")

    # ---- validation (the sanity check runs it too) ----

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:  # the sanity check's display was opened by `on_sanity_check_start`
            self._start_stage(trainer, pl_module, "validation")

    def on_validation_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if self.has_dataloader_changed(dataloader_idx):
            self._validation_stage = "sanity" if trainer.sanity_checking else "validation"
            self._start_dataloader(self._validation_stage, self.total_val_batches_current_dataloader, dataloader_idx)

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        stage = self._validation_stage
        if self._advance(stage, batch_idx + 1):
            self._draw(stage)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._close("validation")  # in the sanity check too; `on_sanity_check_end` closes the "sanity" stage
        self.reset_dataloader_idx_tracker()
        if trainer.state.fn == "fit":  # the validation metrics join the training display's
            self._update_metrics(trainer, pl_module)
            self._redraw_live("train")

    # ---- test and predict ----

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start_stage(trainer, pl_module, "test")

    def on_test_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if self.has_dataloader_changed(dataloader_idx):
            self._start_dataloader("test", self.total_test_batches_current_dataloader, dataloader_idx)

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._advance("test", batch_idx + 1):
            self._draw("test")

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._close("test")
        self.reset_dataloader_idx_tracker()

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start_stage(trainer, pl_module, "predict")

    def on_predict_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if self.has_dataloader_changed(dataloader_idx):
            self._start_dataloader("predict", self.total_predict_batches_current_dataloader, dataloader_idx)

    def on_predict_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._advance("predict", batch_idx + 1):
            self._draw("predict")

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._close("predict")
        self.reset_dataloader_idx_tracker()
