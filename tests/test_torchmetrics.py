"""torchmetrics objects logged through `self.log` / `log_dict`: the metric computes and resets itself at epoch end,
and the values logged (step and epoch) equal what Lightning logs for the same script."""

from __future__ import annotations

import csv
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

import fulgor

torchmetrics = pytest.importorskip("torchmetrics")


def make_module(lib: ModuleType) -> Any:
    class MetricModel(lib.LightningModule):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.layer = torch.nn.Linear(3, 1)
            self.train_mse = torchmetrics.MeanSquaredError()
            self.val_metrics = torchmetrics.MetricCollection(
                {"mae": torchmetrics.MeanAbsoluteError(), "mse": torchmetrics.MeanSquaredError()}, prefix="val_"
            )

        def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
            x, y = batch
            pred = self.layer(x)
            self.train_mse(pred, y)
            self.log("train_mse", self.train_mse, on_step=True, on_epoch=True, prog_bar=True)
            return F.mse_loss(pred, y)

        def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
            x, y = batch
            self.val_metrics.update(self.layer(x), y)
            self.log_dict(self.val_metrics)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return MetricModel()


def loaders() -> tuple[DataLoader[Any], DataLoader[Any]]:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 3, generator=g), torch.randn(40, 1, generator=g)
    # Batches of unequal size (8, 8, 8, 6 / 7, 3): a mean of batch means would differ from the metric's value.
    return DataLoader(TensorDataset(x[:30], y[:30]), batch_size=8), DataLoader(TensorDataset(x[30:], y[30:]), 7)


def fit(lib: ModuleType, root: Path) -> tuple[Any, Any, list[dict[str, str]]]:
    model = make_module(lib)
    logger = lib.loggers.CSVLogger(root, name="tm", version=0)
    trainer = lib.Trainer(
        max_epochs=2, default_root_dir=root, logger=logger, log_every_n_steps=1, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    train, val = loaders()
    trainer.fit(model, train, val)
    with open(Path(logger.log_dir) / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return model, trainer, rows


def test_metric_objects_are_computed_over_the_epoch(tmp_path: Path) -> None:
    model, trainer, rows = fit(fulgor, tmp_path)
    _, val = loaders()
    with torch.no_grad():
        x, y = val.dataset.tensors
        pred = model.layer(x)
    assert trainer.callback_metrics["val_mse"].item() == pytest.approx(F.mse_loss(pred, y).item(), rel=1e-6)
    assert trainer.callback_metrics["val_mae"].item() == pytest.approx(F.l1_loss(pred, y).item(), rel=1e-6)
    assert set(trainer.callback_metrics) == {"train_mse", "train_mse_step", "train_mse_epoch", "val_mae", "val_mse"}
    # reset at the end of each epoch: nothing accumulated afterwards
    assert int(model.val_metrics["mse"].total) == 0
    assert int(model.train_mse.total) == 0
    assert [r["train_mse_step"] != "" for r in rows].count(True) == 8  # 4 steps x 2 epochs


@pytest.mark.oracle
def test_logged_values_match_lightning(tmp_path: Path) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    _, ours, our_rows = fit(fulgor, tmp_path / "fulgor")
    _, theirs, their_rows = fit(pl, tmp_path / "pl")
    assert our_rows == their_rows
    assert {k: v.item() for k, v in ours.callback_metrics.items()} == {
        k: v.item() for k, v in theirs.callback_metrics.items()
    }
    assert ours.progress_bar_metrics == theirs.progress_bar_metrics
