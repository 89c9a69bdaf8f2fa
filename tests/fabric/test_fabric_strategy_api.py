"""The shared strategies answer Lightning Fabric 2.6.6's Strategy API next to the Trainer's: the same method signatures,
the `precision=` spelling, both checkpoint forms, Lightning's `reduce` argument order, and Fabric's strategy names."""

from __future__ import annotations

import inspect
import os
import warnings
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import torch

import fulgor
from fulgor.checkpoint_io import CheckpointIO
from fulgor.errors import MisconfigurationException
from fulgor.fabric import Fabric
from fulgor.precision import DoublePrecision, Precision
from fulgor.strategies.ddp import DDPStrategy
from fulgor.strategies.dp import DataParallelStrategy
from fulgor.strategies.single_device import SingleDeviceStrategy
from fulgor.strategies.strategy_registry import FABRIC_STRATEGY_REGISTRY, StrategyRegistry

# Lightning Fabric's Strategy methods, whose parameters fulgor's shared classes start with (in order, same names).
FABRIC_METHODS = (
    "setup_environment", "process_dataloader", "tensor_init_context", "module_init_context",
    "setup_module_and_optimizers", "setup_module", "setup_optimizer", "module_to_device", "batch_to_device",
    "optimizer_step", "all_gather", "all_reduce", "barrier", "broadcast", "reduce_boolean_decision",
    "save_checkpoint", "get_module_state_dict", "load_module_state_dict", "get_optimizer_state", "load_checkpoint",
    "teardown", "clip_gradients_norm", "clip_gradients_value",
)  # fmt: skip


def _names(function: Any) -> list[str]:
    """The parameters that can be given by name or position (not `*args`, `**kwargs` or keyword-only ones)."""
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in inspect.signature(function).parameters.values() if p.kind in kinds]


@pytest.mark.oracle
@pytest.mark.parametrize("name", FABRIC_METHODS)
def test_the_fabric_methods_take_lightnings_parameters(name: str) -> None:
    theirs = pytest.importorskip("lightning_fabric.strategies").Strategy
    expected = _names(getattr(theirs, name))
    assert _names(getattr(fulgor.strategies.Strategy, name))[: len(expected)] == expected


@pytest.mark.oracle
def test_the_trainer_methods_keep_lightnings_parameters() -> None:
    theirs = pytest.importorskip("pytorch_lightning.strategies").Strategy
    for name in ("reduce", "all_gather", "broadcast", "barrier", "remove_checkpoint", "tensor_init_context"):
        assert _names(getattr(fulgor.strategies.Strategy, name)) == _names(getattr(theirs, name)), name
    # Trainer form `save_checkpoint(checkpoint, filepath, storage_options)`: the same positions, by keyword too.
    assert {"checkpoint", "filepath", "storage_options"} <= set(
        inspect.signature(fulgor.strategies.Strategy.save_checkpoint).parameters
    )


def test_precision_has_both_spellings() -> None:
    double = DoublePrecision()
    for strategy in (
        SingleDeviceStrategy(precision=double),
        SingleDeviceStrategy("cpu", None, None, double),
        DDPStrategy(precision=double),
        DataParallelStrategy(precision=double),
    ):
        assert strategy.precision is strategy.precision_plugin is double
    strategy = SingleDeviceStrategy()
    strategy.precision = double
    assert strategy.precision_plugin is double
    with pytest.raises(ValueError, match=r"precision_plugin=.*precision=.*Pass only one"):
        SingleDeviceStrategy(precision_plugin=Precision(), precision=double)


def test_reduce_takes_the_group_before_the_operation() -> None:
    value = torch.tensor([1.0, 3.0])
    strategy = SingleDeviceStrategy()
    assert strategy.reduce(value, None, "sum") is value
    assert strategy.all_reduce(value, group=None, reduce_op="max") is value
    with pytest.raises(TypeError, match=r"reduce\(tensor, reduce_op='sum'\)"):
        strategy.reduce(value, "sum")


class RecordingIO(CheckpointIO):
    def __init__(self) -> None:
        self.saved: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def save_checkpoint(self, *args: Any, **kwargs: Any) -> None:
        self.saved.append((args, kwargs))

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return {"state_dict": {}, "read": str(path), "weights_only": weights_only}

    def remove_checkpoint(self, path: Any) -> None:
        pass


