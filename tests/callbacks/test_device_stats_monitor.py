"""DeviceStatsMonitor: which hooks log, under which keys and steps, at which cadence, and its errors; the rows are
compared with pytorch-lightning 2.6.6 given the same device stats."""

from __future__ import annotations

import sys
import warnings
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

import fulgor
from fulgor.callbacks import DeviceStatsMonitor
from fulgor.callbacks import device_stats_monitor as monitor_module
from fulgor.errors import MisconfigurationException
from helpers.boring import boring_classes

STATS = {"cpu_percent": 12.5, "cpu_vm_percent": 40.0, "cpu_swap_percent": 1.0}


def _recording_logger(lib: ModuleType, rows: list[tuple[int | None, dict[str, float]]]) -> Any:
    class Recorder(lib.loggers.Logger):  # type: ignore[misc,name-defined]
        name, version = "r", 0

        def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
            if any(key.startswith("DeviceStatsMonitor") for key in metrics):
                rows.append((step, dict(metrics)))

        def log_hyperparams(self, *args: Any, **kwargs: Any) -> None:
            pass

    return Recorder()


def _fit_and_test(lib: ModuleType, **trainer_flags: Any) -> list[tuple[int | None, dict[str, float]]]:
    rows: list[tuple[int | None, dict[str, float]]] = []
    trainer = lib.Trainer(
        max_epochs=2, limit_train_batches=4, limit_val_batches=2, limit_test_batches=3, log_every_n_steps=2,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        logger=_recording_logger(lib, rows), callbacks=[lib.callbacks.DeviceStatsMonitor(cpu_stats=True)],
        **trainer_flags,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(boring_classes(lib).BoringModel())
        trainer.test(boring_classes(lib).BoringModel(), verbose=False)
    return rows


def test_logs_the_accelerators_stats_at_the_logging_cadence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(monitor_module, "_device_stats", lambda trainer, device: dict(STATS))
    rows = _fit_and_test(fulgor)
    step, first = rows[2]
    assert step == 1
    assert first == {f"DeviceStatsMonitor.on_train_batch_start/{k}": v for k, v in STATS.items()}
    hooks = [(step, next(iter(metrics)).split("/")[0].split(".")[1]) for step, metrics in rows]
    # The sanity check's 2nd batch, then every 2nd optimizer step and every 2nd validation/test batch.
    assert hooks[:6] == [(0, "on_validation_batch_start"), (0, "on_validation_batch_end"),
                         (1, "on_train_batch_start"), (1, "on_train_batch_end"),
                         (3, "on_train_batch_start"), (3, "on_train_batch_end")]  # fmt: skip
    assert (3, "on_validation_batch_start") in hooks
    assert (8, "on_test_batch_end") in hooks


@pytest.mark.oracle
def test_rows_equal_lightnings(monkeypatch: pytest.MonkeyPatch) -> None:
    pl = pytest.importorskip("pytorch_lightning")

    class FixedStats(pl.accelerators.CPUAccelerator):  # type: ignore[misc,name-defined]
        def get_device_stats(self, device: Any) -> dict[str, Any]:
            return dict(STATS)

    monkeypatch.setattr(monitor_module, "_device_stats", lambda trainer, device: dict(STATS))
    assert _fit_and_test(fulgor) == _fit_and_test(pl, accelerator=FixedStats())


def test_cpu_stats_come_from_psutil(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = ModuleType("psutil")
    fake.virtual_memory = lambda: SimpleNamespace(percent=40.0)  # type: ignore[attr-defined]
    fake.cpu_percent = lambda: 12.5  # type: ignore[attr-defined]
    fake.swap_memory = lambda: SimpleNamespace(percent=1.0)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "psutil", fake)
    trainer = fulgor.Trainer(logger=False, enable_progress_bar=False)
    assert monitor_module._device_stats(trainer, trainer.strategy.root_device) == STATS


def test_cpu_stats_false_logs_nothing_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(monitor_module, "_device_stats", lambda trainer, device: pytest.fail("stats were read"))
    rows: list[tuple[int | None, dict[str, float]]] = []
    trainer = fulgor.Trainer(
        max_epochs=1, limit_train_batches=2, limit_val_batches=0, log_every_n_steps=1, enable_progress_bar=False,
        logger=_recording_logger(fulgor, rows), callbacks=[DeviceStatsMonitor(cpu_stats=False)],
        enable_checkpointing=False,
    )  # fmt: skip
    trainer.fit(boring_classes(fulgor).BoringModel())
    assert rows == []


def test_errors_at_fit_start(monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = fulgor.Trainer(logger=False, enable_progress_bar=False, callbacks=[DeviceStatsMonitor()])
    with pytest.raises(MisconfigurationException, match=r"Trainer\(logger=False\)"):
        trainer.fit(boring_classes(fulgor).BoringModel())
    monkeypatch.setitem(sys.modules, "psutil", None)
    callback = DeviceStatsMonitor()
    trainer = fulgor.Trainer(enable_progress_bar=False, callbacks=[callback])
    with pytest.raises(ModuleNotFoundError, match="pip install psutil"):
        callback.setup(trainer, boring_classes(fulgor).BoringModel(), "fit")
    DeviceStatsMonitor(cpu_stats=False).setup(trainer, boring_classes(fulgor).BoringModel(), "fit")  # no error
