"""The Trainer's ThroughputMonitor sends what Lightning's sends, the way Lightning sends it: the same
`logger.log_metrics(metrics=..., step=...)` calls (by keyword: loggers and mocks see Lightning's call), the same
numbers, with a clock that ticks the same in both runs."""

from __future__ import annotations

import itertools
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import pytest

import fulgor
from fulgor.callbacks import ThroughputMonitor
from fulgor.demos import BoringModel


def _fit(lib: ModuleType, monitor_cls: type, model_cls: type, tmp_path: Path, flops_path: str, **flags: Any) -> Any:
    logger = mock.Mock()
    logger.save_dir = str(tmp_path)
    monitor = monitor_cls(batch_size_fn=lambda batch: 3, length_fn=lambda batch: 6, window_size=2, separator="|")
    model = model_cls()
    model.flops_per_batch = 10
    settings: dict[str, Any] = {
        "devices": 1,
        "accelerator": "cpu",
        "logger": logger,
        "callbacks": monitor,
        "max_steps": 4,
        "log_every_n_steps": 1,
        "limit_val_batches": 0,
        "num_sanity_val_steps": 0,
        "enable_checkpointing": False,
        "enable_model_summary": False,
        "enable_progress_bar": False,
        "default_root_dir": str(tmp_path),
    }
    settings.update(flags)
    trainer = lib.Trainer(**settings)
    clock = itertools.count(start=0.5, step=1.0)
    with mock.patch(flops_path, return_value=100), mock.patch("time.perf_counter", side_effect=lambda: next(clock)):
        trainer.fit(model)
    return logger.log_metrics.mock_calls


def test_calls_are_by_keyword(tmp_path: Path) -> None:
    calls = _fit(
        fulgor, ThroughputMonitor, BoringModel, tmp_path, "fulgor.callbacks.throughput_monitor.get_available_flops"
    )
    assert len(calls) == 4
    for index, logged in enumerate(calls):
        assert logged.args == ()
        assert logged.kwargs["step"] == index
        assert logged.kwargs["metrics"]["train|batches"] == index + 1
    assert calls[-1].kwargs["metrics"]["train|device|mfu"] == pytest.approx(0.1)


@pytest.mark.oracle
@pytest.mark.parametrize("accumulate", [1, 2])
def test_same_calls_as_lightning(tmp_path: Path, accumulate: int) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    from pytorch_lightning.callbacks import ThroughputMonitor as LightningThroughputMonitor
    from pytorch_lightning.demos.boring_classes import BoringModel as LightningBoringModel

    ours = _fit(
        fulgor,
        ThroughputMonitor,
        BoringModel,
        tmp_path / "ours",
        "fulgor.callbacks.throughput_monitor.get_available_flops",
        accumulate_grad_batches=accumulate,
    )
    theirs = _fit(
        pl,
        LightningThroughputMonitor,
        LightningBoringModel,
        tmp_path / "theirs",
        "pytorch_lightning.callbacks.throughput_monitor.get_available_flops",
        accumulate_grad_batches=accumulate,
    )
    assert ours == theirs
    assert len(ours) == 4
