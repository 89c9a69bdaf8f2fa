"""The classes fulgor writes for Lightning's paths (samplers, layer summaries, collectives, Fabric's loggers, the
accelerator registry, the hparams mixin, ...) behave as Lightning's: differential where the oracle is cheap to run."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import RandomSampler, SequentialSampler

import fulgor
import fulgor.strategies
from fulgor import (
    accelerator_registry,
    cli_classes,
    collectives,
    compiled_modules,
    double_precision_module,
    fabric_loggers,
    lightning_attrs,
    lightning_logo,
    module_records,
    overridden,
    samplers,
    shared_filesystem,
    summary,
    torchvision_models,
    type_aliases,
)
from fulgor.hparams_mixin import HyperparametersMixin

ROOT = Path(__file__).resolve().parents[2]


def oracle(name: str) -> Any:
    """An oracle module, or a skip (these tests are marked `oracle` where they use it)."""
    pytest.importorskip("pytorch_lightning")
    return __import__(name, fromlist=["_"])


# ------------------------------------------------------------------------------------------------------------ samplers
@pytest.mark.oracle
@pytest.mark.parametrize("kwargs", [{}, {"shuffle": False}, {"seed": 3, "drop_last": True}])
@pytest.mark.parametrize("rank", [0, 2])
def test_distributed_sampler_wrapper(kwargs: dict[str, Any], rank: int) -> None:
    theirs_cls = oracle("lightning_fabric.utilities.distributed").DistributedSamplerWrapper
    for base in (SequentialSampler(range(11)), RandomSampler(range(11), generator=torch.Generator().manual_seed(1))):
        ours = samplers.DistributedSamplerWrapper(base, num_replicas=3, rank=rank, **kwargs)
        theirs = theirs_cls(base, num_replicas=3, rank=rank, **kwargs)
        for epoch in (0, 1):
            ours.set_epoch(epoch)
            theirs.set_epoch(epoch)
            base_state = base.generator.get_state() if isinstance(base, RandomSampler) else None
            got = list(ours)
            if base_state is not None:
                base.generator.set_state(base_state)  # the same draw of the wrapped random sampler for both
            assert got == list(theirs)
            assert len(ours) == len(theirs)


@pytest.mark.oracle
@pytest.mark.parametrize(("size", "replicas", "shuffle"), [(10, 3, False), (10, 3, True), (7, 2, False), (2, 2, True)])
def test_unrepeated_samplers(size: int, replicas: int, shuffle: bool) -> None:
    distributed = oracle("pytorch_lightning.overrides.distributed")
    for rank in range(replicas):
        ours = samplers.UnrepeatedDistributedSampler(list(range(size)), replicas, rank, shuffle=shuffle)
        theirs = distributed.UnrepeatedDistributedSampler(list(range(size)), replicas, rank, shuffle=shuffle)
        assert (list(ours), len(ours)) == (list(theirs), len(theirs))
        wrapped = samplers.UnrepeatedDistributedSamplerWrapper(SequentialSampler(range(size)), replicas, rank, False)
        expected = distributed.UnrepeatedDistributedSamplerWrapper(
            SequentialSampler(range(size)), replicas, rank, False
        )
        assert list(wrapped) == list(expected)


def test_unrepeated_sampler_needs_a_length() -> None:
    with pytest.raises(TypeError, match="has no len"):  # torch's DistributedSampler asks first
        samplers.UnrepeatedDistributedSampler(iter([1]), 1, 0)  # type: ignore[arg-type]


# -------------------------------------------------------------------------------------------------------- layer summary
@pytest.mark.oracle
def test_layer_summary_matches_lightnings() -> None:
    theirs_module = oracle("pytorch_lightning.utilities.model_summary.model_summary")
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 8, 3)
    lazy = torch.nn.LazyLinear(4)
    rows = []
    for module in (summary, theirs_module):
        summaries = [module.LayerSummary(conv), module.LayerSummary(lazy)]
        before = [(s.in_size, s.out_size) for s in summaries]
        conv(torch.rand(1, 3, 5, 5))
        conv(torch.rand(2, 3, 6, 6))  # only the first call is recorded
        rows.append((before, [(s.in_size, s.out_size, s.layer_type, s.num_parameters, s.training) for s in summaries]))
        for layer in summaries:
            layer.detach_hook()
    assert rows[0] == rows[1]
    assert rows[0][1][0][:2] == ([1, 3, 5, 5], [1, 8, 3, 3])
    for value in (torch.zeros(2, 3), [torch.zeros(1), (torch.zeros(2, 2), "x")], 5):
        assert summary.parse_batch_shape(value) == theirs_module.parse_batch_shape(value)
    for size in (0.0, 1234.56789, 0.0004):
        assert summary.get_formatted_model_size(size) == theirs_module.get_formatted_model_size(size)


# ---------------------------------------------------------------------------------------------- attributes, overrides
class _Module(fulgor.LightningModule):
    def __init__(self, lr: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.batch_size = 4

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        return None


def test_lightning_attrs_look_in_the_model_then_its_hparams() -> None:
    model = _Module()
    assert lightning_attrs.lightning_hasattr(model, "lr")
    assert lightning_attrs.lightning_hasattr(model, "batch_size")
    assert not lightning_attrs.lightning_hasattr(model, "nope")
    assert lightning_attrs.lightning_getattr(model, "lr") == 0.1
    lightning_attrs.lightning_setattr(model, "lr", 0.5)
    assert model.hparams.lr == 0.5
    lightning_attrs.lightning_setattr(model, "batch_size", 8)
    assert model.batch_size == 8
    message = "nope is neither stored in the model namespace nor the `hparams` namespace/dict, nor the datamodule."
    with pytest.raises(AttributeError, match=message.replace("`", ".")):
        lightning_attrs.lightning_getattr(model, "nope")


def test_is_overridden_picks_the_parent_from_the_instance() -> None:
    class Cb(fulgor.Callback):
        def on_train_start(self, trainer: Any, pl_module: Any) -> None: ...

    assert overridden.is_overridden("training_step", _Module())
    assert not overridden.is_overridden("validation_step", _Module())
    assert overridden.is_overridden("on_train_start", Cb())
    assert not overridden.is_overridden("on_train_end", Cb())
    assert not overridden.is_overridden("training_step", None)
    with pytest.raises(ValueError, match="Expected a parent"):
        overridden.is_overridden("x", object())
    with pytest.raises(ValueError, match="The parent should define the method"):
        overridden.is_overridden("batch_size", _Module(), fulgor.LightningModule)


def test_hyperparameters_mixin() -> None:
    class Config(HyperparametersMixin):
        def __init__(self, width: int, depth: int = 2) -> None:
            super().__init__()
            self.save_hyperparameters()

    config = Config(8)
    assert dict(config.hparams) == {"width": 8, "depth": 2}
    config.hparams.width = 16
    assert config.hparams_initial.width == 8
    assert isinstance(_Module(), HyperparametersMixin)
    assert isinstance(fulgor.LightningDataModule(), HyperparametersMixin)
    assert not isinstance(object(), HyperparametersMixin)


# ------------------------------------------------------------------------------------------------------ compile, CLI
def test_from_compiled_and_back() -> None:
    model = _Module()
    original_forward = model.forward
    compiled = torch.compile(model)
    restored = compiled_modules.from_compiled(compiled)
    assert restored is model
    assert model.forward is not original_forward
    assert compiled_modules.to_uncompiled(model) is model
    assert model.forward == original_forward
    with pytest.raises(ValueError, match="required to be a compiled LightningModule"):
        compiled_modules.to_uncompiled(model)
    with pytest.raises(ValueError, match="required to be a `OptimizedModule`"):
        compiled_modules.from_compiled(model)


def test_cli_instantiation_helpers() -> None:
    params = [torch.nn.Parameter(torch.zeros(1))]
    optimizer = cli_classes.instantiate_class(params, {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.3}})
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.defaults["lr"] == 0.3
    scheduler = cli_classes.ReduceLROnPlateau(optimizer, monitor="val_loss", patience=2)
    assert scheduler.monitor == "val_loss"
    assert scheduler.patience == 2
    pytest.importorskip("jsonargparse")
    built = cli_classes.instantiate_module(torch.nn.Linear, {"in_features": 2, "out_features": 3})
    assert isinstance(built, torch.nn.Linear)
    assert built.out_features == 3


# ---------------------------------------------------------------------------------------------------------- collectives
@pytest.mark.oracle
def test_single_device_collective_matches_lightnings() -> None:
    theirs = oracle("lightning_fabric.plugins.collectives").SingleDeviceCollective()
    ours = collectives.SingleDeviceCollective()
    t, ts = torch.tensor([1.0, 2.0]), [torch.tensor([3.0]), torch.tensor([4.0])]
    for collective in (ours, theirs):
        assert (collective.rank, collective.world_size) == (0, 1)
        assert collective.broadcast(t, 0) is t
        assert collective.all_reduce(t, "sum") is t
        assert collective.all_gather(ts, t) == [t]
        assert collective.scatter(t, ts) is ts[0]
        assert collective.all_to_all(ts, ts) is ts
        collective.create_group()
        with pytest.raises(RuntimeError, match="already owns a group"):
            collective.create_group()
        collective.teardown()
        with pytest.raises(RuntimeError, match="does not own a group to destroy"):
            collective.teardown()


TORCH_COLLECTIVE = """
import os, sys, torch
sys.path.insert(0, {src!r})
from fulgor.collectives import TorchCollective as Ours
from lightning_fabric.plugins.collectives import TorchCollective as Theirs
def run(cls):
    c = cls().setup(main_address="127.0.0.1", main_port="{port}", backend="gloo", rank=0, world_size=1)
    t = torch.tensor([1.0, 2.0])
    out = [c.rank, c.world_size, c.all_reduce(t.clone(), "sum").tolist(), c.broadcast(t.clone(), 0).tolist(),
           [x.tolist() for x in c.all_gather([torch.zeros(2)], t)], c.all_gather_object([None], {{"a": 1}}),
           c.reduce(t.clone(), 0, op="max").tolist(), "MASTER_ADDR" in os.environ, cls._convert_to_native_op("avg")]
    c.barrier()
    c.teardown()
    out.append(cls.is_initialized())
    return repr(out)
