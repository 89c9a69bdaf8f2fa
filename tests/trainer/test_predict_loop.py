"""`trainer.predict_loop` as prediction writers and users read it: `batch_progress` at every predict hook (over two
`predict` calls and two dataloaders), and which batch indices a per-batch or per-epoch writer gets; the same under
fulgor and under pytorch-lightning 2.6.6."""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from torch.utils.data import DataLoader

import fulgor


def _demos(lib: ModuleType) -> Any:
    return importlib.import_module(f"{lib.__name__}.demos.boring_classes")


def _counts(progress: Any) -> list[int]:
    return [progress.ready, progress.started, progress.processed, progress.completed]


def record_predict_progress(lib: ModuleType, root: Path) -> list[Any]:
    """`predict_loop.batch_progress` (total + current) at each predict hook and step, before, between and after two
    `predict` calls (the first over two dataloaders)."""
    demos = _demos(lib)
    records: list[Any] = []

    def snap(trainer: Any, where: str, *extra: Any) -> None:
        progress = trainer.predict_loop.batch_progress
        records.append((where, *extra, _counts(progress.total) + _counts(progress.current)))

    class Model(demos.BoringModel):  # type: ignore[misc,name-defined]
        def on_predict_start(self) -> None:
            snap(self.trainer, "start")

        def on_predict_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
            snap(self.trainer, "batch_start", batch_idx, dataloader_idx)

        def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
            snap(self.trainer, "step", batch_idx, dataloader_idx)
            return self(batch)

        def on_predict_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
            snap(self.trainer, "batch_end", batch_idx, dataloader_idx)

        def on_predict_end(self) -> None:
            snap(self.trainer, "end")

    trainer = lib.Trainer(default_root_dir=root, logger=False, enable_progress_bar=False, enable_model_summary=False)
    model = Model()
    snap(trainer, "before")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaders = [
            DataLoader(demos.RandomDataset(32, 6), batch_size=2),
            DataLoader(demos.RandomDataset(32, 4), batch_size=2),
        ]
        trainer.predict(model, loaders)
        snap(trainer, "between")
        trainer.predict(model, DataLoader(demos.RandomDataset(32, 4), batch_size=2), return_predictions=False)
    snap(trainer, "after")
    return records


def test_predict_batch_progress_counts_each_batch_and_keeps_totals(tmp_path: Path) -> None:
    records = record_predict_progress(fulgor, tmp_path)
    by_point = {(r[0], *r[1:-1]): r[-1] for r in records}
    assert records[0] == ("before", [0] * 8)
    assert by_point[("step", 0, 1)] == [4, 4, 3, 3, 4, 4, 3, 3]  # second loader: `current` runs on within a predict
    assert by_point[("between",)] == [5] * 8
    assert records[-1] == ("after", [7, 7, 7, 7, 2, 2, 2, 2])  # `total` keeps the first predict's batches


def test_predict_batch_progress_is_a_copy(tmp_path: Path) -> None:
    trainer = fulgor.Trainer(default_root_dir=tmp_path, logger=False, enable_progress_bar=False)
    trainer.predict(_demos(fulgor).BoringModel(), DataLoader(_demos(fulgor).RandomDataset(32, 4), batch_size=2))
    trainer.predict_loop.batch_progress.total.completed = 100
    assert trainer.predict_loop.batch_progress.total.completed == 2


@pytest.mark.oracle
def test_predict_batch_progress_equals_lightnings(tmp_path: Path) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    ours = record_predict_progress(fulgor, tmp_path / "fulgor")
    theirs = record_predict_progress(pl, tmp_path / "pl")
    assert ours == theirs


