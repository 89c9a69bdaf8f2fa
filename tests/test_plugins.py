"""The `plugins=` and `sync_batchnorm=` Trainer flags: which plugin objects are accepted, where they end up, and
Lightning's errors for wrong types, duplicates and conflicts (compared with pytorch-lightning 2.6.6 when installed)."""

from __future__ import annotations

import re
import signal
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

import fulgor
from fulgor.accelerators import CPUAccelerator
from fulgor.checkpoint_io import AsyncCheckpointIO, CheckpointIO, TorchCheckpointIO
from fulgor.layer_sync import LayerSync, TorchSyncBatchNorm
from fulgor.precision import DoublePrecision, HalfPrecision, MixedPrecision, Precision
from fulgor.strategies import DDPStrategy, SingleDeviceStrategy
from fulgor.strategies.environments import (
    KubeflowEnvironment,
    LightningEnvironment,
    MPIEnvironment,
    SLURMEnvironment,
)
from helpers.boring import BoringModel

QUIET = {"logger": False, "enable_progress_bar": False, "enable_model_summary": False}


def _lightning() -> ModuleType:
    return pytest.importorskip("pytorch_lightning")


def _outcome(build: Any) -> Any:
    """What building a Trainer gives: the Trainer, or (error type, message with object addresses and module paths
    removed, since they differ between two processes and two packages)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return build()
    except Exception as error:
        message = re.sub(r"<[^<>]*?(object at 0x[0-9a-f]+|class '[^']*')>", "<obj>", str(error))
        return (type(error).__name__, re.sub(r"\b[A-Za-z]+\('[^']*'\)", "<obj>", message))


class NoSync(LayerSync):
    def apply(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    def revert(self, model: torch.nn.Module) -> torch.nn.Module:
        return model


def _plugin_cases(lib: Any, env: Any, io: Any, ls: Any) -> dict[str, tuple[Any, Any]]:
    """Trainer flags per case, built from one library's classes: (plugins, extra flags)."""
    plugins = lib.plugins

    class Sync(ls.LayerSync):  # a LayerSync other than TorchSyncBatchNorm
        def apply(self, model: Any) -> Any:
            return model

        def revert(self, model: Any) -> Any:
            return model

    return {
        "object": ([object()], {}),
        "string": ("abc", {}),
        "class_not_instance": ([io.TorchCheckpointIO], {}),
        "two_io": ([io.TorchCheckpointIO(), io.TorchCheckpointIO()], {}),
        "two_precision_two_env": (
            [plugins.Precision(), plugins.DoublePrecision(), env.LightningEnvironment(), env.LightningEnvironment()],
            {},
        ),
        "precision_and_flag": ([plugins.Precision()], {"precision": "bf16-mixed"}),
        "precision_and_legacy_flag": ([plugins.DoublePrecision()], {"precision": 16}),
        "precision_and_32": ([plugins.Precision()], {"precision": "32-true"}),
        "layer_sync_and_flag": ([Sync()], {"sync_batchnorm": True}),
        "two_layer_syncs": ([Sync(), ls.TorchSyncBatchNorm()], {}),
        "torch_sync_and_flag": ([ls.TorchSyncBatchNorm()], {"sync_batchnorm": True}),
        "one_precision": (plugins.DoublePrecision(), {}),
        "tuple": ((plugins.HalfPrecision("bf16-true"), io.TorchCheckpointIO()), {}),
        "none": (None, {}),
        "empty": ([], {}),
    }


def _summary(trainer: Any) -> Any:
    if isinstance(trainer, tuple):
        return trainer
    strategy = trainer.strategy
    return (
        type(strategy).__name__,
        trainer.precision,
        type(trainer.precision_plugin).__name__,
        type(strategy.checkpoint_io).__name__,
        type(getattr(strategy, "_layer_sync", None)).__name__,
    )


PLUGIN_CASES = [
    "object", "string", "class_not_instance", "two_io", "two_precision_two_env", "precision_and_flag",
    "precision_and_legacy_flag", "precision_and_32", "layer_sync_and_flag", "two_layer_syncs", "torch_sync_and_flag",
    "one_precision", "tuple", "none", "empty",
]  # fmt: skip