ours = run(Ours); theirs = run(Theirs)
print(ours); print(theirs)
"""


@pytest.mark.oracle
def test_torch_collective_matches_lightnings_on_a_one_process_group(tmp_path: Path) -> None:
    pytest.importorskip("lightning_fabric")
    code = TORCH_COLLECTIVE.format(src=str(ROOT / "src"), port=29000 + os.getpid() % 1000)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours, theirs = proc.stdout.splitlines()
    assert ours == theirs
    assert ours.startswith("[0, 1, [1.0, 2.0], [1.0, 2.0], [[1.0, 2.0]], [{'a': 1}], [1.0, 2.0], False,")
    assert ours.endswith(", False]")


# ------------------------------------------------------------------------------------------------------ fabric loggers
@pytest.mark.oracle
def test_fabric_csv_logger_writes_lightnings_file(tmp_path: Path) -> None:
    theirs_cls = oracle("lightning_fabric.loggers").CSVLogger
    files = []
    for cls, root in ((fabric_loggers.CSVLogger, tmp_path / "ours"), (theirs_cls, tmp_path / "theirs")):
        logger = cls(root, name="exp", flush_logs_every_n_steps=1)
        logger.log_metrics({"loss": 0.5, "acc": torch.tensor(0.25)}, step=0)
        logger.log_metrics({"loss": 0.25}, step=1)
        logger.finalize("success")
        with pytest.raises(NotImplementedError, match="does not yet support logging hyperparameters"):
            logger.log_hyperparams({"lr": 1})
        assert (logger.name, logger.version) == ("exp", 0)
        files.append((Path(logger.log_dir).relative_to(root), (Path(logger.log_dir) / "metrics.csv").read_text()))
    assert files[0] == files[1]


# ------------------------------------------------------------------------------------------ registry, types, misc.
@pytest.mark.oracle
def test_accelerator_registry_behaves_like_lightnings() -> None:
    theirs = oracle("lightning_fabric.accelerators.registry")._AcceleratorRegistry()
    ours = accelerator_registry.AcceleratorRegistry()
    for registry in (ours, theirs):
        registry.register("custom", dict, description="a dict", a=1)

        @registry.register("decorated")
        class Decorated:
            pass

        assert registry.get("custom") == {"a": 1}
        assert isinstance(registry.get("decorated"), Decorated)
        assert registry.get("nope", "fallback") == "fallback"
        with pytest.raises(KeyError, match="'nope' not found in registry"):
            registry.get("nope")
        with pytest.raises(Exception, match="'custom' is already present in the registry"):
            registry.register("custom", dict)
        registry.remove("custom")
        assert registry.available_accelerators() == {"decorated"}
    assert {"cpu", "cuda", "mps"} <= accelerator_registry.ACCELERATOR_REGISTRY.available_accelerators()
    assert type(accelerator_registry.ACCELERATOR_REGISTRY.get("cpu")).__name__ == "CPUAccelerator"


@pytest.mark.oracle
def test_structural_types_classify_like_lightnings() -> None:
    theirs = oracle("lightning_fabric.utilities.types")
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    for value in (optimizer, object(), torch.nn.Linear(1, 1)):
        for name in ("Steppable", "Optimizable"):
            assert isinstance(value, getattr(type_aliases, name)) == isinstance(value, getattr(theirs, name))
    assert type_aliases.STEP_OUTPUT is not None


class _TwoRanks:
    """Both ranks of a 2-process run simulated in one process (broadcast gives rank 0's value)."""

    world_size = 2

    def __init__(self, zero_path: Path | None = None, is_global_zero: bool = True) -> None:
        self.zero_path, self.is_global_zero = zero_path, is_global_zero

    def broadcast(self, obj: Any) -> Any:
        return self.zero_path or obj

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        return decision

    def barrier(self) -> None:
        pass


def test_is_shared_filesystem(tmp_path: Path) -> None:
    assert shared_filesystem.is_shared_filesystem(fulgor.strategies.SingleDeviceStrategy(), tmp_path)
    assert shared_filesystem.is_shared_filesystem(_TwoRanks(), "s3://bucket/x")
    assert shared_filesystem.is_shared_filesystem(_TwoRanks(), tmp_path)
    assert not list(tmp_path.iterdir())  # the marker file is removed
    assert not shared_filesystem.is_shared_filesystem(_TwoRanks(zero_path=tmp_path / "elsewhere"), tmp_path)
    assert not shared_filesystem.is_shared_filesystem(_TwoRanks(is_global_zero=False), tmp_path, timeout=0)
    with pytest.raises(FileNotFoundError, match="The path does not exist"):
        shared_filesystem.is_shared_filesystem(_TwoRanks(), tmp_path / "missing")


def test_double_precision_module_casts_floating_inputs() -> None:
    class Echo(fulgor.LightningModule):
        def forward(self, x: Any, y: Any = None) -> Any:
            return x.dtype, y.dtype if y is not None else None

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            return [t.dtype for t in batch], batch_idx

    with pytest.warns(DeprecationWarning, match="is deprecated and no longer needed"):
        wrapped = double_precision_module.LightningDoublePrecisionModule(Echo())
    assert wrapped(torch.zeros(1), y=torch.zeros(1, dtype=torch.int64)) == (torch.float64, torch.int64)
    assert wrapped.training_step([torch.zeros(1), torch.ones(1, dtype=torch.long)], 3) == (
        [torch.float64, torch.int64],
        3,
    )


def test_register_record_function_labels_each_layer() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())
    with torch.profiler.profile() as profile, module_records.RegisterRecordFunction(model):
        model(torch.zeros(1, 2))
    names = {event.name for event in profile.events()}
    assert "[pl][module]torch.nn.modules.linear.Linear: 0" in names
    assert "[pl][module]torch.nn.modules.activation.ReLU: 1" in names
    assert not model[0]._forward_hooks  # the hooks are gone afterwards


def test_logo_and_torchvision_helper(capsys: pytest.CaptureFixture[str]) -> None:
    lightning_logo.cli_lightning_logo()
    out = capsys.readouterr().out
    assert out == "\033[0;35m" + lightning_logo.LIGHTNING_LOGO + "\033[0m\n"
    try:
        import torchvision  # noqa: F401
    except ImportError:
        with pytest.raises(ModuleNotFoundError, match="needs torchvision"):
            torchvision_models.get_torchvision_model("resnet18")
    else:
        assert type(torchvision_models.get_torchvision_model("resnet18", weights=None)).__name__ == "ResNet"


def test_warning_free_imports_of_all_new_modules() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in ("available_packages", "unavailable", "type_aliases", "loop_names", "enums"):
            __import__(f"fulgor.{name}")
