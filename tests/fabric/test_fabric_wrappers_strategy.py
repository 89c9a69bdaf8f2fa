"""Fabric's wrappers and the strategy: `_FabricOptimizer.step`/`state_dict` go through `strategy.optimizer_step` and
`strategy.get_optimizer_state`; `_FabricModule` reads `strategy.precision`, routes step methods through a strategy's
wrapper (`call_forward_module`) and takes its fast paths without changing results; the dataloader passes batches
already on the device through unchanged. Compared with Lightning Fabric where it is installed."""

from __future__ import annotations

from typing import Any
from unittest.mock import Mock

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fulgor.fabric import Fabric
from fulgor.fabric.wrappers import _FabricDataLoader, _FabricModule, _FabricOptimizer, unwrap_objects
from fulgor.precision import Precision


# ------------------------------------------------------------------------------------------------- the optimizer
def test_step_goes_through_strategy_optimizer_step() -> None:
    optimizer = Mock(spec=torch.optim.Adam)
    strategy = Mock(spec=["optimizer_step"])
    strategy.optimizer_step.return_value = 7
    wrapped = _FabricOptimizer(optimizer, strategy)
    assert wrapped.step() == 7
    strategy.optimizer_step.assert_called_once_with(optimizer)
    strategy.reset_mock()
    closure = Mock()
    wrapped.step(closure=closure)
    strategy.optimizer_step.assert_called_once_with(optimizer, closure=closure)


def test_a_strategy_model_that_steps_itself_is_stepped() -> None:
    engine = Mock(spec=["step", "zero_grad", "param_groups", "defaults", "state", "state_dict", "load_state_dict"])
    strategy = Mock(spec=["optimizer_step", "model"])
    strategy.model = engine
    callback = Mock()
    _FabricOptimizer(Mock(spec=torch.optim.SGD), strategy, callbacks=[callback]).step()
    strategy.optimizer_step.assert_called_once_with(engine)
    callback.on_after_optimizer_step.assert_called_once_with(strategy=strategy, optimizer=engine)


def test_state_dict_is_the_strategys_and_steps_are_real() -> None:
    fabric = Fabric(accelerator="cpu", devices=1)
    net = nn.Linear(2, 1)
    model, optimizer = fabric.setup(net, torch.optim.Adam(net.parameters(), lr=0.1))
    fabric.backward(model(torch.ones(3, 2)).sum())
    optimizer.step()
    assert optimizer.state_dict() == fabric.strategy.get_optimizer_state(optimizer.optimizer)
    assert optimizer.state_dict()["state"][0]["step"] == torch.tensor(1.0)
    strategy = Mock()
    strategy.get_optimizer_state.return_value = {"from": "strategy"}
    assert _FabricOptimizer(optimizer.optimizer, strategy).state_dict() == {"from": "strategy"}
    strategy.get_optimizer_state.assert_called_once_with(optimizer.optimizer)


