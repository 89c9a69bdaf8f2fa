"""Differential: a Fabric program run with a recording subclass of the strategy makes the same strategy calls (names,
order and the arguments that matter) under fulgor's Fabric as under Lightning Fabric 2.6.6, with the same numbers."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader

from fulgor.fabric import Fabric
from fulgor.strategies.single_device import SingleDeviceStrategy

lightning_fabric = pytest.importorskip("lightning_fabric")

pytestmark = pytest.mark.oracle

# The Strategy methods Lightning Fabric calls (and the ones a strategy calls on itself while serving them).
RECORDED = (
    "setup_environment", "setup_module_and_optimizers", "setup_module", "setup_optimizer", "module_to_device",
    "process_dataloader", "tensor_init_context", "module_init_context", "backward", "optimizer_step",
    "clip_gradients_norm", "clip_gradients_value", "all_reduce", "all_gather", "barrier", "broadcast",
    "save_checkpoint", "load_checkpoint", "get_module_state_dict", "load_module_state_dict", "get_optimizer_state",
)  # fmt: skip


def recording(base: type) -> type:
    """`base` with every `RECORDED` method appending `(name, summary of its arguments)` to `self.calls`."""

    def make(name: str) -> Any:
        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, _summary(args), _summary(kwargs)))
            return getattr(super(cls, self), name)(*args, **kwargs)

        return method

    cls = type("Recording", (base,), {name: make(name) for name in RECORDED})
    cls.calls = []  # type: ignore[attr-defined]
    return cls


def _summary(value: Any) -> Any:
    """What is compared of an argument: its kind (a module, an optimizer, a tensor) or the value itself."""
    if isinstance(value, dict):
        return {key: _summary(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_summary(item) for item in value]
    if isinstance(value, torch.nn.Module):
        return f"module:{type(value).__name__}"
    if isinstance(value, torch.optim.Optimizer):
        return "optimizer"
    if isinstance(value, torch.Tensor):
        return "tensor"
    if isinstance(value, DataLoader):
        return "dataloader"
    if isinstance(value, Path):
        return value.name
    if callable(value):
        return "callable"
    return value


def program(fabric_cls: type, strategy_cls: type, root: Path) -> dict[str, Any]:
    """A complete small Fabric loop: launch, init contexts, setup, steps with clipping, collectives, save/load."""
    strategy = recording(strategy_cls)(device="cpu")
    fabric = fabric_cls(accelerator="cpu", strategy=strategy)

    def run(fabric: Any) -> dict[str, Any]:
        torch.manual_seed(7)
        with fabric.init_module():
            model = torch.nn.Linear(3, 2)
        with fabric.init_tensor():
            scale = torch.tensor(0.5)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        model, optimizer = fabric.setup(model, optimizer)
        data = fabric.setup_dataloaders(DataLoader(torch.randn(8, 3), batch_size=4))
        losses = []
        for step, batch in enumerate(data):
            loss = model(batch).pow(2).mean() * scale
            fabric.backward(loss)
            if step == 0:
                fabric.clip_gradients(model, optimizer, clip_val=0.01)
            else:
                fabric.clip_gradients(model, optimizer, max_norm=0.5)
            optimizer.step()
            optimizer.zero_grad()
            losses.append(float(fabric.all_reduce(loss.detach(), reduce_op="sum")))
        fabric.barrier()
        fabric.broadcast(1)
        fabric.all_gather(torch.tensor(1.0))
        fabric.save(root / "state.ckpt", {"model": model, "optimizer": optimizer, "step": 2})
        restored = {"model": model, "optimizer": optimizer, "step": 0}
        remainder = fabric.load(root / "state.ckpt", restored)
        torch.save(model.state_dict(), root / "raw.pt")
        fabric.load_raw(root / "raw.pt", model)
        full = fabric.load(root / "state.ckpt")
        return {
            "losses": losses,
            "weight": model.weight.detach().clone(),
            "step": restored["step"],
            "remainder": remainder,
            "full": sorted(full),
        }

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fabric.launch(run)
    return {"result": result, "calls": strategy.calls}


def test_a_fabric_program_makes_lightnings_strategy_calls(tmp_path: Path) -> None:
    (tmp_path / "ours").mkdir()
    (tmp_path / "theirs").mkdir()
    ours = program(Fabric, SingleDeviceStrategy, tmp_path / "ours")
    theirs = program(lightning_fabric.Fabric, lightning_fabric.strategies.SingleDeviceStrategy, tmp_path / "theirs")
    assert [call[0] for call in ours["calls"]] == [call[0] for call in theirs["calls"]]
    assert ours["calls"] == theirs["calls"]
    assert ours["result"]["losses"] == pytest.approx(theirs["result"]["losses"], abs=1e-7)
    assert torch.equal(ours["result"]["weight"], theirs["result"]["weight"])
    for key in ("step", "remainder", "full"):
        assert ours["result"][key] == theirs["result"][key]
