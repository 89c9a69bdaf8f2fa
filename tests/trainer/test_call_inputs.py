"""What fit/validate/test/predict accept as the model: a LightningModule, or `torch.compile(module)` (run with its
methods compiled, as Lightning runs it), and Lightning's error for anything else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import fulgor


class Tiny(fulgor.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layer = torch.nn.Linear(2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader() -> DataLoader[Any]:
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(1))
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4)


def trainer(root: Path) -> fulgor.Trainer:
    return fulgor.Trainer(
        max_epochs=1, default_root_dir=root, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip


def test_a_compiled_module_trains_like_the_module(tmp_path: Path) -> None:
    plain = Tiny()
    trainer(tmp_path / "plain").fit(plain, loader())
    module = Tiny()
    compiled = torch.compile(module, backend="eager")
    run = trainer(tmp_path / "compiled")
    run.fit(compiled, loader())
    assert run.lightning_module is module  # the module inside, its methods compiled
    assert run.global_step == 2
    assert torch.allclose(module.layer.weight, plain.layer.weight)


@pytest.mark.parametrize("method", ["fit", "validate", "test", "predict"])
def test_anything_else_is_refused_with_lightnings_message(tmp_path: Path, method: str) -> None:
    with pytest.raises(
        TypeError, match=r"`model` must be a `LightningModule` or `torch._dynamo.OptimizedModule`, got `Linear`$"
    ):
        getattr(trainer(tmp_path), method)(torch.nn.Linear(1, 1))
