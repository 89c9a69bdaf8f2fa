"""`ThroughputMonitor` during a fit with validation between training steps: the times and counts it logs, with
`time.perf_counter` replaced by a fixed sequence of readings (the clock is read exactly where Lightning reads it:
training start, each batch end, each validation start), compared with pytorch-lightning 2.6.6."""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import pytest

import fulgor


def logged(lib: ModuleType, root: Path, readings: list[float]) -> list[Any]:
    """The `log_metrics` calls of a 2-step fit validating after every step (1 validation batch)."""
    logger = mock.Mock()
    logger.save_dir = root
    monitor = lib.callbacks.ThroughputMonitor(batch_size_fn=lambda batch: 1, window_size=2)
    trainer = lib.Trainer(
        devices=1, logger=logger, callbacks=monitor, max_steps=2, val_check_interval=1, log_every_n_steps=1,
        limit_val_batches=1, num_sanity_val_steps=2, enable_checkpointing=False, enable_model_summary=False,
        enable_progress_bar=False,
    )  # fmt: skip
    model = importlib.import_module(f"{lib.__name__}.demos.boring_classes").BoringModel()
    with warnings.catch_warnings(), mock.patch("time.perf_counter", side_effect=readings):
        warnings.simplefilter("ignore")
        trainer.fit(model)
    return [(c.kwargs["metrics"], c.kwargs["step"]) for c in logger.log_metrics.mock_calls]


READINGS: list[float] = [0, 7, 11, 13, 19, 23, 29]  # train t0, train t1, val t0, val t1, train t1, val t0, val t1


def test_training_time_leaves_out_the_validation(tmp_path: Path) -> None:
    calls = logged(fulgor, tmp_path, READINGS)
    assert [step for _, step in calls] == [0, 1, 1, 2]
    assert calls[0][0] == {"train/time": 7, "train/batches": 1, "train/samples": 1, "epoch": 0}
    assert calls[1][0] == {"validate/time": 2, "validate/batches": 1, "validate/samples": 1}
    assert calls[2][0]["train/time"] == 7 + (19 - 13)  # the pause and the validation do not count as training
    assert calls[3][0] == {"validate/time": 6, "validate/batches": 1, "validate/samples": 1}


def test_clock_running_out_in_the_last_validation_ends_the_fit_quietly(tmp_path: Path) -> None:
    """The clock's 6th reading (the validation after the last step) raises StopIteration: as in Lightning, the epoch
    takes it for the end of its data and the fit ends without it."""
    calls = logged(fulgor, tmp_path, READINGS[:5])
    assert [step for _, step in calls] == [0, 1, 1]


@pytest.mark.oracle
@pytest.mark.parametrize("n_readings", [5, 7])
def test_logged_throughput_equals_lightnings(n_readings: int, tmp_path: Path) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    ours = logged(fulgor, tmp_path / "fulgor", READINGS[:n_readings])
    assert ours == logged(pl, tmp_path / "pl", READINGS[:n_readings])
