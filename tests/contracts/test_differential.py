"""Differential contract: the same seeded model, data, flags and hook recorder run under the real
pytorch-lightning 2.6.6 and under fulgor must give identical hook sequences, numbers, return values and files."""

from __future__ import annotations

import difflib
import warnings
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader

import fulgor
from helpers.boring import HookRecorder, XYDataset, trace_model_class, without_checkpoint_lines

pl = pytest.importorskip("pytorch_lightning")

pytestmark = pytest.mark.oracle


def _to_float(value: Any) -> float:
    return float(value.item()) if isinstance(value, torch.Tensor) else float(value)


def run(
    lib: ModuleType, root: Path, fn: str = "fit", model_cls: type | None = None, datamodule: Any = None, **flags: Any
) -> SimpleNamespace:
    """Run `trainer.<fn>` on the §2 model (or `model_cls(lib)`) with every hook recorded; collect what a user sees."""
    recorder = HookRecorder(lib)
    base = model_cls(lib) if model_cls is not None else trace_model_class(lib)
    model = recorder.module_class(base)()
    logger = lib.loggers.CSVLogger(save_dir=root / lib.__name__)
    settings: dict[str, Any] = {
        "max_epochs": 2,
        "limit_train_batches": 2,
        "limit_val_batches": 2,
        "limit_test_batches": 2,
        "limit_predict_batches": 2,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "logger": logger,
        "default_root_dir": root / lib.__name__,
        "callbacks": [recorder.callback()],
    }
    settings.update(flags)
    trainer = lib.Trainer(**settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        returned = getattr(trainer, fn)(model) if datamodule is None else getattr(trainer, fn)(model, datamodule)
    csv = sorted((root / lib.__name__).rglob("metrics.csv"))
    return SimpleNamespace(
        trace=recorder.calls,
        weights={k: v.detach().clone() for k, v in model.state_dict().items()},
        global_step=trainer.global_step,
        current_epoch=trainer.current_epoch,
        callback_metrics={k: _to_float(v) for k, v in trainer.callback_metrics.items()},
        logged_metrics=sorted(trainer.logged_metrics),
        progress_bar_metrics={k: _to_float(v) for k, v in trainer.progress_bar_metrics.items()},
        returned=returned,
        csv=[p.read_text().splitlines() for p in csv],
        trainer=trainer,
    )


def assert_same(ours: SimpleNamespace, theirs: SimpleNamespace, trace_filter: Any = None) -> None:
    ours_trace, theirs_trace = ours.trace, theirs.trace
    if trace_filter is not None:
        ours_trace, theirs_trace = trace_filter(ours_trace), trace_filter(theirs_trace)
    assert ours_trace == theirs_trace, "\n".join(
        f"{'  ' if a == b else '!!'} {a!s:55} {b}"
        for a, b in zip(ours_trace + [""] * len(theirs_trace), theirs_trace + [""] * len(ours_trace))
        if a or b
    )
    assert ours.weights.keys() == theirs.weights.keys()
    for key in ours.weights:
        assert torch.allclose(ours.weights[key], theirs.weights[key], atol=1e-6), key
    assert (ours.global_step, ours.current_epoch) == (theirs.global_step, theirs.current_epoch)
    assert sorted(ours.callback_metrics) == sorted(theirs.callback_metrics)
    for key, value in theirs.callback_metrics.items():
        assert ours.callback_metrics[key] == pytest.approx(value, abs=1e-6), key
    assert ours.logged_metrics == theirs.logged_metrics
    assert ours.progress_bar_metrics == pytest.approx(theirs.progress_bar_metrics, abs=1e-6)
    assert_same_returned(ours.returned, theirs.returned)
    for a, b in zip(ours.csv, theirs.csv):
        assert a == b, "\n".join(difflib.unified_diff(b, a, "lightning metrics.csv", "fulgor metrics.csv", lineterm=""))
    assert len(ours.csv) == len(theirs.csv)


def assert_same_returned(ours: Any, theirs: Any) -> None:
    if isinstance(theirs, torch.Tensor):
        assert isinstance(ours, torch.Tensor) and torch.allclose(ours, theirs, atol=1e-6)  # noqa: PT018
    elif isinstance(theirs, (list, tuple)):
        assert type(ours) is type(theirs) and len(ours) == len(theirs), (ours, theirs)  # noqa: PT018
        for a, b in zip(ours, theirs):
            assert_same_returned(a, b)
    elif isinstance(theirs, dict):
        assert sorted(ours) == sorted(theirs)
        for key in theirs:
            assert_same_returned(ours[key], theirs[key])
    elif isinstance(theirs, float):
        assert ours == pytest.approx(theirs, abs=1e-6)
    else:
        assert ours == theirs


def both(tmp_path: Path, **kwargs: Any) -> tuple[SimpleNamespace, SimpleNamespace]:
    return run(fulgor, tmp_path, **kwargs), run(pl, tmp_path, **kwargs)


# ---------------------------------------------------------------------------------------------- the §2 scenarios
@pytest.mark.parametrize("fn", ["fit", "validate", "test", "predict"])
def test_entry_points(tmp_path: Path, fn: str) -> None:
    assert_same(*both(tmp_path, fn=fn))


def test_fit_without_sanity_check(tmp_path: Path) -> None:
    assert_same(*both(tmp_path, num_sanity_val_steps=0))


def test_fit_with_default_checkpoint(tmp_path: Path) -> None:
    ours, theirs = both(tmp_path, enable_checkpointing=True)
    if ours.trace != theirs.trace and without_checkpoint_lines(ours.trace) == without_checkpoint_lines(theirs.trace):
        pytest.xfail("only the default ModelCheckpoint's saving hooks differ (ModelCheckpoint not landed yet)")
    assert_same(ours, theirs)


def test_fit_with_datamodule(tmp_path: Path) -> None:
    def datamodule_model(lib: ModuleType) -> type:
        class NoLoaders(trace_model_class(lib)):  # type: ignore[misc]
            train_dataloader = val_dataloader = test_dataloader = predict_dataloader = None

        return NoLoaders

    results = []
    for lib in (fulgor, pl):
        recorder = HookRecorder(lib)

        class DataModule(lib.LightningDataModule):  # type: ignore[misc,name-defined]
            def train_dataloader(self) -> Any:
                return DataLoader(XYDataset(16, seed=1), batch_size=4)

            def val_dataloader(self) -> Any:
                return DataLoader(XYDataset(16, seed=2), batch_size=4)

            def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
                return batch

        datamodule = recorder.datamodule_class(DataModule)()
        result = run(lib, tmp_path, datamodule=datamodule, model_cls=datamodule_model, num_sanity_val_steps=0)
        result.trace = [c for c in result.trace if c.startswith("M.")] + recorder.calls
        results.append(result)
    # The module and datamodule recorders are separate here; compare each stream.
    assert_same(*results)


def test_on_train_batch_start_minus_one(tmp_path: Path) -> None:
    def model(lib: ModuleType) -> type:
        class SkipRest(trace_model_class(lib)):  # type: ignore[misc]
            def on_train_batch_start(self, batch: Any, batch_idx: int) -> Any:
                return -1 if (self.current_epoch, batch_idx) == (0, 1) else None

        return SkipRest

    assert_same(*both(tmp_path, model_cls=model, limit_train_batches=3, limit_val_batches=1, num_sanity_val_steps=0))


# ---------------------------------------------------------------------------------------------- flag scenarios
FLAG_SCENARIOS = {
    "val_check_interval=0.5": {"limit_train_batches": 4, "val_check_interval": 0.5},
    "accumulate_grad_batches=2": {"limit_train_batches": 3, "accumulate_grad_batches": 2},
    "limits 3/2": {"limit_train_batches": 3, "limit_val_batches": 2},
    "fast_dev_run=True": {"fast_dev_run": True},
    "fast_dev_run=3": {"fast_dev_run": 3},
    "overfit_batches=2": {"limit_train_batches": None, "limit_val_batches": None, "overfit_batches": 2},
    "check_val_every_n_epoch=2": {"max_epochs": 4, "check_val_every_n_epoch": 2},
    "num_sanity_val_steps=-1": {"limit_val_batches": None, "num_sanity_val_steps": -1, "max_epochs": 1},
    "max_steps=5": {"limit_train_batches": None, "max_epochs": None, "max_steps": 5},
    "log_every_n_steps=1": {"log_every_n_steps": 1},
    "val_check_interval=3 across epochs": {
        "limit_train_batches": None,
        "val_check_interval": 3,
        "check_val_every_n_epoch": None,
        "max_epochs": 2,
    },
}


@pytest.mark.parametrize("flags", FLAG_SCENARIOS.values(), ids=FLAG_SCENARIOS.keys())
def test_flag_scenario(tmp_path: Path, flags: dict[str, Any]) -> None:
    assert_same(*both(tmp_path, **flags))


def test_two_val_dataloaders(tmp_path: Path) -> None:
    def model(lib: ModuleType) -> type:
        return trace_model_class(lib, val_loaders=2)

    assert_same(*both(tmp_path, model_cls=model, limit_val_batches=None, log_every_n_steps=1))
    assert_same(*both(tmp_path, fn="validate", model_cls=model, limit_val_batches=None))


def test_min_epochs_with_should_stop(tmp_path: Path) -> None:
    def model(lib: ModuleType) -> type:
        class StopEarly(trace_model_class(lib)):  # type: ignore[misc]
            def training_step(self, batch: Any, batch_idx: int) -> Any:
                self.trainer.should_stop = True
                return super().training_step(batch, batch_idx)

        return StopEarly

    assert_same(*both(tmp_path, model_cls=model, min_epochs=3, max_epochs=5, log_every_n_steps=1))


# ---------------------------------------------------------------------------------------------- §3.4 logging
def logging_model(lib: ModuleType) -> type:
    """§3.4: a, b, c, d, train/slash in training_step; ep_end at epoch end; v, vs, vsum over two val loaders."""

    class LoggingModel(trace_model_class(lib)):  # type: ignore[misc]
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            loss = self._loss(batch)
            x = torch.tensor(float(batch_idx + 10 * self.current_epoch))
            self.log("a", x)
            self.log("b", x, on_epoch=True)
            self.log("c", x, on_step=False, on_epoch=True, prog_bar=True)
            self.log("d", x, on_epoch=True, reduce_fx="max", logger=False)
            self.log("train/slash", x, prog_bar=True)
            return loss

        def on_train_epoch_end(self) -> None:
            self.log("ep_end", torch.tensor(float(self.current_epoch)))

        def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
            x = torch.tensor(float(batch_idx))
            self.log("v", x)
            self.log("vs", x, on_step=True)
            self.log("vsum", torch.tensor(1.0), reduce_fx="sum", prog_bar=True)

        def val_dataloader(self) -> Any:
            return [DataLoader(XYDataset(10, seed=5), batch_size=4), DataLoader(XYDataset(6, seed=6), batch_size=4)]

    return LoggingModel


def test_logging_experiment(tmp_path: Path) -> None:
    flags = {
        "model_cls": logging_model,
        "limit_train_batches": 3,
        "limit_val_batches": None,
        "num_sanity_val_steps": 0,
        "log_every_n_steps": 1,
    }
    ours, theirs = both(tmp_path, **flags)
    assert_same(ours, theirs)
    assert sorted(ours.callback_metrics) == [
        "a",
        "b",
        "b_epoch",
        "b_step",
        "c",
        "d",
        "d_epoch",
        "d_step",
        "ep_end",
        "train/slash",
        "v/dataloader_idx_0",
        "v/dataloader_idx_1",
        "vs/dataloader_idx_0",
        "vs/dataloader_idx_1",
        "vs_epoch/dataloader_idx_0",
        "vs_epoch/dataloader_idx_1",
        "vsum/dataloader_idx_0",
        "vsum/dataloader_idx_1",
    ]
    assert sorted(ours.progress_bar_metrics) == ["c", "train/slash", "vsum/dataloader_idx_0", "vsum/dataloader_idx_1"]
    validated = both(tmp_path / "validate", fn="validate", **flags)
    assert_same(*validated)
    assert validated[0].returned == [
        {
            "v/dataloader_idx_0": 0.800000011920929,
            "vs_epoch/dataloader_idx_0": 0.800000011920929,
            "vsum/dataloader_idx_0": 3.0,
        },
        {
            "v/dataloader_idx_1": 0.3333333432674408,
            "vs_epoch/dataloader_idx_1": 0.3333333432674408,
            "vsum/dataloader_idx_1": 2.0,
        },
    ]


def test_predict_with_two_dataloaders(tmp_path: Path) -> None:
    def model(lib: ModuleType) -> type:
        class TwoPredict(trace_model_class(lib)):  # type: ignore[misc]
            def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
                return (dataloader_idx, batch_idx, len(batch[0]))

            def predict_dataloader(self) -> Any:
                return [DataLoader(XYDataset(10), batch_size=4), DataLoader(XYDataset(6), batch_size=3)]

        return TwoPredict

    ours, theirs = both(tmp_path, fn="predict", model_cls=model, limit_predict_batches=None)
    assert_same(ours, theirs)
    assert ours.returned == [[(0, 0, 4), (0, 1, 4), (0, 2, 2)], [(1, 0, 3), (1, 1, 3)]]