# --------------------------------------------------------------------------------------------------- the module
class _Wrapper(nn.Module):
    """A strategy wrapper that knows only `forward` (as DDP): records its calls."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.calls = 0

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.module(*args, **kwargs)


class _Steps(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> Any:
        return self.layer(x)

    def training_step(self, x: torch.Tensor, scale: float = 1.0) -> Any:
        return self(x).sum() * scale

    def helper(self, x: torch.Tensor) -> Any:
        return self.layer(x) + 1


def _wrapped() -> tuple[_FabricModule, _Wrapper, _Steps, Mock]:
    torch.manual_seed(0)
    original = _Steps()
    wrapper = _Wrapper(original)
    strategy = Mock()
    strategy.precision = Mock(wraps=Precision())
    return _FabricModule(wrapper, strategy, original_module=original), wrapper, original, strategy


def test_step_methods_run_through_the_wrapper_under_the_precision_context() -> None:
    module, wrapper, original, strategy = _wrapped()
    x = torch.ones(1, 2)
    step = module.training_step
    assert step.__name__ == "call_forward_module"
    assert module.training_step(x, scale=2.0) == original.training_step(x, scale=2.0)
    assert wrapper.calls == 1  # through the wrapper once (the inner `self(x)` is the real forward)
    assert strategy.precision.forward_context.call_count == 1
    assert "forward" not in original.__dict__  # the temporary forward is gone
    assert module.validation_step.__name__ == "call_forward_module"
    with pytest.raises(AttributeError, match="has no attribute 'validation_step'"):
        module.validation_step(x)  # through the wrapper (as in Lightning), then missing
    assert wrapper.calls == 2
    assert "forward" not in original.__dict__


def test_marked_methods_and_refused_bypasses() -> None:
    module, wrapper, original, _ = _wrapped()
    x = torch.ones(1, 2)
    with pytest.raises(RuntimeError, match=r"You are calling the method `_Steps.helper\(\)` from outside the model"):
        module.helper(x)
    module.mark_forward_method("helper")
    torch.testing.assert_close(module.helper(x), original.helper(x))
    assert wrapper.calls == 1
    plain = _FabricModule(original, Mock())  # nothing wraps it: nothing to route
    assert plain.training_step == original.training_step


@pytest.mark.parametrize("precision", ["32-true", "64-true", "bf16-mixed"])
def test_fast_forward_gives_the_plain_result(precision: str) -> None:
    fabric = Fabric(accelerator="cpu", devices=1, precision=precision)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
    model = fabric.setup(net)
    x = torch.randn(3, 4)
    out = model(x)
    assert out.dtype == torch.float32  # outputs come back in the default dtype
    with fabric.autocast():
        expected = net(x.to(next(net.parameters()).dtype))
    torch.testing.assert_close(out, expected.float(), atol=1e-2 if precision == "bf16-mixed" else 1e-6, rtol=0)
    assert model.__dict__["_plain_forward"] is (precision == "32-true")


@pytest.mark.oracle
def test_routing_matches_lightning() -> None:
    lightning_wrappers = pytest.importorskip("lightning_fabric.wrappers")
    lightning_precision = pytest.importorskip("lightning_fabric.plugins.precision")
    results = []
    for module_class, precision in (
        (_FabricModule, Precision()),
        (lightning_wrappers._FabricModule, lightning_precision.Precision()),
    ):
        torch.manual_seed(0)
        original = _Steps()
        wrapper = _Wrapper(original)
        strategy = Mock()
        strategy.precision = Mock(wraps=precision)
        module = module_class(wrapper, strategy, original_module=original)
        x = torch.ones(1, 2)
        out = module.training_step(x, scale=3.0)
        with pytest.raises(AttributeError) as missing:
            module.predict_step(x)
        results.append((out.item(), wrapper.calls, strategy.precision.forward_context.call_count, str(missing.value)))
    assert results[0] == results[1]


# ----------------------------------------------------------------------------------------------- the dataloader
def test_batches_already_on_the_device_pass_through_and_others_move() -> None:
    x, y = torch.arange(8.0).reshape(4, 2), torch.arange(4.0)
    loader = DataLoader(TensorDataset(x, y), batch_size=2)
    batches = list(_FabricDataLoader(loader, device=torch.device("cpu")))
    assert [type(batch) for batch in batches] == [list, list]
    torch.testing.assert_close(torch.cat([batch[0] for batch in batches]), x)
    dicts: DataLoader[Any] = DataLoader([{"a": x[0]}, {"a": x[1]}], batch_size=2)  # type: ignore[arg-type]
    moved = list(_FabricDataLoader(dicts, device=torch.device("meta")))
    assert moved[0]["a"].device == torch.device("meta")
    float64 = list(_FabricDataLoader(DataLoader(TensorDataset(x), batch_size=4), device=torch.device("meta")))
    assert float64[0][0].device == torch.device("meta")


def test_fabric_loop_weights_equal_the_raw_loop() -> None:
    def data() -> DataLoader[Any]:
        g = torch.Generator().manual_seed(1)
        return DataLoader(TensorDataset(torch.randn(64, 8, generator=g), torch.randn(64, 1, generator=g)), 16)

    def net() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1))

    raw = net()
    optimizer = torch.optim.SGD(raw.parameters(), lr=0.1)
    for x, y in data():
        optimizer.zero_grad()
        F.mse_loss(raw(x), y).backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    fabric = Fabric(accelerator="cpu", devices=1)
    ours = net()
    model, fabric_optimizer = fabric.setup(ours, torch.optim.SGD(ours.parameters(), lr=0.1))
    for x, y in fabric.setup_dataloaders(data()):
        fabric_optimizer.zero_grad()
        fabric.backward(F.mse_loss(model(x), y))
        fabric_optimizer.step()
    for a, b in zip(raw.parameters(), ours.parameters()):
        assert torch.equal(a, b)


def test_unwrap_objects_reaches_nested_containers_as_lightning_fabric_does() -> None:
    module = torch.nn.Linear(1, 1)
    optimizer = torch.optim.Adam(module.parameters())
    loader = DataLoader([1, 2, 3])
    strategy = Fabric(accelerator="cpu", devices=1).strategy
    wrapped = [_FabricModule(module, strategy), _FabricOptimizer(optimizer, strategy), _FabricDataLoader(loader)]
    state = {"int": 1, "nested": [*wrapped, module], "pair": (wrapped[0], 2), "deep": {"list": [wrapped[1]]}}
    assert unwrap_objects(state) == {
        "int": 1,
        "nested": [module, optimizer, loader, module],
        "pair": (module, 2),
        "deep": {"list": [optimizer]},
    }