@pytest.mark.oracle
@pytest.mark.parametrize("case", PLUGIN_CASES)
@pytest.mark.parametrize("devices", [1, 2])
def test_oracle_plugins_flag(case: str, devices: int) -> None:
    pl = _lightning()
    import lightning_fabric.plugins.environments as pl_env
    import lightning_fabric.plugins.io as pl_io
    import pytorch_lightning.plugins.layer_sync as pl_ls

    import fulgor.checkpoint_io as f_io
    import fulgor.layer_sync as f_ls
    import fulgor.precision as f_precision
    import fulgor.strategies.environments as f_env

    class FulgorLib:
        plugins = f_precision

    outcomes = []
    for lib, env, io, ls in ((pl, pl_env, pl_io, pl_ls), (FulgorLib, f_env, f_io, f_ls)):
        plugins, flags = _plugin_cases(lib, env, io, ls)[case]
        trainer_cls = pl.Trainer if lib is pl else fulgor.Trainer
        built = _outcome(lambda: trainer_cls(accelerator="cpu", devices=devices, plugins=plugins, **QUIET, **flags))  # noqa: B023
        outcomes.append(_summary(built))
    expected, actual = outcomes
    assert actual == expected


def test_plugins_reach_the_strategy() -> None:
    io, env, precision, sync = (
        AsyncCheckpointIO(),
        LightningEnvironment(),
        MixedPrecision("bf16-mixed", "cpu"),
        NoSync(),
    )
    trainer = fulgor.Trainer(accelerator="cpu", devices=2, plugins=[io, env, precision, sync], **QUIET)
    strategy = trainer.strategy
    assert isinstance(strategy, DDPStrategy)
    assert strategy.checkpoint_io is io
    assert isinstance(io.checkpoint_io, TorchCheckpointIO)  # the default filled in, as Lightning's strategy does
    assert strategy.cluster_environment is env
    assert strategy.layer_sync is sync
    assert trainer.precision_plugin is precision is strategy.precision_plugin
    assert trainer.precision == "bf16-mixed"
    assert isinstance(strategy.accelerator, CPUAccelerator)
    assert (trainer.world_size, env.world_size(), env.global_rank()) == (2, 2, 0)


def test_sync_batchnorm_flag() -> None:
    ddp = fulgor.Trainer(accelerator="cpu", devices=2, sync_batchnorm=True, **QUIET)
    assert isinstance(ddp.strategy.layer_sync, TorchSyncBatchNorm)
    assert fulgor.Trainer(accelerator="cpu", devices=2, **QUIET).strategy.layer_sync is None
    single = fulgor.Trainer(accelerator="cpu", devices=1, sync_batchnorm=True, **QUIET)
    assert isinstance(single.strategy, SingleDeviceStrategy)  # one process: nothing to synchronise (as Lightning)
    assert not hasattr(single.strategy, "layer_sync")


class _StrategyConflicts:
    """Strategy instances that bring a part which `plugins=` or the `accelerator` flag gives again."""

    @staticmethod
    def cases(
        strategies: Any, accelerators: Any, io: Any, env: Any, plugins: Any
    ) -> dict[str, tuple[Any, dict[str, Any]]]:
        return {
            "checkpoint_io": (
                strategies.DDPStrategy(checkpoint_io=io.TorchCheckpointIO()),
                {"plugins": [io.TorchCheckpointIO()]},
            ),
            "cluster_environment": (
                strategies.DDPStrategy(cluster_environment=env.LightningEnvironment()),
                {"plugins": [env.LightningEnvironment()]},
            ),
            "precision": (
                strategies.DDPStrategy(precision_plugin=plugins.Precision()),
                {"plugins": [plugins.Precision()]},
            ),
            "accelerator": (strategies.DDPStrategy(accelerator=accelerators.CPUAccelerator()), {"accelerator": "cpu"}),
            "accelerator_from_strategy": (strategies.DDPStrategy(accelerator=accelerators.CPUAccelerator()), {}),
        }


@pytest.mark.oracle
@pytest.mark.parametrize("case", ["checkpoint_io", "cluster_environment", "precision", "accelerator",
                                  "accelerator_from_strategy"])  # fmt: skip
def test_oracle_strategy_instance_conflicts(case: str) -> None:
    pl = _lightning()
    import lightning_fabric.plugins.environments as pl_env
    import lightning_fabric.plugins.io as pl_io

    import fulgor.accelerators as f_acc
    import fulgor.checkpoint_io as f_io
    import fulgor.precision as f_precision
    import fulgor.strategies as f_strategies
    import fulgor.strategies.environments as f_env

    theirs = _StrategyConflicts.cases(pl.strategies, pl.accelerators, pl_io, pl_env, pl.plugins)[case]
    ours = _StrategyConflicts.cases(f_strategies, f_acc, f_io, f_env, f_precision)[case]
    expected = _outcome(lambda: pl.Trainer(strategy=theirs[0], devices=2, **QUIET, **theirs[1]))
    actual = _outcome(lambda: fulgor.Trainer(strategy=ours[0], devices=2, **QUIET, **ours[1]))
    if not isinstance(expected, tuple):
        expected = (type(expected.accelerator).__name__, expected.world_size)
        actual = (type(actual.strategy.accelerator).__name__, actual.world_size)
    assert actual == expected


