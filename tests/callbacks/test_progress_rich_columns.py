"""Lightning's public rich classes of `callbacks.progress.rich_progress` (`CustomProgress`, the columns): the same
renders as Lightning's on the same tasks, infinite tasks, the metrics column, and patching them on the module."""

from __future__ import annotations

import io
import pickle
from typing import Any
from unittest import mock

import pytest

pytest.importorskip("rich")

from rich.console import Console

import fulgor.callbacks.rich_progress as rich_progress
from fulgor.callbacks.rich_columns import RICH_CLASSES


def _render(progress_module: Any, total: float, completed: int) -> list[str]:
    """Each column's text for one task of a `CustomProgress`, rendered on a plain console."""
    columns = [
        progress_module.BatchesProcessedColumn(style="bold"),
        progress_module.CustomTimeColumn(style="dim"),
        progress_module.ProcessingSpeedColumn(style="dim"),
    ]
    progress = progress_module.CustomProgress(*columns, console=Console(file=io.StringIO()), auto_refresh=False)
    task_id = progress.add_task("Epoch 0", total=total)
    progress.update(task_id, completed=completed)
    task = next(t for t in progress.tasks if t.id == task_id)
    texts = [column.render(task).plain for column in columns]
    return [type(task).__name__, str(task.time_remaining is None), *texts]


@pytest.mark.oracle
@pytest.mark.parametrize(("total", "completed"), [(10.0, 0), (10.0, 1), (float("inf"), 3)])
def test_columns_render_as_lightning(total: float, completed: int) -> None:
    pl_rich = pytest.importorskip("pytorch_lightning.callbacks.progress.rich_progress")
    assert _render(rich_progress, total, completed) == _render(pl_rich, total, completed)


def test_an_infinite_task_is_custom_and_has_no_time_remaining() -> None:
    kind, no_remaining, batches, times, _ = _render(rich_progress, float("inf"), 3)
    assert (kind, no_remaining, batches) == ("CustomInfiniteTask", "True", "3/--")
    assert times.endswith("-:--:--")


def _trainer(fn: str = "fit", sanity: bool = False, train_id: Any = 0) -> Any:
    state = mock.Mock(fn=fn)
    return mock.Mock(
        state=state, sanity_checking=sanity, progress_bar_callback=mock.Mock(train_progress_bar_id=train_id)
    )


@pytest.mark.parametrize(
    ("trainer", "shown"),
    [
        (_trainer(), "a: 1.250 b: x"),
        (_trainer(sanity=True), ""),
        (_trainer("validate"), ""),
        (_trainer(train_id=5), ""),
    ],
)
def test_metrics_column_shows_metrics_on_the_fit_training_task_only(trainer: Any, shown: str) -> None:
    column = rich_progress.MetricsTextColumn(trainer, "italic", " ", ".3f")
    column.update({"a": 1.25, "b": "x"})
    task = mock.Mock(id=0)
    assert column.render(task).plain == shown


def test_classes_are_offered_by_name_and_pickle() -> None:
    for name in RICH_CLASSES:
        assert getattr(rich_progress, name).__name__ == name
    column = rich_progress.BatchesProcessedColumn(style="dim")
    assert pickle.loads(pickle.dumps(column)).style == "dim"
    with pytest.raises(AttributeError):
        rich_progress.NotAColumn  # noqa: B018


def test_patching_a_column_on_the_module_reaches_the_bar() -> None:
    bar = rich_progress.RichProgressBar(theme=rich_progress.RichProgressBarTheme(time="red"))
    with mock.patch.object(rich_progress, "CustomTimeColumn", create=True) as column:
        columns = bar.configure_columns(mock.Mock())
    assert column.call_args.kwargs == {"style": "red"}
    assert columns[3] is column.return_value