def record_writer(lib: ModuleType, root: Path, interval: str) -> dict[str, Any]:
    """What a writer of `interval` receives, and what `predict_loop` shows at the epoch's end."""
    demos = _demos(lib)
    seen: dict[str, Any] = {"batch": []}

    class Writer(lib.callbacks.BasePredictionWriter):  # type: ignore[misc,name-defined]
        def write_on_batch_end(self, trainer: Any, pl_module: Any, prediction: Any, *args: Any) -> None:
            batch_indices, _, batch_idx, dataloader_idx = args
            seen["batch"].append((list(batch_indices), batch_idx, dataloader_idx))

        def write_on_epoch_end(self, trainer: Any, pl_module: Any, predictions: Any, batch_indices: Any) -> None:
            seen["epoch"] = (len(predictions), batch_indices)

    class Model(demos.BoringModel):  # type: ignore[misc,name-defined]
        def on_predict_epoch_end(self) -> None:
            loop = self.trainer.predict_loop
            seen["at_epoch_end"] = (loop.epoch_batch_indices, loop.current_batch_indices)

    trainer = lib.Trainer(
        default_root_dir=root,
        logger=False,
        enable_progress_bar=False,
        limit_predict_batches=3,
        callbacks=Writer(interval),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.predict(Model(), DataLoader(demos.RandomDataset(32, 64), batch_size=4), return_predictions=False)
    return seen


def test_batch_writer_leaves_epoch_indices_empty(tmp_path: Path) -> None:
    seen = record_writer(fulgor, tmp_path, "batch")
    assert seen["batch"] == [([0, 1, 2, 3], 0, 0), ([4, 5, 6, 7], 1, 0), ([8, 9, 10, 11], 2, 0)]
    assert seen["at_epoch_end"] == ([[]], [8, 9, 10, 11])
    assert "epoch" not in seen


def test_epoch_writer_gets_every_batchs_indices(tmp_path: Path) -> None:
    seen = record_writer(fulgor, tmp_path, "epoch")
    assert seen["epoch"] == (3, [[[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]])
    assert seen["at_epoch_end"][1] == []  # no per-batch writer: the running batch's indices are not kept


@pytest.mark.oracle
@pytest.mark.parametrize("interval", ["batch", "epoch", "batch_and_epoch"])
def test_writer_indices_equal_lightnings(interval: str, tmp_path: Path) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    assert record_writer(fulgor, tmp_path / "fulgor", interval) == record_writer(pl, tmp_path / "pl", interval)


def record_iter_predict_progress(lib: ModuleType, root: Path) -> list[Any]:
    """`predict_loop.batch_progress` around a `predict_step(dataloader_iter)` (the step fetches its batches)."""
    demos = _demos(lib)
    records: list[Any] = []

    def snap(trainer: Any, where: str) -> None:
        progress = trainer.predict_loop.batch_progress
        records.append((where, _counts(progress.total) + _counts(progress.current)))

    class Model(demos.BoringModel):  # type: ignore[misc,name-defined]
        def on_predict_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
            snap(self.trainer, "batch_start")

        def predict_step(self, dataloader_iter: Any) -> Any:
            snap(self.trainer, "step")
            batch, _, _ = next(dataloader_iter)
            return self(batch)

        def on_predict_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
            snap(self.trainer, "batch_end")

    trainer = lib.Trainer(default_root_dir=root, logger=False, enable_progress_bar=False, enable_model_summary=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.predict(Model(), DataLoader(demos.RandomDataset(32, 6), batch_size=2))
    snap(trainer, "after")
    return records


def test_predict_batch_progress_with_dataloader_iter(tmp_path: Path) -> None:
    records = record_iter_predict_progress(fulgor, tmp_path)
    assert records[1] == ("step", [1, 1, 0, 0, 1, 1, 0, 0])
    assert records[-1] == ("after", [3] * 8)


@pytest.mark.oracle
def test_predict_batch_progress_with_dataloader_iter_equals_lightnings(tmp_path: Path) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    ours = record_iter_predict_progress(fulgor, tmp_path / "fulgor")
    assert ours == record_iter_predict_progress(pl, tmp_path / "pl")
