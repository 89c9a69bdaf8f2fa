"""fulgor's Fabric on one CPU process: setup and its wrappers, precision, backward and clipping, checkpoints (atomic,
filtered, strict, raw), logging, callbacks, launch checks, and the lazy import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from fulgor.fabric import Fabric, _FabricDataLoader, _FabricModule, _FabricOptimizer, is_wrapped
from fulgor.fabric_loggers import CSVLogger
from fulgor.strategies.single_device import SingleDeviceStrategy


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def _loader(shuffle: bool = False) -> DataLoader[Any]:
    data = TensorDataset(torch.arange(40, dtype=torch.float32).view(10, 4), torch.arange(10) % 2)
    return DataLoader(data, batch_size=4, shuffle=shuffle)


def test_import_fulgor_does_not_import_fabric() -> None:
    code = "import sys, fulgor; assert 'fulgor.fabric' not in sys.modules; print(fulgor.Fabric.__module__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "fulgor.fabric.fabric"


def test_defaults_and_rank_properties() -> None:
    fabric = Fabric(accelerator="cpu", devices=1)
    assert isinstance(fabric.strategy, SingleDeviceStrategy)
    assert fabric.device == torch.device("cpu")
    assert (fabric.global_rank, fabric.local_rank, fabric.node_rank, fabric.world_size) == (0, 0, 0, 1)
    assert fabric.is_global_zero
    assert fabric.loggers == []
    assert fabric.strategy.precision_plugin.precision == "32-true"


def test_setup_returns_wrappers_that_behave_like_the_originals() -> None:
    fabric = Fabric(accelerator="cpu", devices=1)
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    fabric_model, fabric_optimizer = fabric.setup(model, optimizer)
    assert isinstance(fabric_model, _FabricModule)
    assert fabric_model.module is model
    assert isinstance(fabric_optimizer, _FabricOptimizer)
    assert isinstance(fabric_optimizer, torch.optim.SGD)
    assert fabric_optimizer.optimizer is optimizer
    assert fabric_optimizer.param_groups is optimizer.param_groups
    assert list(fabric_model.state_dict()) == list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    fabric_model.custom = 3  # attribute writes reach the original module
    assert model.custom == 3
    assert is_wrapped(fabric_model)
    assert is_wrapped(fabric_optimizer)
    assert not is_wrapped(model)
    assert fabric.setup(_model()).__class__ is _FabricModule  # no optimizer: the module alone


def test_setup_twice_and_bad_inputs_are_refused() -> None:
    fabric = Fabric(accelerator="cpu", devices=1)
    model, optimizer = fabric.setup(_model(), torch.optim.SGD(_model().parameters(), lr=0.1))
    with pytest.raises(ValueError, match="A model should be passed only once to the `setup` method"):
        fabric.setup(model)
    with pytest.raises(ValueError, match="An optimizer should be passed only once to the `setup_optimizers`"):
        fabric.setup_optimizers(optimizer)
    with pytest.raises(ValueError, match="requires at least one optimizer"):
        fabric.setup_optimizers()
    with pytest.raises(ValueError, match="requires at least one dataloader"):
        fabric.setup_dataloaders()
    with pytest.raises(TypeError, match="Only PyTorch DataLoader"):
        fabric.setup_dataloaders([1, 2])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="set up the model first"):
        fabric.no_backward_sync(_model())  # type: ignore[arg-type]


def test_training_matches_a_plain_pytorch_loop() -> None:
    fabric = Fabric(accelerator="cpu", devices=1)
    raw, wrapped_source = _model(), _model()
    raw_opt = torch.optim.SGD(raw.parameters(), lr=0.1)
    model, optimizer = fabric.setup(wrapped_source, torch.optim.SGD(wrapped_source.parameters(), lr=0.1))
    loader = fabric.setup_dataloaders(_loader())
    for x, y in loader:
        for net, opt, backward in ((raw, raw_opt, torch.Tensor.backward), (model, optimizer, fabric.backward)):
            loss = nn.functional.cross_entropy(net(x), y)
            opt.zero_grad()
            backward(loss)
            opt.step()
    for ours, theirs in zip(wrapped_source.parameters(), raw.parameters()):
        assert torch.equal(ours, theirs)


@pytest.mark.parametrize(("precision", "dtype"), [("64-true", torch.float64), ("bf16-true", torch.bfloat16)])
def test_true_precisions_convert_weights_and_return_float32(precision: str, dtype: torch.dtype) -> None:
    fabric = Fabric(accelerator="cpu", devices=1, precision=precision)
    model = fabric.setup(_model())
    assert model.module[0].weight.dtype == dtype
    out = model(torch.ones(3, 4))
    assert out.dtype == torch.float32
    with fabric.init_tensor():
        assert torch.zeros(1).dtype == dtype


def test_bf16_mixed_autocasts_forward_and_returns_float32() -> None:
    fabric = Fabric(accelerator="cpu", devices=1, precision="bf16-mixed")
    seen: list[torch.dtype] = []
    model = _model()
    model[0].register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    out = fabric.setup(model)(torch.ones(3, 4))
    assert seen == [torch.bfloat16]
    assert out.dtype == torch.float32
    assert model[0].weight.dtype == torch.float32
    with fabric.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


def test_16_mixed_on_cpu_becomes_bf16_with_a_warning() -> None:
    with pytest.warns(UserWarning, match=r"Fabric\(accelerator='cpu', precision='16-mixed'\).*bf16-mixed"):
        fabric = Fabric(accelerator="cpu", precision="16-mixed")
    assert fabric.strategy.precision_plugin.precision == "bf16-mixed"


def test_bad_flags_are_refused_with_the_argument_named() -> None:
    with pytest.raises(ValueError, match="Precision 'fp7' is invalid"):
        Fabric(accelerator="cpu", precision="fp7")
    with pytest.raises(ValueError, match="num_nodes=0"):
        Fabric(accelerator="cpu", num_nodes=0)
    with pytest.raises(ValueError, match="invalid strategy name"):
        Fabric(accelerator="cpu", strategy="warp")


def test_clip_gradients_by_norm_and_value() -> None:
    fabric = Fabric(accelerator="cpu", devices=1)
    source = _model()
    model, optimizer = fabric.setup(source, torch.optim.SGD(source.parameters(), lr=0.1))
    loss = model(torch.randn(8, 4)).pow(2).sum() * 100
    fabric.backward(loss)
    norm = fabric.clip_gradients(model, optimizer, max_norm=1.0)
    assert norm is not None
    assert float(norm) > 1.0
    clipped = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert float(clipped.norm()) == pytest.approx(1.0, rel=1e-4)
    assert fabric.clip_gradients(model, optimizer, clip_val=0.01) is None
    assert float(torch.cat([p.grad.flatten() for p in model.parameters()]).abs().max()) <= 0.01
    with pytest.raises(ValueError, match="Only one of `clip_val` or `max_norm`"):
        fabric.clip_gradients(model, optimizer, clip_val=1, max_norm=1)
    with pytest.raises(ValueError, match="either `clip_val` or `max_norm`"):
        fabric.clip_gradients(model, optimizer)


def test_dataloader_wrapper_moves_batches_and_keeps_length() -> None:
    fabric = Fabric(accelerator="cpu", devices=1)
    first, _ = fabric.setup_dataloaders(_loader(), _loader(shuffle=True))
    assert isinstance(first, _FabricDataLoader)
    assert len(first) == 3
    assert first.device == torch.device("cpu")
    assert first.batch_size == 4  # the loader's attributes are the wrapper's
    assert not isinstance(first.sampler, DistributedSampler)  # one process: no sampler injected
    assert [x.shape[0] for x, _ in first] == [4, 4, 2]
    with pytest.raises(ValueError, match="passed only once"):
        fabric.setup_dataloaders(first)


def test_save_and_load_round_trip_with_remainder_and_strict(tmp_path: Path) -> None:
    fabric = Fabric(accelerator="cpu", devices=1)
    source = _model()
    model, optimizer = fabric.setup(source, torch.optim.Adam(source.parameters(), lr=0.1))
    fabric.backward(model(torch.ones(2, 4)).sum())
    optimizer.step()
    fabric.save(tmp_path / "a.ckpt", {"model": model, "optimizer": optimizer, "step": 7, "extra": "x"})
    raw = torch.load(tmp_path / "a.ckpt")
    assert sorted(raw) == ["extra", "model", "optimizer", "step"]
    assert list(raw["model"]) == ["0.weight", "0.bias", "2.weight", "2.bias"]  # no wrapper prefix
    target = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    fresh, fresh_opt = fabric.setup(target, torch.optim.Adam(target.parameters(), lr=0.1))
    state = {"model": fresh, "optimizer": fresh_opt, "step": 0}
    remainder = fabric.load(tmp_path / "a.ckpt", state)
    assert remainder == {"extra": "x"}
    assert state["step"] == 7
    assert state["model"] is fresh  # wrappers stay in the dict, restored in place
    for ours, saved in zip(fresh.parameters(), model.parameters()):
        assert torch.equal(ours, saved)
    assert fresh_opt.state_dict()["state"][0]["step"] == 1
    with pytest.raises(KeyError, match="'missing'"):
        fabric.load(tmp_path / "a.ckpt", {"missing": 1})
    rest = fabric.load(tmp_path / "a.ckpt", {"missing": 1, "step": 0}, strict=False)
    assert sorted(rest) == ["extra", "model", "optimizer"]
    assert sorted(fabric.load(tmp_path / "a.ckpt")) == ["extra", "model", "optimizer", "step"]


def test_save_filter_and_its_errors(tmp_path: Path) -> None:
    fabric = Fabric(accelerator="cpu", devices=1)
    model = fabric.setup(_model())
    fabric.save(tmp_path / "w.ckpt", {"model": model}, filter={"model": lambda name, value: "weight" in name})
    assert list(torch.load(tmp_path / "w.ckpt")["model"]) == ["0.weight", "2.weight"]
    with pytest.raises(TypeError, match="Filter should be a dictionary"):
        fabric.save(tmp_path / "x.ckpt", {"model": model}, filter=[1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not present in the state keys"):
        fabric.save(tmp_path / "x.ckpt", {"model": model}, filter={"other": lambda n, v: True})
    with pytest.raises(TypeError, match="to be a callable"):
        fabric.save(tmp_path / "x.ckpt", {"model": model}, filter={"model": 1})  # type: ignore[dict-item]
    assert not (tmp_path / "x.ckpt").exists()


def test_load_raw_reads_a_plain_state_dict(tmp_path: Path) -> None:
    source = _model()
    torch.save(source.state_dict(), tmp_path / "raw.pt")
    fabric = Fabric(accelerator="cpu", devices=1)
    target = fabric.setup(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)))
    fabric.load_raw(tmp_path / "raw.pt", target)
    assert all(torch.equal(a, b) for a, b in zip(target.parameters(), source.parameters()))


def test_log_and_log_dict_reach_every_logger(tmp_path: Path) -> None:
    loggers = [CSVLogger(tmp_path, name="a", flush_logs_every_n_steps=1), CSVLogger(tmp_path, name="b")]
    fabric = Fabric(accelerator="cpu", devices=1, loggers=loggers)
    assert fabric.logger is loggers[0]
    assert fabric.loggers == loggers
    fabric.log("loss", torch.tensor(0.5, requires_grad=True), step=0)
    fabric.log_dict({"acc": torch.tensor(0.25), "n": 3}, step=1)
    for logger in loggers:
        logger.finalize("success")
    text = (tmp_path / "a" / "version_0" / "metrics.csv").read_text().splitlines()
    assert sorted(text[0].split(",")) == ["acc", "loss", "n", "step"]
    assert len(text) == 3
    assert (tmp_path / "b" / "version_0" / "metrics.csv").exists()


def test_call_runs_matching_callbacks_and_filters_kwargs() -> None:
    calls: list[tuple[str, Any]] = []

    class Full:
        def on_epoch(self, epoch: int, results: Any) -> None:
            calls.append(("full", (epoch, results)))

    class Partial:
        def on_epoch(self, epoch: int) -> None:
            calls.append(("partial", epoch))

        not_callable = 5

    fabric = Fabric(accelerator="cpu", devices=1, callbacks=[Full(), Partial(), object()])
    fabric.call("on_epoch", 2, results={"x": 1})
    assert calls == [("full", (2, {"x": 1})), ("partial", 2)]
    with pytest.warns(UserWarning, match=r"Skipping the callback `Partial.not_callable`"):
        fabric.call("not_callable")
    Fabric(accelerator="cpu", callbacks=Full()).call("on_epoch", 1, results=None)
    assert calls[-1] == ("full", (1, None))


def test_optimizer_step_calls_after_step_hook() -> None:
    seen: list[Any] = []

    class AfterStep:
        def on_after_optimizer_step(self, strategy: Any, optimizer: Any) -> None:
            seen.append((strategy, optimizer))

    fabric = Fabric(accelerator="cpu", devices=1, callbacks=[AfterStep()])
    optimizer = torch.optim.SGD(_model().parameters(), lr=0.1)
    fabric.setup_optimizers(optimizer).step()
    assert seen == [(fabric.strategy, optimizer)]


def test_launch_runs_the_function_with_fabric_and_checks_it() -> None:
    fabric = Fabric(accelerator="cpu", devices=1)
    assert fabric.launch(lambda f, x, y=0: (f is fabric, x + y), 1, y=2) == (True, 3)
    assert fabric.launch() is None
    with pytest.raises(TypeError, match="needs to be a callable"):
        fabric.launch(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="needs to take at least one argument"):
        fabric.launch(lambda: None)


def test_multi_device_use_before_launch_is_refused() -> None:
    fabric = Fabric(accelerator="cpu", devices=2, strategy="ddp_spawn")
    with pytest.raises(RuntimeError, match=r"you must call `\.launch\(\)`"):
        fabric.setup(_model())
    with pytest.raises(TypeError, match="needs to be called with a function"):
        fabric.launch()


def test_collectives_on_one_process_and_helpers() -> None:
    fabric = Fabric(accelerator="cpu", devices=1)
    assert fabric.all_reduce(3).item() == 3
    assert fabric.all_reduce({"a": torch.tensor(2.0)})["a"].item() == 2.0
    assert fabric.all_gather(torch.tensor([1, 2])).tolist() == [1, 2]
    assert fabric.broadcast({"k": 1}) == {"k": 1}
    fabric.barrier()
    with fabric.rank_zero_first():
        pass
    assert fabric.to_device({"x": torch.ones(1)})["x"].device == torch.device("cpu")
    with fabric.init_module():
        assert nn.Linear(1, 1).weight.device == torch.device("cpu")
    assert Fabric.seed_everything(5, verbose=False) == 5
    model = fabric.setup(_model())
    with fabric.no_backward_sync(model):
        pass


def test_print_only_on_local_rank_zero(capsys: pytest.CaptureFixture[str]) -> None:
    Fabric(accelerator="cpu", devices=1).print("hello", 1)
    assert capsys.readouterr().out == "hello 1\n"


def test_methods_running_the_model_past_the_strategy_wrapper_are_refused() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layer(x)

        def constant(self) -> int:
            return 100

        def run_layer(self) -> torch.Tensor:
            return self.layer(torch.ones(1, 2))

    class Wrapper(nn.Module):  # stands for a strategy's wrapper (DDP)
        def __init__(self, module: nn.Module) -> None:
            super().__init__()
            self.inner = module

        def forward(self, *args: Any) -> Any:
            return self.inner(*args)

    fabric = Fabric(accelerator="cpu", devices=1)
    net = Net()
    wrapped = _FabricModule(Wrapper(net), fabric.strategy, original_module=net)
    assert wrapped.constant() == 100
    with pytest.raises(RuntimeError, match=r"You are calling the method `Net.run_layer\(\)` from outside the model"):
        wrapped.run_layer()
    with pytest.raises(AttributeError, match="has no attribute 'training_step'"):  # routed (as Lightning), then missing
        wrapped.training_step()
    plain = _FabricModule(net, fabric.strategy)
    assert plain.run_layer().shape == (1, 2)  # not wrapped by a strategy: nothing to bypass


def test_64_true_keeps_complex_buffers_complex() -> None:
    class WithComplex(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Linear(3, 1)
            self.register_buffer("phase", torch.complex(torch.ones(2), torch.ones(2)))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            assert x.dtype == torch.float64
            return self.layer(x)

    fabric = Fabric(accelerator="cpu", devices=1, precision="64-true")
    with fabric.init_module():
        module = WithComplex()
    model = fabric.setup(module)
    assert module.phase.dtype == torch.complex128
    assert module.layer.weight.dtype == torch.float64
    output = model(torch.ones(2, 3))
    assert output.dtype == torch.float32
    fabric.backward(output.sum())
    assert module.layer.weight.grad is not None
    assert module.layer.weight.grad.dtype == torch.float64


def test_plain_backward_is_refused_where_the_precision_needs_fabric_backward() -> None:
    fabric = Fabric(accelerator="cpu", devices=1, precision="bf16-mixed")
    model = fabric.setup(_model())
    with pytest.raises(RuntimeError, match=r"requires you to call `fabric.backward\(loss\)`"):
        model(torch.ones(2, 4)).sum().backward()
    fabric.backward(model(torch.ones(2, 4)).sum())  # the supported call
    plain = Fabric(accelerator="cpu", devices=1).setup(_model())
    plain(torch.ones(2, 4)).sum().backward()  # "32-true": loss.backward() is fine
