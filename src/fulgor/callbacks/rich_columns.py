"""The rich classes `RichProgressBar` draws with (Lightning's public names: the bar, batches, time, speed and metrics
columns, `CustomProgress`, `CustomInfiniteTask`), defined on first use so that rich is imported only then."""

from __future__ import annotations

import functools
import math
from datetime import timedelta
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.progress import Task

__all__ = ["RICH_CLASSES", "rich_classes"]

# The names `callbacks.progress.rich_progress` offers (Lightning defines them only where rich is installed).
RICH_CLASSES = frozenset(
    {
        "BatchesProcessedColumn",
        "CustomBarColumn",
        "CustomInfiniteTask",
        "CustomProgress",
        "CustomTimeColumn",
        "MetricsTextColumn",
        "ProcessingSpeedColumn",
        "Progress",  # rich's, which Lightning's module imports (and users patch there)
    }
)


def batches_text(task: Task) -> str:
    """``completed/total`` (``--`` for a loader without a length)."""
    total = task.total
    return f"{int(task.completed)}/{'--' if total is None or math.isinf(total) else total}"


def times_text(task: Task) -> str:
    """``elapsed • remaining`` as ``h:mm:ss`` (``-:--:--`` when unknown)."""
    elapsed = task.finished_time if task.finished else task.elapsed

    def fmt(seconds: float | None) -> str:
        return "-:--:--" if seconds is None or not math.isfinite(seconds) else str(timedelta(seconds=int(seconds)))

    return f"{fmt(elapsed)} • {fmt(task.time_remaining)}"


def speed_text(task: Task) -> str:
    """``<batches per second>it/s``."""
    speed = task.speed
    if speed is None and task.finished and task.completed > 1 and task.elapsed:
        # rich estimates speed from two or more updates; where the console is not a terminal the bar hands a
        # finished task's count over once, so the mean speed stands in for what per-batch updates would show
        # (after one batch there is no rate yet: "0.00it/s", as Lightning's bar shows).
        speed = task.completed / task.elapsed
    return f"{speed:>.2f}it/s" if speed is not None else "0.00it/s"


def format_metric(value: Any, metrics_format: str) -> str:
    """A metric as the bar shows it: numbers with `metrics_format`, anything else as text."""
    if isinstance(value, str):
        return value
    try:
        return f"{value:{metrics_format}}"
    except (TypeError, ValueError):
        return str(value)


@functools.cache
def rich_classes() -> SimpleNamespace:
    """Import rich once, on first use, and define the column, progress and task classes on its bases."""
    try:
        import rich
        import rich.console
        import rich.progress
        import rich.text
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            "`RichProgressBar` and `RichModelSummary` need `rich`. Install it with `pip install rich`."
        ) from err
    classes = {**_columns(rich.progress, rich.text.Text), **_progress(rich.progress)}
    for name, cls in classes.items():  # named as the module that offers them, so instances pickle and print plainly
        cls.__module__, cls.__qualname__ = "fulgor.callbacks.rich_progress", name
    return SimpleNamespace(
        get_console=rich.get_console,
        Console=rich.console.Console,
        Progress=rich.progress.Progress,
        TextColumn=rich.progress.TextColumn,
        **classes,
    )


def _columns(progress: Any, text: Any) -> dict[str, type]:
    """The bar, batches, time, speed and metrics columns."""

    class CustomBarColumn(progress.BarColumn):  # type: ignore[misc]
        """rich's bar; a loader without a length pulses."""

    class _StyledColumn(progress.ProgressColumn):  # type: ignore[misc]
        def __init__(self, style: Any) -> None:
            super().__init__()
            self.style = style

    class BatchesProcessedColumn(_StyledColumn):
        """``completed/total`` batches."""

        def render(self, task: Task) -> Any:
            return text(batches_text(task), style=self.style)

    class CustomTimeColumn(_StyledColumn):
        """``elapsed • remaining``."""

        max_refresh = 0.5  # rich redraws the column at most twice a second

        def render(self, task: Task) -> Any:
            return text(times_text(task), style=self.style)

    class ProcessingSpeedColumn(_StyledColumn):
        """Batches per second."""

        def render(self, task: Task) -> Any:
            return text(speed_text(task), style=self.style)

    class MetricsTextColumn(progress.ProgressColumn):  # type: ignore[misc]
        """The metrics after the training bar (``update`` hands them over); empty on the other bars."""

        def __init__(self, trainer: Any, style: Any, text_delimiter: str, metrics_format: str) -> None:
            super().__init__()
            self._trainer = trainer
            self._style = style
            self._text_delimiter = text_delimiter
            self._metrics_format = metrics_format
            self._metrics: dict[str, Any] = {}
            self._bar: Any = None  # set by fulgor's bar; otherwise the trainer's progress bar is asked

        def update(self, metrics: dict[str, Any]) -> None:
            """The metrics shown from the next redraw on."""
            self._metrics = metrics

        def render(self, task: Task) -> Any:
            if not _shows_metrics(self._trainer, self._bar, task):
                return text()
            items = (f"{k}: {format_metric(v, self._metrics_format)}" for k, v in self._metrics.items())
            return text(self._text_delimiter.join(items), justify="left", style=self._style)

    return {
        "CustomBarColumn": CustomBarColumn,
        "BatchesProcessedColumn": BatchesProcessedColumn,
        "CustomTimeColumn": CustomTimeColumn,
        "ProcessingSpeedColumn": ProcessingSpeedColumn,
        "MetricsTextColumn": MetricsTextColumn,
    }


def _shows_metrics(trainer: Any, bar: Any, task: Task) -> bool:
    """Metrics go on the training bar of a fit, outside the sanity check."""
    if bar is None:
        bar = getattr(trainer, "progress_bar_callback", None)
    in_fit = trainer.state.fn == "fit" and not trainer.sanity_checking
    return in_fit and getattr(bar, "train_progress_bar_id", -1) == task.id


def _progress(progress: Any) -> dict[str, type]:
    """`CustomProgress` and its `CustomInfiniteTask`."""
    task_id = progress.TaskID

    class CustomInfiniteTask(progress.Task):  # type: ignore[misc]
        """A task without a length: no time remaining."""

        @property
        def time_remaining(self) -> float | None:
            return None

    class CustomProgress(progress.Progress):  # type: ignore[misc]
        """rich's Progress whose tasks of infinite length are `CustomInfiniteTask` (drawn pulsing, ``--`` total)."""

        def add_task(
            self, description: str, start: bool = True, total: float | None = 100.0, completed: int = 0,
            visible: bool = True, **fields: Any,
        ) -> Any:  # fmt: skip
            if total is None or not math.isinf(total):
                return super().add_task(description, start, total, completed, visible, **fields)
            task = CustomInfiniteTask(
                task_id(0), description, None, completed, visible=visible, fields=fields, _get_time=self.get_time,
                _lock=self._lock,
            )  # fmt: skip
            return self.add_custom_task(task, start)

        def add_custom_task(self, task: CustomInfiniteTask, start: bool = True) -> Any:
            """Add a task built by the caller (its id is assigned here)."""
            with self._lock:
                index: Any = getattr(self, "_task_index")  # noqa: B009  (rich does not annotate it)
                task.id = task_id(index)
                self._tasks[task.id] = task
                if start:
                    self.start_task(task.id)
                self._task_index = task_id(int(index) + 1)
            self.refresh()
            return task.id

    return {"CustomInfiniteTask": CustomInfiniteTask, "CustomProgress": CustomProgress}