# ------------------------------------------------------------------------------------------------ plugin objects


def test_precision_plugin_trains_in_its_dtype(tmp_path: Path) -> None:
    model = BoringModel()
    trainer = fulgor.Trainer(
        default_root_dir=tmp_path, max_steps=2, plugins=[DoublePrecision()], enable_checkpointing=False, **QUIET
    )
    trainer.fit(model)
    assert trainer.global_step == 2
    assert model.layer.weight.dtype == torch.float64
    half = fulgor.Trainer(plugins=HalfPrecision("bf16-true"), **QUIET)
    assert (half.precision, half.precision_plugin.converts_input) == ("bf16-true", True)
    assert Precision().converts_input is False


@pytest.mark.oracle
def test_oracle_environment_constructors() -> None:
    pl_env = pytest.importorskip("lightning_fabric.plugins.environments")
    for kwargs in ({}, {"auto_requeue": False}, {"requeue_signal": signal.SIGHUP}):
        ours, theirs = SLURMEnvironment(**kwargs), pl_env.SLURMEnvironment(**kwargs)
        assert (ours.auto_requeue, ours.requeue_signal) == (theirs.auto_requeue, theirs.requeue_signal)
    with pytest.raises(NotImplementedError) as ours_error:
        KubeflowEnvironment.detect()
    with pytest.raises(NotImplementedError) as theirs_error:
        pl_env.KubeflowEnvironment.detect()
    assert str(ours_error.value) == str(theirs_error.value)
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        with pytest.raises(ModuleNotFoundError, match="`MPIEnvironment` needs the `mpi4py` package"):
            MPIEnvironment()
        with pytest.raises(ModuleNotFoundError):
            pl_env.MPIEnvironment()
        assert MPIEnvironment.detect() is pl_env.MPIEnvironment.detect() is False


def test_checkpoint_io_is_abstract() -> None:
    assert CheckpointIO.__abstractmethods__ == {"save_checkpoint", "load_checkpoint", "remove_checkpoint"}
    assert LayerSync.__abstractmethods__ == {"apply", "revert"}


# ------------------------------------------------------------------------------------------------------ layer sync


def _bn_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Sequential(torch.nn.BatchNorm1d(4, momentum=None))
    )


def test_torch_sync_batchnorm_apply_and_revert_on_cpu() -> None:
    from fulgor.layer_sync import CPUSyncBatchNorm

    model = _bn_model()
    weight = model[1].weight
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(1)) * 2 + 1
    expected = model(x)  # plain BatchNorm, training mode
    reference_stats = model[1].running_mean.clone()
    model = _bn_model()
    synced = TorchSyncBatchNorm().apply(model)
    assert synced is model
    assert [type(m).__name__ for m in model.modules() if "Norm" in type(m).__name__] == ["CPUSyncBatchNorm"] * 2
    assert model[1].original_type is torch.nn.BatchNorm1d
    assert model[1].weight is not weight  # a fresh model: parameters are carried over, not copied
    # Without a process group it is a plain BatchNorm: same output, same running statistics.
    torch.testing.assert_close(model(x), expected)
    torch.testing.assert_close(model[1].running_mean, reference_stats)
    carried = model[1].weight
    reverted = TorchSyncBatchNorm().revert(model)
    assert [type(m) for m in reverted.modules() if "Norm" in type(m).__name__] == [torch.nn.BatchNorm1d] * 2
    assert reverted[1].weight is carried
    assert reverted[2][0].momentum is None
    torch.testing.assert_close(reverted[1].running_mean, reference_stats)
    with pytest.raises(ValueError, match=r"expected at least 2D input \(got 1D input\)"):
        CPUSyncBatchNorm(4)(torch.ones(4))


@pytest.mark.oracle
def test_oracle_revert_of_torch_sync_batchnorm() -> None:
    """Layers converted by torch (or by Lightning) revert to a BatchNorm with the same state, as in Lightning."""
    pl_ls = pytest.importorskip("pytorch_lightning.plugins.layer_sync")
    theirs = pl_ls.TorchSyncBatchNorm().revert(torch.nn.SyncBatchNorm.convert_sync_batchnorm(_bn_model()))
    ours = TorchSyncBatchNorm().revert(torch.nn.SyncBatchNorm.convert_sync_batchnorm(_bn_model()))
    assert [type(m).__name__ for m in ours.modules()] == [type(m).__name__ for m in theirs.modules()]
    for key, value in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key
