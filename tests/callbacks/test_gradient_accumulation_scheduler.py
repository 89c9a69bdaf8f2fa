"""GradientAccumulationScheduler: the factor per epoch, optimizer steps and weights against pytorch-lightning 2.6.6."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import fulgor
from fulgor.callbacks.gradient_accumulation_scheduler import GradientAccumulationScheduler
from fulgor.errors import MisconfigurationException


def model_class(lib: Any) -> type:
    class Model(lib.LightningModule):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.layer = torch.nn.Linear(3, 1)
            self.steps_per_epoch: list[int] = []
            self.factors: list[int] = []

        def on_train_epoch_start(self) -> None:
            self.steps_per_epoch.append(self.trainer.global_step)
            self.factors.append(self.trainer.accumulate_grad_batches)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            return torch.nn.functional.mse_loss(self.layer(x), y)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Model


def loader() -> DataLoader[Any]:
    g = torch.Generator().manual_seed(1)
    return DataLoader(TensorDataset(torch.randn(10, 3, generator=g), torch.randn(10, 1, generator=g)), batch_size=2)


def run(lib: Any, root: Path, callback: Any, **kw: Any) -> tuple[list[int], list[int], int, list[float]]:
    model = model_class(lib)()
    trainer = lib.Trainer(default_root_dir=str(root), max_epochs=4, callbacks=[callback], logger=False,
                          enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                          **kw)  # fmt: skip
    trainer.fit(model, loader())
    weights = [round(v, 6) for v in torch.cat([p.detach().flatten() for p in model.parameters()]).tolist()]
    return model.factors, model.steps_per_epoch, trainer.global_step, weights


def test_factor_changes_per_epoch(tmp_path: Path) -> None:
    factors, steps_at_start, global_step, _ = run(fulgor, tmp_path, GradientAccumulationScheduler({1: 2, 3: 4}))
    # 5 batches per epoch: 5 steps with factor 1, 3 (2+2+1) with 2, 2 (4+1) with 4.
    assert factors == [1, 2, 2, 4]
    assert steps_at_start == [0, 5, 8, 11]
    assert global_step == 13


@pytest.mark.oracle
def test_matches_lightning(tmp_path: Path) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    expected = run(pl, tmp_path / "pl", pl.callbacks.GradientAccumulationScheduler({1: 2, 3: 4}))
    assert run(fulgor, tmp_path / "f", GradientAccumulationScheduler({1: 2, 3: 4})) == expected


def test_schedule_lookup_and_default_epoch_zero() -> None:
    scheduling = {2: 3, 5: 1}
    callback = GradientAccumulationScheduler(scheduling)
    assert scheduling == {2: 3, 5: 1, 0: 1}  # Lightning adds epoch 0 to the caller's dict
    assert [callback.get_accumulate_grad_batches(e) for e in range(7)] == [1, 1, 3, 3, 3, 1, 1]
    assert callback.going_to_accumulate_grad_batches()


def test_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="Empty dict cannot be interpreted correct"):
        GradientAccumulationScheduler({})
    with pytest.raises(
        MisconfigurationException, match=r"Epoch should be an int greater than or equal to 0. Got \[-1\]"
    ):
        GradientAccumulationScheduler({-1: 2})
    with pytest.raises(
        MisconfigurationException, match=r"Accumulation factor should be an int greater than 0. Got \[0\]"
    ):
        GradientAccumulationScheduler({1: 0})
    with pytest.raises(ValueError, match="You have set `accumulate_grad_batches` and are using the"):
        run(fulgor, tmp_path, GradientAccumulationScheduler({1: 2}), accumulate_grad_batches=2)