def test_save_checkpoint_dispatches_on_the_first_argument(tmp_path: Path) -> None:
    io = RecordingIO()
    strategy = SingleDeviceStrategy(checkpoint_io=io)
    # Trainer form: a finished dict first, handed to the plugin as it is.
    strategy.save_checkpoint({"state_dict": {"w": 1}}, tmp_path / "a.ckpt")
    strategy.save_checkpoint(checkpoint={"epoch": 2}, filepath=tmp_path / "b.ckpt", storage_options="s3")
    # Fabric form: the state converted (a module becomes its state dict, the filter applied).
    model = torch.nn.Linear(2, 1)
    strategy.save_checkpoint(
        tmp_path / "c.ckpt", {"model": model, "n": 3}, filter={"model": lambda key, _: key == "weight"}
    )
    assert io.saved[0] == (({"state_dict": {"w": 1}}, tmp_path / "a.ckpt"), {"storage_options": None})
    assert io.saved[1] == (({"epoch": 2}, tmp_path / "b.ckpt"), {"storage_options": "s3"})
    (args, kwargs) = io.saved[2]
    assert args == ()
    assert kwargs["path"] == tmp_path / "c.ckpt"
    assert kwargs["storage_options"] is None
    assert list(kwargs["checkpoint"]["model"]) == ["weight"]
    assert kwargs["checkpoint"]["n"] == 3


