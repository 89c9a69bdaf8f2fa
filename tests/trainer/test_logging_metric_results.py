"""What `self.log` stores, checked against pytorch-lightning 2.6.6 (oracle) where it is installed: a logged Metric
whose `compute()`/`forward` does not return a tensor is an error naming it; a one-element tensor of any shape is
stored as a 0-dim tensor."""

from __future__ import annotations

import warnings
from types import ModuleType
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader

from helpers.boring import XYDataset

torchmetrics = pytest.importorskip("torchmetrics")


class PairMetric(torchmetrics.Metric):  # type: ignore[misc,name-defined]
    """A metric whose result is a tuple, not a tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, value: torch.Tensor) -> None:
        self.total += value.sum()

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.total, self.total * 2


def _model(lib: ModuleType, log: Any) -> Any:
    class Model(lib.LightningModule):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.layer = torch.nn.Linear(4, 2)
            self.metric = PairMetric()

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.layer(x), y)
            log(self, loss)
            return loss

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

        def train_dataloader(self) -> Any:
            return DataLoader(XYDataset(8), batch_size=4)

    return Model()


def _fit(lib: ModuleType, model: Any, tmp_path: Any) -> Any:
    trainer = lib.Trainer(
        max_epochs=1,
        limit_val_batches=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        logger=False,
        default_root_dir=tmp_path,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model)
    return trainer


def test_metric_compute_not_a_tensor_raises(lib: ModuleType, tmp_path: Any) -> None:
    def log(module: Any, loss: torch.Tensor) -> None:
        module.metric.update(loss)
        module.log("pair", module.metric, on_step=False, on_epoch=True)

    with pytest.raises(ValueError) as info:
        _fit(lib, _model(lib, log), tmp_path)
    assert str(info.value).startswith(
        "The `.compute()` return of the metric logged as 'pair' must be a tensor. Found ("
    )


def test_metric_forward_not_a_tensor_raises(lib: ModuleType, tmp_path: Any) -> None:
    def log(module: Any, loss: torch.Tensor) -> None:
        module.metric(loss.detach())  # forward: the batch's value is a tuple too
        module.log("pair", module.metric, on_step=True, on_epoch=False)

    with pytest.raises(
        ValueError, match=r"^The `\.compute\(\)` return of the metric logged as 'pair' must be a tensor"
    ):
        _fit(lib, _model(lib, log), tmp_path)


@pytest.mark.parametrize("shape", [(1,), (1, 1), ()])
def test_one_element_tensor_is_stored_as_a_scalar(lib: ModuleType, tmp_path: Any, shape: tuple[int, ...]) -> None:
    def log(module: Any, loss: torch.Tensor) -> None:
        module.log("value", torch.full(shape, 1.25), on_step=True, on_epoch=True)

    trainer = _fit(lib, _model(lib, log), tmp_path)
    metrics = trainer.callback_metrics
    assert {name: (tuple(metrics[name].shape), float(metrics[name])) for name in ("value_step", "value_epoch")} == {
        "value_step": ((), 1.25),
        "value_epoch": ((), 1.25),
    }
