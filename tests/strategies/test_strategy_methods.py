"""Strategy methods Lightning makes public and fulgor's loop calls: `backward` (between the closure and
`LightningModule.backward`; an override is called for every backward, automatic and manual, with the hooks around
it, while the default strategy keeps the plain `loss.backward()` path) and `tensor_init_context` (what
`Trainer.init_module` creates tensors under)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import fulgor
from fulgor.strategies import SingleDeviceStrategy, Strategy


class Recording(SingleDeviceStrategy):
    def __init__(self) -> None:
        super().__init__("cpu")
        self.seen: list[tuple[float, Any]] = []

    def backward(self, closure_loss: torch.Tensor, optimizer: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        self.seen.append((round(float(closure_loss), 6), type(optimizer).__name__))
        return super().backward(closure_loss, optimizer, *args, **kwargs)


class Tiny(fulgor.LightningModule):
    def __init__(self, manual: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layer = torch.nn.Linear(2, 1)
        self.automatic_optimization = not manual
        self.hooks: list[str] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        if self.automatic_optimization:
            return loss
        opt = self.optimizers()
        opt.zero_grad()
        self.manual_backward(loss)
        opt.step()
        return None

    def on_before_backward(self, loss: torch.Tensor) -> None:
        self.hooks.append("on_before_backward")

    def on_after_backward(self) -> None:
        self.hooks.append("on_after_backward")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(root: Path, model: Tiny, strategy: Any = "auto") -> fulgor.Trainer:
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(1))
    trainer = fulgor.Trainer(
        max_epochs=1, default_root_dir=root, strategy=strategy, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(model, DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4))
    return trainer


@pytest.mark.parametrize("manual", [False, True])
def test_an_overriding_strategy_runs_every_backward(tmp_path: Path, manual: bool) -> None:
    reference = Tiny(manual)
    fit(tmp_path / "plain", reference)
    strategy = Recording()
    model = Tiny(manual)
    trainer = fit(tmp_path / "custom", model, strategy)
    assert trainer.strategy is strategy
    assert strategy.lightning_module is model
    assert [optimizer for _, optimizer in strategy.seen] == ["NoneType" if manual else "SGD"] * 2
    assert model.hooks == ["on_before_backward", "on_after_backward"] * 2
    assert torch.equal(model.layer.weight, reference.layer.weight)  # the same math


def test_wrapping_the_base_method_sees_each_automatic_backward(tmp_path: Path) -> None:
    with mock.patch.object(Strategy, "backward", autospec=True, side_effect=Strategy.backward) as wrapped:
        fit(tmp_path, Tiny())
    assert wrapped.call_count == 2


def test_backward_outside_a_run_is_lightning_fabrics_form() -> None:
    # Outside a Trainer run `backward(tensor, module, *args)` is Fabric's call: the precision's backward, no hooks.
    weight = torch.tensor(2.0, requires_grad=True)
    assert SingleDeviceStrategy("cpu").backward(weight * 3, None) is None
    assert weight.grad == 3


def test_init_module_creates_tensors_under_the_strategys_context(tmp_path: Path) -> None:
    entered: list[bool | None] = []

    class Logged(SingleDeviceStrategy):
        @contextlib.contextmanager
        def tensor_init_context(self, empty_init: bool | None = None) -> Iterator[None]:
            entered.append(empty_init)
            with super().tensor_init_context(empty_init):
                yield

    trainer = fulgor.Trainer(strategy=Logged("cpu"), precision="64-true", logger=False, default_root_dir=tmp_path)
    with trainer.init_module(empty_init=True):
        layer = torch.nn.Linear(2, 2)
    assert entered == [True]
    assert layer.weight.dtype == torch.float64
    assert torch.get_default_dtype() == torch.float32  # restored after the block
