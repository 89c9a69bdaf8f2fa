"""A LightningModule set up with Fabric (users move a module between the Trainer and Fabric): `self.trainer`,
`self.log`, `self.optimizers()`, `self.clip_gradients`, `manual_backward` and the module's hooks through `fabric.call`,
compared with Lightning Fabric running Lightning's LightningModule."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
import torch
from torch import nn

import fulgor
from fulgor.fabric import Fabric


class RecordingLogger:
    """Records what `log_metrics` receives (a duck-typed logger, accepted by both Fabrics)."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], int | None]] = []

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        self.calls.append(({k: float(v) for k, v in metrics.items()}, step))

    def finalize(self, status: str) -> None:  # Fabric does not call it; present for completeness
        pass


def _module_class(lightning_module: type) -> type:
    class Manual(lightning_module):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False
            self.layer = nn.Linear(4, 1)
            self.events: list[str] = []

        def on_train_start(self) -> None:
            self.events.append("on_train_start")

        def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
            opt = self.optimizers()
            loss = self.layer(batch).pow(2).mean()
            opt.zero_grad()
            self.manual_backward(loss)
            self.clip_gradients(opt, gradient_clip_val=0.5, gradient_clip_algorithm="norm")
            opt.step()
            self.log("loss", loss)
            self.log_dict({"double": loss * 2, "batch_idx": batch_idx}, logger=True)
            self.log("dropped", 1.0, logger=False)
            return loss

    return Manual


def _run(fabric_cls: type, lightning_module: type) -> tuple[list[Any], torch.Tensor, list[str], str]:
    torch.manual_seed(0)
    logger = RecordingLogger()
    fabric = fabric_cls(accelerator="cpu", devices=1, loggers=[logger])
    module = _module_class(lightning_module)()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    model, optimizer = fabric.setup(module, optimizer)
    assert module.optimizers() is optimizer
    assert module.fabric is fabric
    assert module.trainer.global_rank == 0
    with pytest.raises(AttributeError) as error:
        _ = module.trainer.current_epoch
    fabric.call("on_train_start")
    batches = torch.randn(3, 2, 4)
    for batch_idx, batch in enumerate(batches):
        model.training_step(batch, batch_idx)
    return logger.calls, module.layer.weight.detach().clone(), module.events, str(error.value)


def test_module_logs_steps_and_clips_through_fabric() -> None:
    calls, weight, events, message = _run(Fabric, fulgor.LightningModule)
    assert [sorted(metrics) for metrics, _ in calls] == [["loss"], ["batch_idx", "double"]] * 3
    assert all(step is None for _, step in calls)
    assert calls[1][0]["double"] == pytest.approx(2 * calls[0][0]["loss"])
    assert events == ["on_train_start"]
    assert "tried to access `self.trainer.current_epoch`" in message
    assert not torch.equal(weight, torch.zeros_like(weight))


@pytest.mark.oracle
def test_module_under_fabric_matches_lightning() -> None:
    fabric_module: ModuleType = pytest.importorskip("lightning_fabric")
    pl = pytest.importorskip("pytorch_lightning")
    ours = _run(Fabric, fulgor.LightningModule)
    theirs = _run(fabric_module.Fabric, pl.LightningModule)
    assert ours[0] == theirs[0]
    torch.testing.assert_close(ours[1], theirs[1], rtol=0, atol=1e-7)
    assert ours[2] == theirs[2]
    assert ours[3] == theirs[3]


def test_log_under_fabric_refuses_what_lightning_refuses() -> None:
    fabric = Fabric(accelerator="cpu", devices=1, loggers=[RecordingLogger()])
    module = fabric.setup(_module_class(fulgor.LightningModule)())
    with pytest.raises(ValueError, match="`list` values cannot be logged"):
        module.log("invalid", [])
    with pytest.raises(ValueError, match="nested dictionaries cannot be logged"):
        module.log_dict({"nested": {"nested": 1}})


def test_fabric_reference_reaches_inner_modules_weakly() -> None:
    outer, inner = fulgor.LightningModule(), fulgor.LightningModule()
    outer.inner = inner
    fabric = Fabric(accelerator="cpu", devices=1)
    outer.fabric = fabric
    assert inner.fabric is outer.fabric
    assert inner.fabric.device == fabric.device
    outer.fabric = None
    assert inner.fabric is None