def test_fabric_form_writes_atomically_and_reads_back(tmp_path: Path) -> None:
    strategy = SingleDeviceStrategy()
    model = torch.nn.Linear(2, 1)
    strategy.save_checkpoint(tmp_path / "state.ckpt", {"model": model, "tag": "x"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.ckpt"]  # no temporary file left behind
    other = torch.nn.Linear(2, 1)
    assert strategy.load_checkpoint(tmp_path / "state.ckpt", {"model": other}) == {"tag": "x"}
    assert torch.equal(other.weight, model.weight)
    assert sorted(strategy.load_checkpoint(tmp_path / "state.ckpt")) == ["model", "tag"]
    with pytest.raises(TypeError, match="storage_options"):
        strategy.save_checkpoint(tmp_path / "s.ckpt", {"tag": 1}, storage_options={"anon": True})


def test_load_checkpoint_in_a_trainer_run_reads_the_trainer_layout(tmp_path: Path) -> None:
    io = RecordingIO()
    strategy = SingleDeviceStrategy(checkpoint_io=io)
    strategy.connect(torch.nn.Linear(1, 1))  # what the Trainer does as a run starts
    loaded = strategy.load_checkpoint(tmp_path / "x.ckpt", weights_only=True)
    assert loaded == {"state_dict": {}, "read": str(tmp_path / "x.ckpt"), "weights_only": True}
    assert strategy.load_checkpoint(checkpoint_path=tmp_path / "y.ckpt")["read"] == str(tmp_path / "y.ckpt")


def test_module_init_context_skips_initialisation_only_with_empty_init() -> None:
    strategy = SingleDeviceStrategy(precision=DoublePrecision())
    with mock.patch.object(torch.Tensor, "uniform_") as uniform, strategy.module_init_context(empty_init=True):
        model = torch.nn.Linear(2, 2)
    uniform.assert_not_called()
    assert model.weight.dtype == torch.float64
    with mock.patch.object(torch.Tensor, "uniform_") as uniform, strategy.module_init_context(empty_init=False):
        torch.nn.Linear(2, 2)
    uniform.assert_called()


@pytest.mark.oracle
def test_fabric_registry_has_lightning_fabrics_names() -> None:
    theirs = pytest.importorskip("lightning_fabric.strategies").STRATEGY_REGISTRY
    assert set(FABRIC_STRATEGY_REGISTRY) == set(theirs)
    for name in ("ddp", "ddp_spawn", "ddp_fork", "ddp_notebook", "ddp_find_unused_parameters_true", "dp", "fsdp"):
        assert FABRIC_STRATEGY_REGISTRY[name]["init_params"] == theirs[name]["init_params"], name
    assert "dp" not in StrategyRegistry
    assert "single_device" in StrategyRegistry


@pytest.mark.oracle
@pytest.mark.parametrize("name", ["single_device", "nonsense"])
def test_a_name_fabric_does_not_have_is_refused_as_lightning_fabric_does(name: str) -> None:
    theirs = pytest.importorskip("lightning_fabric")
    with pytest.raises(ValueError, match="You selected an invalid strategy name") as lightning_error:
        theirs.Fabric(accelerator="cpu", strategy=name)
    with pytest.raises(type(lightning_error.value), match=f"invalid strategy name: `strategy='{name}'`"):
        Fabric(accelerator="cpu", strategy=name)


@pytest.mark.oracle
def test_trainer_refuses_dp_as_lightning_does(tmp_path: Path) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    with pytest.raises(ValueError, match="invalid strategy name"):
        pl.Trainer(strategy="dp", accelerator="cpu", default_root_dir=tmp_path)
    with pytest.raises(ValueError, match="invalid strategy name"):
        fulgor.Trainer(strategy="dp", accelerator="cpu", default_root_dir=tmp_path)


def test_refused_fabric_strategies_raise_an_import_error() -> None:
    with pytest.raises(ImportError, match=r"DeepSpeedStrategy.*strategy='fsdp'"):
        Fabric(accelerator="cpu", strategy="deepspeed_stage_2")


@pytest.mark.oracle
def test_dp_on_the_cpu_falls_back_to_ddp_with_lightnings_warning() -> None:
    theirs = pytest.importorskip("lightning_fabric")
    messages = []
    for fabric_cls in (theirs.Fabric, Fabric):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fabric = fabric_cls(accelerator="cpu", strategy="dp", devices=2)
        messages.append([str(w.message) for w in caught if "dp" in str(w.message)])
        assert type(fabric.strategy).__name__ == "DDPStrategy"
        assert fabric.strategy.num_processes == 2
    assert messages[0] == messages[1] == ["'dp' is not supported on CPUs, hence setting `strategy='ddp'`."]


@pytest.mark.oracle
def test_run_overridden_under_the_cli_is_refused_as_lightning_does() -> None:
    theirs = pytest.importorskip("lightning_fabric")
    errors = []
    for fabric_cls in (theirs.Fabric, Fabric):

        class WithRun(fabric_cls):  # type: ignore[misc, valid-type]
            def run(self) -> None:
                pass

        with mock.patch.dict(os.environ, {"LT_CLI_USED": "1"}), pytest.raises(TypeError) as error:
            WithRun(accelerator="cpu")
        errors.append(str(error.value))
    assert errors[0] == errors[1]


def test_an_overridden_run_is_launched_through_the_strategy() -> None:
    seen: list[str] = []

    class Recording(SingleDeviceStrategy):
        def setup_environment(self, trainer: Any = None) -> None:
            seen.append("setup_environment")
            super().setup_environment(trainer)

    class WithRun(Fabric):
        def run(self, value: int) -> int:
            seen.append("run")
            return value * 2

    fabric = WithRun(accelerator="cpu", strategy=Recording())
    assert fabric.run(21) == 42
    assert seen == ["setup_environment", "run"]


class RecordingLauncher:
    def __init__(self) -> None:
        self.launched: list[tuple[Any, ...]] = []

    def launch(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        self.launched.append(args)
        return function(*args, **kwargs)


def test_launch_goes_through_the_strategys_launcher() -> None:
    launcher = RecordingLauncher()

    class Launched(SingleDeviceStrategy):
        @property
        def launcher(self) -> Any:
            return launcher

    fabric = Fabric(accelerator="cpu", strategy=Launched())
    assert fabric.launch(lambda fabric, x: x + 1, 4) == 5
    assert launcher.launched == [(fabric, 4)]
    fabric = Fabric(accelerator="cpu", strategy=Launched())
    fabric.launch()  # without a function: the processes are started, nothing runs
    assert len(launcher.launched) == 2


def test_data_parallel_and_single_device_need_no_launch_but_ddp_does() -> None:
    loader = torch.utils.data.DataLoader(torch.randn(4, 2), batch_size=2)
    Fabric(accelerator="cpu", strategy=DataParallelStrategy(), devices=2).setup_dataloaders(loader)
    Fabric(accelerator="cpu").setup_dataloaders(loader)
    fabric = Fabric(accelerator="cpu", strategy="ddp", devices=2)
    for call in (lambda: fabric.setup_dataloaders(loader), fabric.init_module, lambda: fabric.all_reduce(1)):
        with pytest.raises(RuntimeError, match=r"you must call `.launch\(\)`"):
            call()


class NeedsArg(torch.utils.data.DataLoader):  # type: ignore[type-arg]
    def __init__(self, new_arg: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(range(6), *args, **kwargs)


class KeepsArg(torch.utils.data.DataLoader):  # type: ignore[type-arg]
    def __init__(self, new_arg: int, dataset: Any, batch_size: int = 1, **kwargs: Any) -> None:
        self.new_arg = new_arg
        super().__init__(dataset, batch_size=batch_size, **kwargs)


class Clashes(torch.utils.data.DataLoader):  # type: ignore[type-arg]
    def __init__(self, new_arg: int, data: Any, **kwargs: Any) -> None:
        self.new_arg = new_arg
        self.data = data
        super().__init__(data, **kwargs)


@pytest.mark.oracle
def test_custom_dataloader_subclasses_are_rebuilt_or_refused_as_lightning_does() -> None:
    theirs = pytest.importorskip("lightning_fabric")
    outcomes = []
    for fabric_cls in (theirs.Fabric, Fabric):
        fabric = fabric_cls(accelerator="cpu", devices=2)
        fabric._launched = True
        with pytest.raises(Exception, match="Trying to inject custom `Sampler`") as error:
            fabric.setup_dataloaders(NeedsArg(2, batch_size=2))
        with pytest.raises(Exception, match="more than one `__init__` argument") as clash:
            fabric.setup_dataloaders(Clashes(2, list(range(6)), batch_size=2))
        rebuilt = fabric.setup_dataloaders(KeepsArg(5, list(range(6)), batch_size=2))
        inner = rebuilt._dataloader
        outcomes.append(
            (
                type(error.value).__name__,
                str(error.value),
                type(clash.value).__name__,
                str(clash.value),
                type(inner).__name__,
                inner.new_arg,
                type(inner.sampler).__name__,
                [batch.tolist() for batch in rebuilt],
            )
        )
    assert outcomes[0] == outcomes[1]
    assert outcomes[1][0] == MisconfigurationException.__name__


@pytest.mark.oracle
def test_a_sampler_without_len_is_refused_as_lightning_does() -> None:
    theirs = pytest.importorskip("lightning_fabric")
    messages = []
    for fabric_cls in (theirs.Fabric, Fabric):
        sampler = mock.Mock(spec=torch.utils.data.Sampler)
        fabric = fabric_cls(accelerator="cpu", devices=2)
        fabric._launched = True
        with pytest.raises(TypeError) as error:
            fabric.setup_dataloaders(torch.utils.data.DataLoader(range(4), sampler=sampler))
        messages.append(str(error.value))
    assert messages[0] == messages[1]


@pytest.mark.oracle
@pytest.mark.parametrize("precision", [16, "16", "bf16", "16-mixed", "bf16-mixed", 32, 64])
def test_precision_flags_warn_and_select_as_lightning_fabric(precision: Any) -> None:
    theirs = pytest.importorskip("lightning_fabric")
    outcomes = []
    for fabric_cls in (theirs.Fabric, Fabric):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fabric = fabric_cls(accelerator="cpu", precision=precision)
        words = [str(w.message) for w in caught if "precision" in str(w.message)]
        outcomes.append((type(fabric.strategy.precision).__name__, words))
    assert outcomes[0] == outcomes[1]


@pytest.mark.oracle
def test_on_after_setup_runs_for_setup_only_as_lightning_fabric() -> None:
    theirs = pytest.importorskip("lightning_fabric")
    counts = []
    for fabric_cls in (theirs.Fabric, Fabric):
        callback = mock.Mock()
        fabric = fabric_cls(accelerator="cpu", callbacks=[callback])
        fabric.setup_module(torch.nn.Linear(2, 2))
        after_setup_module = callback.on_after_setup.call_count
        model = torch.nn.Linear(2, 2)
        fabric.setup(model, torch.optim.SGD(model.parameters(), lr=0.1))
        counts.append((after_setup_module, callback.on_after_setup.call_count))
    assert counts[0] == counts[1] == (0, 1)
