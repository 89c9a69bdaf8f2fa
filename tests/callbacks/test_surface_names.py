"""Smaller public names of Lightning's callbacks and loggers modules (Interval, WriteInterval, merge_dicts,
get_standard_metrics, convert_inf) and the progress-bar attributes callbacks read during a fit, compared with
pytorch-lightning 2.6.6."""

from __future__ import annotations

import math
import warnings
from types import ModuleType
from typing import Any

import pytest

import fulgor
from fulgor.callbacks.prediction_writer import BasePredictionWriter, WriteInterval
from fulgor.callbacks.progress import get_standard_metrics
from fulgor.callbacks.timer import Interval, Timer
from fulgor.callbacks.tqdm_progress import convert_inf
from fulgor.loggers.logger import merge_dicts
from helpers.boring import boring_classes


def test_enums() -> None:
    assert Interval("STEP") is Interval.step
    assert Interval.epoch == "epoch"
    assert Timer(duration="00:00:01:00", interval=Interval.epoch)._interval == "epoch"
    assert WriteInterval("batch_and_epoch").on_batch
    assert WriteInterval("batch_and_epoch").on_epoch
    assert not WriteInterval.EPOCH.on_batch
    assert WriteInterval("Batch") is WriteInterval.BATCH
    writer = BasePredictionWriter(write_interval=WriteInterval.EPOCH)
    assert writer.interval is WriteInterval.EPOCH
    assert writer.writes_on_epoch
    assert not writer.writes_on_batch


@pytest.mark.oracle
def test_enum_values_match_lightnings() -> None:
    timer = pytest.importorskip("pytorch_lightning.callbacks.timer")
    writer = pytest.importorskip("pytorch_lightning.callbacks.prediction_writer")
    assert [m.value for m in Interval] == [m.value for m in timer.Interval]
    assert [(m.name, m.value, m.on_batch, m.on_epoch) for m in WriteInterval] == [
        (m.name, m.value, m.on_batch, m.on_epoch) for m in writer.WriteInterval
    ]


@pytest.mark.oracle
def test_merge_dicts_matches_lightnings() -> None:
    logger = pytest.importorskip("pytorch_lightning.loggers.logger")
    d1 = {"a": 1.7, "b": 2.0, "c": 1, "d": {"d1": 1, "d3": 3}}
    d2 = {"a": 1.1, "b": 2.2, "v": 1, "d": {"d1": 2, "d2": 3}}
    d3 = {"a": 1.1, "v": 2.3, "d": {"d3": 3, "d4": {"d5": 1}}, "c": None}
    funcs = {"a": max, "v": max, "d": {"d1": sum}}
    assert merge_dicts([d1, d2, d3], funcs, min) == logger.merge_dicts([d1, d2, d3], funcs, min)
    ours, theirs = merge_dicts([d1, d2]), logger.merge_dicts([d1, d2])
    assert ours.pop("d") == pytest.approx(theirs.pop("d"))
    assert ours == pytest.approx(theirs)


def test_merge_dicts_default_is_the_mean_and_keeps_keys_that_are_only_none() -> None:
    assert merge_dicts([{"a": None}, {"a": None, "b": 2}]) == {"a": None, "b": 2.0}
    assert merge_dicts([{"a": 1.0, "b": {"c": 1}}, {"a": 3.0, "b": {"c": 5}}], {"b": {"c": max}}) == {
        "a": 2.0,
        "b": {"c": 5},
    }


def test_convert_inf() -> None:
    assert [convert_inf(x) for x in (None, math.inf, math.nan, 3, 2.5)] == [None, None, None, 3, 2.5]


def _standard(lib: ModuleType, versions: list[Any]) -> dict[str, Any]:
    loggers = []
    for version in versions:
        loggers.append(lib.loggers.CSVLogger("logs", version=version))
    trainer = lib.Trainer(logger=loggers or False, enable_progress_bar=False)
    module = pytest.importorskip("pytorch_lightning.callbacks.progress.progress_bar") if lib is not fulgor else None
    return (module.get_standard_metrics if module else get_standard_metrics)(trainer)  # type: ignore[no-any-return]


@pytest.mark.oracle
@pytest.mark.parametrize("versions", [[], [3], ["run_12345"], [1, "b"], [2, 2]])
def test_get_standard_metrics_matches_lightnings(versions: list[Any]) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert _standard(fulgor, versions) == _standard(pl, versions)


def _bar_attributes(lib: ModuleType) -> list[tuple[str, Any]]:
    seen: list[tuple[str, Any]] = []

    class Bar(lib.callbacks.TQDMProgressBar):  # type: ignore[misc,name-defined]
        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
            super().on_train_batch_end(trainer, *args)
            bar = self.train_progress_bar
            seen.append(("train", (bar.n, bar.total, self.total_train_batches, self.total_val_batches)))

        def on_validation_batch_end(self, trainer: Any, *args: Any) -> None:
            super().on_validation_batch_end(trainer, *args)
            bar = self.val_progress_bar
            seen.append(("val", (bar.n, bar.total, self.total_val_batches_current_dataloader)))

    trainer = lib.Trainer(
        max_epochs=2, limit_train_batches=3, limit_val_batches=2, check_val_every_n_epoch=2, logger=False,
        enable_checkpointing=False, enable_model_summary=False, callbacks=[Bar(refresh_rate=1)],
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(boring_classes(lib).BoringModel())
    return seen


def test_tqdm_attributes_during_a_fit() -> None:
    seen = _bar_attributes(fulgor)
    assert seen[:3] == [("val", (1, 2, 2)), ("val", (2, 2, 2)), ("train", (1, 3, 3, 0))]
    assert ("train", (3, 3, 3, 2)) in seen  # epoch 1 validates: its total counts


@pytest.mark.oracle
def test_tqdm_attributes_match_lightnings() -> None:
    pl = pytest.importorskip("pytorch_lightning")
    assert _bar_attributes(fulgor) == _bar_attributes(pl)


def test_rich_bar_tasks() -> None:
    pytest.importorskip("rich")
    from fulgor.callbacks import RichProgressBar

    seen: list[Any] = []

    class Bar(RichProgressBar):
        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
            super().on_train_batch_end(trainer, *args)
            seen.append((self.train_progress_bar.completed, self.train_progress_bar.total))

    bar = Bar()
    with pytest.raises(TypeError, match="training bar has not been created"):
        bar.train_progress_bar  # noqa: B018
    trainer = fulgor.Trainer(
        max_epochs=1, limit_train_batches=2, limit_val_batches=0, logger=False, enable_checkpointing=False,
        callbacks=[bar],
    )  # fmt: skip
    trainer.fit(boring_classes(fulgor).BoringModel())
    assert seen == [(1, 2), (2, 2)]
    bar.refresh(hard=True)
