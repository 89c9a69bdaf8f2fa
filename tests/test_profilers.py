"""Profilers: Lightning's simple table (text compared with Lightning's), report files named like Lightning's, the
hooks and loop actions the Trainer times, the advanced (cProfile) and pytorch (chrome trace) profilers."""

from __future__ import annotations

import gc
import json
import os
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

import fulgor
from fulgor.errors import MisconfigurationException
from fulgor.profilers import (
    AdvancedProfiler,
    PassThroughProfiler,
    Profiler,
    PyTorchProfiler,
    SimpleProfiler,
    select_profiler,
)


class Clock:
    """A fake `time.perf_counter`: each read returns the next value."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)

    def __call__(self) -> float:
        return self.values.pop(0)


def run_simple_profiler(cls: type, monkeypatch: pytest.MonkeyPatch, module: ModuleType, **kwargs: Any) -> str:
    monkeypatch.setattr(module.time, "perf_counter", Clock(0.0, 1.0, 1.5, 2.0, 2.25, 3.0, 4.0, 10.0))
    profiler = cls(**kwargs)  # start_time = 0.0
    for action in ("a", "long_action_name", "a"):
        profiler.start(action)
        profiler.stop(action)
    profiler.setup(stage="fit")
    return str(profiler.summary())


def test_simple_profiler_table(monkeypatch: pytest.MonkeyPatch) -> None:
    import fulgor.profilers as profilers

    text = run_simple_profiler(SimpleProfiler, monkeypatch, profilers)
    rows = [line for line in text.splitlines() if line.startswith("|")]
    assert text.startswith("FIT Profiler Report")
    assert [re.split(r"\s*\|\s*", row.strip())[1:-1] for row in rows] == [
        ["Action", "Mean duration (s)", "Num calls", "Total time (s)", "Percentage %"],
        ["Total", "-", "3", "10.0", "100 %"],  # the run so far: 10 s since the profiler was made
        ["a", "0.75", "2", "1.5", "15.0"],  # durations 0.5 and 1.0; rows sorted by share of the run
        ["long_action_name", "0.25", "1", "0.25", "2.5"],
    ]


@pytest.mark.oracle
@pytest.mark.parametrize("extended", [True, False])
def test_simple_profiler_text_matches_lightning(monkeypatch: pytest.MonkeyPatch, extended: bool) -> None:
    pytest.importorskip("pytorch_lightning")
    import pytorch_lightning.profilers.simple as pl_simple

    import fulgor.profilers as profilers

    ours = run_simple_profiler(SimpleProfiler, monkeypatch, profilers, extended=extended)
    theirs = run_simple_profiler(pl_simple.SimpleProfiler, monkeypatch, pl_simple, extended=extended)
    assert ours == theirs


def test_simple_profiler_refuses_unbalanced_calls() -> None:
    profiler = SimpleProfiler()
    profiler.start("x")
    with pytest.raises(ValueError, match=re.escape("Attempted to start x which has already started.")):
        profiler.start("x")
    with pytest.raises(ValueError, match=re.escape("Attempting to stop recording an action (y) which was never")):
        profiler.stop("y")


@pytest.mark.parametrize(("value", "cls"), [("simple", SimpleProfiler), ("Advanced", AdvancedProfiler),
                                            ("pytorch", PyTorchProfiler), (None, PassThroughProfiler)])  # fmt: skip
def test_select_profiler(value: Any, cls: type) -> None:
    assert type(select_profiler(value)) is cls


def test_select_profiler_errors(tmp_path: Path) -> None:
    message = (
        "When passing string value for the `profiler` parameter of `Trainer`, it can only be one of"
        " ['simple', 'advanced', 'pytorch', 'xla']"
    )
    with pytest.raises(MisconfigurationException, match=re.escape(message)):
        fulgor.Trainer(profiler="fast", default_root_dir=tmp_path)
    instance = SimpleProfiler()
    assert fulgor.Trainer(profiler=instance, default_root_dir=tmp_path).profiler is instance


@pytest.mark.oracle
def test_unknown_profiler_message_matches_lightning() -> None:
    pl = pytest.importorskip("pytorch_lightning")
    messages = []
    for lib in (fulgor, pl):
        with pytest.raises(Exception) as info:
            lib.Trainer(profiler="fast", logger=False)
        messages.append(str(info.value))
    assert messages[0] == messages[1]


class Model(fulgor.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        return F.mse_loss(self.layer(x), y)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", F.mse_loss(self.layer(x), y))

    def on_train_epoch_end(self) -> None:
        pass

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader() -> DataLoader[Any]:
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(16, 2, generator=g), torch.randn(16, 1, generator=g)), batch_size=4)


def table_calls(text: str) -> dict[str, int]:
    """Action -> number of calls, from a simple profiler report."""
    calls = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.split("|")[1:-1]]
        if len(cells) == 5 and cells[0] not in ("Action", "Total"):
            calls[cells[0]] = int(cells[2])
    return calls


def test_trainer_simple_profiler_writes_the_report_file(tmp_path: Path) -> None:
    profiler = SimpleProfiler(dirpath=tmp_path / "prof", filename="perf")
    trainer = fulgor.Trainer(
        max_epochs=2, default_root_dir=tmp_path, profiler=profiler, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(Model(), loader(), loader())
    assert sorted(os.listdir(tmp_path / "prof")) == ["fit-perf.txt"]
    text = (tmp_path / "prof" / "fit-perf.txt").read_text()
    assert text.startswith("FIT Profiler Report")
    calls = table_calls(text)
    assert {name: calls[name] for name in LOOP_ACTIONS} == {
        "run_training_epoch": 2,
        "run_training_batch": 8,
        "[Strategy]SingleDeviceStrategy.training_step": 8,
        "[Strategy]SingleDeviceStrategy.validation_step": 2 + 2 * 4,  # the sanity check's 2, then 4 per epoch
        "[_TrainingEpochLoop].train_dataloader_next": 8,
        "[_EvaluationLoop].val_next": 2 + 2 * 4,
        "[LightningModule]Model.on_train_epoch_end": 2,
    }
    # Every hook is timed, overridden or not, as Lightning records them (prepare_data only when overridden).
    assert calls["[LightningModule]Model.on_train_batch_start"] == 8
    assert "[LightningModule]Model.prepare_data" not in calls
    trainer.validate(Model(), loader())
    assert sorted(os.listdir(tmp_path / "prof")) == ["fit-perf.txt", "validate-perf.txt"]


LOOP_ACTIONS = (
    "run_training_epoch",
    "run_training_batch",
    "[Strategy]SingleDeviceStrategy.training_step",
    "[Strategy]SingleDeviceStrategy.validation_step",
    "[_TrainingEpochLoop].train_dataloader_next",
    "[_EvaluationLoop].val_next",
    "[LightningModule]Model.on_train_epoch_end",
)


def test_callback_hooks_are_timed_under_their_state_key(tmp_path: Path) -> None:
    class Counter(fulgor.Callback):
        def on_train_batch_end(self, *args: Any) -> None:
            pass

    profiler, counter = SimpleProfiler(), Counter()
    trainer = fulgor.Trainer(
        max_epochs=1, default_root_dir=tmp_path, profiler=profiler, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[counter],
    )  # fmt: skip
    trainer.fit(Model(), loader())
    assert counter.state_key.endswith("<locals>.Counter")
    assert len(profiler.recorded_durations[f"[Callback]{counter.state_key}.on_train_batch_end"]) == 4


def test_default_run_does_not_wrap_hooks(tmp_path: Path) -> None:
    trainer = fulgor.Trainer(max_epochs=1, default_root_dir=tmp_path, logger=False, enable_progress_bar=False)
    model = Model()
    trainer.fit(model, loader())
    assert type(trainer.profiler) is PassThroughProfiler
    run = trainer._run
    assert run is not None
    assert run.hooks["on_train_epoch_end"].module == model.on_train_epoch_end  # the bound method itself
    assert run.training_step == model.training_step


def test_report_goes_to_the_log_without_a_filename(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    trainer = fulgor.Trainer(
        max_epochs=1, default_root_dir=tmp_path, profiler="simple", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    with caplog.at_level("INFO", logger="fulgor"):
        trainer.fit(Model(), loader())
    reports = [r.getMessage() for r in caplog.records if "Profiler Report" in r.getMessage()]
    assert len(reports) == 1
    assert table_calls(reports[0])["run_training_batch"] == 4
    assert not any(p.suffix == ".txt" for p in tmp_path.rglob("*"))


def test_advanced_profiler_writes_pstats_per_action(tmp_path: Path) -> None:
    profiler = AdvancedProfiler(dirpath=tmp_path, filename="adv", dump_stats=True)
    trainer = fulgor.Trainer(
        max_epochs=1, default_root_dir=tmp_path, profiler=profiler, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(Model(), loader())
    text = (tmp_path / "fit-adv.txt").read_text()
    assert text.startswith("FIT Profiler Report")
    assert "Profile stats for: [Strategy]SingleDeviceStrategy.training_step" in text
    assert "Ordered by: cumulative time" in text
    assert (tmp_path / "fit-adv-run_training_epoch.prof").is_file()
    assert profiler.profiled_actions == {}  # cleared by teardown


def test_pytorch_profiler_writes_a_chrome_trace_to_the_log_dir(tmp_path: Path) -> None:
    logger = fulgor.loggers.CSVLogger(tmp_path)
    profiler = PyTorchProfiler(filename="trace")
    trainer = fulgor.Trainer(
        max_epochs=1, default_root_dir=tmp_path, profiler=profiler, logger=logger, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_train_batches=2,
    )  # fmt: skip
    with pytest.warns(UserWarning, match="not enough steps to properly record traces"):
        trainer.fit(Model(), loader())
    assert profiler._schedule is None  # 2 training steps < wait 1 + warmup 1 + active 3: recording from then on
    # The trace is named after the step action that ended the recording, as Lightning's: `<stage>-<filename>-<action>.
    # <ns>.pt.trace.json`.
    (path,) = Path(logger.log_dir).glob("*.pt.trace.json")
    assert re.fullmatch(
        r"fit-trace-\[Strategy\]SingleDeviceStrategy\.(training|validation)_step\.\d+\.pt\.trace\.json", path.name
    )
    names = {event.get("name") for event in json.loads(path.read_text())["traceEvents"]}
    assert {"[pl][profile]run_training_batch", "[pl][profile][Strategy]SingleDeviceStrategy.training_step"} <= names
    assert "[pl][module]torch.nn.modules.linear.Linear: layer" in names  # record_module_names
    assert (Path(logger.log_dir) / "fit-trace.txt").read_text().startswith("FIT Profiler Report")
    assert profiler.function_events is not None
    recorded = [event.name for event in profiler.function_events]  # torch's events, kept after the run
    # The first step ran in the schedule's "wait" phase (not recorded), as in Lightning; the override records the rest.
    assert recorded.count("[pl][profile][Strategy]SingleDeviceStrategy.training_step") == 1


def test_profiler_whose_init_failed_is_collected_quietly() -> None:
    class Broken(PyTorchProfiler):
        def __init__(self) -> None:
            raise ValueError("bad argument")

    unraisable: list[Any] = []
    previous, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        with pytest.raises(ValueError, match="bad argument"):
            Broken()
        gc.collect()
    finally:
        sys.unraisablehook = previous
    assert unraisable == []  # Profiler.__del__ ran on the half-built object without raising


def test_custom_profiler_subclass(tmp_path: Path) -> None:
    class Recorder(Profiler):
        def __init__(self) -> None:
            super().__init__()
            self.events: list[str] = []

        def start(self, action_name: str) -> None:
            self.events.append(f"+{action_name}")

        def stop(self, action_name: str) -> None:
            self.events.append(f"-{action_name}")

    profiler = Recorder()
    trainer = fulgor.Trainer(
        max_steps=1, default_root_dir=tmp_path, profiler=profiler, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(Model(), loader())
    loop_events = [event for event in profiler.events if event[1:] in LOOP_ACTIONS]
    assert loop_events == [
        "+run_training_epoch", "+[_TrainingEpochLoop].train_dataloader_next",
        "-[_TrainingEpochLoop].train_dataloader_next", "+run_training_batch",
        "+[Strategy]SingleDeviceStrategy.training_step", "-[Strategy]SingleDeviceStrategy.training_step",
        "-run_training_batch", "+[LightningModule]Model.on_train_epoch_end",
        "-[LightningModule]Model.on_train_epoch_end", "-run_training_epoch",
    ]  # fmt: skip
    with profiler.profile("block") as name:
        assert name == "block"
    assert profiler.events[-2:] == ["+block", "-block"]


def test_a_failed_run_closes_the_profiler(tmp_path: Path) -> None:
    class Failing(Model):
        def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
            raise RuntimeError("boom")

    profiler = PyTorchProfiler(dirpath=tmp_path)
    trainer = fulgor.Trainer(
        max_epochs=1, default_root_dir=tmp_path, profiler=profiler, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(Failing(), loader())
    assert profiler.profiler is None
    assert profiler._recording_map == {}


def test_datamodule_state_is_timed_when_saved_and_restored(tmp_path: Path) -> None:
    class Data(fulgor.LightningDataModule):
        def train_dataloader(self) -> DataLoader[Any]:
            return loader()

        def state_dict(self) -> dict[str, Any]:
            return {"seen": 1}

    def fit(ckpt_path: str | None) -> SimpleProfiler:
        profiler = SimpleProfiler()
        trainer = fulgor.Trainer(
            max_epochs=1 if ckpt_path is None else 2, default_root_dir=tmp_path, profiler=profiler, logger=False,
            enable_progress_bar=False, enable_model_summary=False,
        )  # fmt: skip
        trainer.fit(Model(), datamodule=Data(), ckpt_path=ckpt_path)
        return profiler

    saved = fit(None).recorded_durations
    assert len(saved["[LightningDataModule]Data.state_dict"]) == 1  # the end-of-epoch checkpoint
    (ckpt,) = (tmp_path / "checkpoints").glob("*.ckpt")
    restored = fit(str(ckpt)).recorded_durations
    assert len(restored["[LightningDataModule]Data.load_state_dict"]) == 1
    assert len(restored["[Strategy]SingleDeviceStrategy.backward"]) == 4  # the second epoch's 4 batches
