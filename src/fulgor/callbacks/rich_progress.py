"""`RichProgressBar`: Lightning's rich progress display (description, bar, ``n/total``, ``elapsed • remaining``,
speed, and the metrics on the training bar). rich is imported when the bar starts, not when this module loads."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import Tensor

from fulgor.callbacks.progress_stages import Stage, StagedProgressBar
from fulgor.callbacks.rich_columns import RICH_CLASSES, rich_classes

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, Task, TaskID
    from rich.style import Style

    from fulgor.module import LightningModule
    from fulgor.trainer.trainer import Trainer

__all__ = ["RichProgressBar", "RichProgressBarTheme"]

# Each stage's task id attribute (public, as in Lightning).
_TASKS: dict[Stage, str] = {
    "sanity": "val_sanity_progress_bar_id",
    "train": "train_progress_bar_id",
    "validation": "val_progress_bar_id",
    "test": "test_progress_bar_id",
    "predict": "predict_progress_bar_id",
}
_LIVE = "live display"  # the redraw clock's key: one rich display holds every stage's task


@dataclass
class RichProgressBarTheme:
    """Styles of the bar's parts (rich style strings or ``Style`` objects), as in Lightning.

    Args:
        description: the "Epoch 3/9", "Validation" text.
        progress_bar: the bar while running.
        progress_bar_finished: the bar when complete.
        progress_bar_pulse: the bar of loaders without a length.
        batch_progress: the ``n/total`` counter.
        time: ``elapsed • remaining``.
        processing_speed: ``it/s``.
        metrics: the metrics text.
        metrics_text_delimiter: between two metrics.
        metrics_format: format spec of numeric metric values.
    """

    description: str | Style = ""
    progress_bar: str | Style = "#6206E0"
    progress_bar_finished: str | Style = "#6206E0"
    progress_bar_pulse: str | Style = "#6206E0"
    batch_progress: str | Style = ""
    time: str | Style = "dim"
    processing_speed: str | Style = "dim underline"
    metrics: str | Style = "italic"
    metrics_text_delimiter: str = " "
    metrics_format: str = ".3f"


_rich = rich_classes  # the name this module's earlier versions (and fulgor's tests) use


def _offered(name: str) -> Any:
    """This module's class `name`: one set on the module (a user's `mock.patch` of it) or the one built from rich."""
    value = globals().get(name)
    return value if value is not None else getattr(rich_classes(), name)


def __getattr__(name: str) -> Any:
    """Lightning's rich classes of this module (`CustomProgress`, `MetricsTextColumn`, ...), built on first access;
    absent, as in Lightning, where rich is not installed."""
    if name in RICH_CLASSES:
        try:
            return getattr(rich_classes(), name)
        except ModuleNotFoundError:
            pass
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class RichProgressBar(StagedProgressBar):
    """Progress bars drawn with `rich <https://github.com/Textualize/rich>`_ (``pip install rich``).

    One live display holds the bars: "Epoch N/M" (with ``v_num`` and the ``prog_bar=True`` metrics), "Validation",
    "Sanity Checking", "Testing", "Predicting". Redraws happen at most ``refresh_rate`` times per second, and counts
    and metrics are handed to rich only when a redraw happens. When the console is not a terminal, nothing is redrawn:
    the final state is printed once when the stage ends.

    Args:
        refresh_rate: redraws per second; 0 disables the bar. The default is 10 (rich's own), not Lightning's 100:
            a redraw builds rich tables (~1 ms), see docs/performance.md.
        leave: keep each finished epoch's bar on screen.
        theme: the styles of the parts.
        console_kwargs: arguments for a dedicated ``rich.console.Console`` (``file``, ``width``, ``record``...);
            by default rich's global console is used.

    Example::

        trainer = Trainer(callbacks=[RichProgressBar(leave=True)])
    """

    def __init__(
        self,
        refresh_rate: int = 10,
        leave: bool = False,
        theme: RichProgressBarTheme | None = None,
        console_kwargs: dict[str, Any] | None = None,
    ) -> None:
        rich_classes()  # fail now, with the install hint, rather than when training starts
        super().__init__(refresh_rate, leave, rate_meaning="redraws per second, 0 disables")
        self.theme = theme if theme is not None else RichProgressBarTheme()
        self._console_kwargs = console_kwargs or {}
        self._console: Console | None = None
        self.progress: Progress | None = None
        self._stopped = False
        self._live = False  # whether the console redraws in place (a terminal or Jupyter), known once it starts
        self._pending: dict[TaskID, int] = {}  # batch counts not yet handed to rich
        self._metrics: dict[str, Any] = {}  # the last `get_metrics`, shown by the display's MetricsTextColumn
        self._metric_component: Any = None
        self.train_progress_bar_id: TaskID | None = None
        self.val_sanity_progress_bar_id: TaskID | None = None
        self.val_progress_bar_id: TaskID | None = None
        self.test_progress_bar_id: TaskID | None = None
        self.predict_progress_bar_id: TaskID | None = None

    def __getstate__(self) -> dict[str, Any]:
        # The live display and console hold locks and threads; they are recreated when a stage starts.
        return {**self.__dict__, "progress": None, "_console": None, "_metric_component": None}

    @property
    def console(self) -> Console | None:
        """The console drawn on (None before the first stage starts)."""
        return self._console

    def _task(self, task_id: TaskID | None, what: str) -> Task:
        """The rich task of `task_id`, with the counts not yet handed to rich (the bar defers them) handed over."""
        if self.progress is None or task_id is None:
            raise TypeError(f"The `{type(self).__name__}` {what} bar has not been created yet.")
        completed = self._pending.pop(task_id, None)
        if completed is not None:
            self.progress.update(task_id, completed=completed, visible=True)
        return next(task for task in self.progress.tasks if task.id == task_id)

    @property
    def train_progress_bar(self) -> Task:
        """The rich task of the training bar."""
        return self._task(self.train_progress_bar_id, "training")

    @property
    def val_sanity_check_bar(self) -> Task:
        """The rich task of the sanity-check bar."""
        return self._task(self.val_sanity_progress_bar_id, "sanity check")

    @property
    def val_progress_bar(self) -> Task:
        """The rich task of the validation bar."""
        return self._task(self.val_progress_bar_id, "validation")

    @property
    def test_progress_bar(self) -> Task:
        """The rich task of the test bar."""
        return self._task(self.test_progress_bar_id, "test")

    def refresh(self, hard: bool = False) -> None:
        """Redraw now with the latest counts (``hard``: also where the console is not a terminal)."""
        self._refresh()
        if hard and self.progress is not None and not self._stopped:
            self.progress.refresh()

    # ---- the display ----

    def configure_columns(self, trainer: Trainer) -> list[Any]:
        """The columns before the metrics (Lightning's: description, `CustomBarColumn`, `BatchesProcessedColumn`,
        `CustomTimeColumn`, `ProcessingSpeedColumn`); override to change the layout."""
        theme = self.theme
        return [
            rich_classes().TextColumn("[progress.description]{task.description}"),
            _offered("CustomBarColumn")(
                complete_style=theme.progress_bar,
                finished_style=theme.progress_bar_finished,
                pulse_style=theme.progress_bar_pulse,
            ),
            _offered("BatchesProcessedColumn")(style=theme.batch_progress),
            _offered("CustomTimeColumn")(style=theme.time),
            _offered("ProcessingSpeedColumn")(style=theme.processing_speed),
        ]

    def _init_progress(self, trainer: Trainer) -> None:
        if not self.is_enabled or (self.progress is not None and not self._stopped):
            return
        rich, theme = rich_classes(), self.theme
        if self._console is None:  # one console for the bar's life, so a recording console keeps every epoch
            self._console = rich.Console(**self._console_kwargs) if self._console_kwargs else rich.get_console()
        metrics = _offered("MetricsTextColumn")(
            trainer, theme.metrics, theme.metrics_text_delimiter, theme.metrics_format
        )
        metrics._bar = self  # the bar whose training task gets the metrics (Lightning asks the trainer for it)
        metrics.update(self._metrics)  # a new display (`leave`) keeps showing the metrics already read
        self._metric_component = metrics
        # Refreshing is driven from the hooks (throttled), not by rich's background thread.
        self.progress = _offered("CustomProgress")(
            *self.configure_columns(trainer), metrics, auto_refresh=False, console=self._console
        )
        console = self._console
        self._live = console.is_jupyter or (console.is_terminal and not console.is_dumb_terminal)
        self._reset_ids()
        self.progress.start()
        self._stopped = False

    def _stop_progress(self) -> None:
        if self.progress is not None and not self._stopped:
            self._refresh()  # the counts not yet handed over, so the final state printed is current
            self.progress.stop()
            self._stopped = True

    def _reset_ids(self) -> None:
        self._pending.clear()
        self.train_progress_bar_id = self.val_sanity_progress_bar_id = self.val_progress_bar_id = None
        self.test_progress_bar_id = self.predict_progress_bar_id = None

    def _add_task(self, total: int | float, description: str, visible: bool = True) -> TaskID:
        assert self.progress is not None
        if self.theme.description:
            description = f"[{self.theme.description}]{description}"
        return self.progress.add_task(description, total=_known(total), visible=visible)

    def _hide(self, task_id: TaskID | None) -> None:
        if self.progress is not None and task_id is not None:
            self._pending.pop(task_id, None)  # a pending count would make it visible again
            self.progress.update(task_id, visible=False)

    def _refresh(self) -> None:
        """Hand the pending counts to rich and redraw."""
        if self.progress is None or self._stopped:
            return
        self._restart_clock(_LIVE)
        for task_id, completed in self._pending.items():
            self.progress.update(task_id, completed=completed, visible=True)
        self._pending.clear()
        if self._live:
            self.progress.refresh()  # elsewhere rich prints only the final state, at stop: skip building it

    def _get_train_description(self, current_epoch: int) -> str:
        description = f"Epoch {current_epoch}"
        if self.trainer.max_epochs is not None:
            description += f"/{self.trainer.max_epochs - 1}"
        # Padded to "Validation"'s width so the bars do not jump when both are shown.
        return f"{description:{len(self.validation_description)}}"

    # ---- the display calls of StagedProgressBar, on the rich task of each stage ----

    def _open(self, stage: Stage) -> None:
        self._init_progress(self.trainer)  # one display for every stage: started by the first

    def _start_epoch(self, total: int | float) -> None:
        if self.is_disabled:
            return
        if self._leave and self.train_progress_bar_id is not None:
            self._stop_progress()  # the finished epoch stays printed; a new display starts
            self._init_progress(self.trainer)
        description = self._get_train_description(self.trainer.current_epoch)
        if self.train_progress_bar_id is None:
            self.train_progress_bar_id = self._add_task(total, description)
        elif self.progress is not None:
            self._pending.pop(self.train_progress_bar_id, None)
            self.progress.reset(self.train_progress_bar_id, total=_known(total), description=description, visible=True)
        self._refresh()

    def _start_dataloader(self, stage: Stage, total: int | float, dataloader_idx: int) -> None:
        if self.is_disabled:
            return
        attr = _TASKS[stage]
        self._hide(getattr(self, attr))  # one task per stage, as in Lightning: the previous dataloader's goes
        # Validation tasks appear with their first count; test and predict ones at once.
        setattr(self, attr, self._add_task(total, self._description(stage), visible=stage in ("test", "predict")))
        self._refresh()

    def _advance(self, stage: Stage, n: int) -> bool:
        if self.progress is None or not self.is_enabled:
            return False
        task_id: TaskID | None = getattr(self, _TASKS[stage])
        if task_id is None and stage == "train":  # resumed mid-epoch
            task_id = self.train_progress_bar_id = self._add_task(
                self.total_train_batches, self._get_train_description(self.trainer.current_epoch)
            )
        if task_id is None:
            return False
        self._pending[task_id] = n  # handed to rich by the next redraw
        last = n == self.progress._tasks[task_id].total
        if self._stopped:
            return False
        if not self._live:  # nothing is drawn in place (a log file): only the last batch updates the final state
            return last
        return self._redraw_due(_LIVE, last, 1.0 / self._refresh_rate)

    def _update_metrics(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Shown by the next redraw; after validation too (no `_redraw_live`), as Lightning's rich bar does.
        if self.is_enabled:
            metrics = self.get_metrics(trainer, pl_module)
            self._metrics = {k: v.item() if isinstance(v, Tensor) else v for k, v in metrics.items()}
            if self._metric_component is not None:
                self._metric_component.update(self._metrics)

    def _draw(self, stage: Stage) -> None:
        self._refresh()  # one display for every stage

    def _close(self, stage: Stage) -> None:
        # The other stages' tasks stay until teardown; validation's is hidden at its epoch end during fit.
        if stage == "sanity":
            self._hide(self.val_sanity_progress_bar_id)
            self._refresh()

    # ---- hooks of its own ----

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.is_enabled and trainer.state.fn == "fit":
            self._hide(self.val_progress_bar_id)
            self._refresh()

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._stop_progress()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._stop_progress()


def _known(total: int | float) -> int | float | None:
    """rich draws a pulsing bar and "--" for an unknown (None) total: loaders without a length."""
    return None if math.isinf(total) else total
