"""StrategyRegistry: the built-in names with their classes and arguments (compared with Lightning's registry), a
user's own registered strategy chosen by `Trainer(strategy=name)`, and the registry's errors."""

from __future__ import annotations

import pytest
import torch

from fulgor.strategies import DDPStrategy, SingleDeviceStrategy
from fulgor.strategies.fsdp import FSDPStrategy
from fulgor.strategies.registry import FORK_STRATEGY_NAMES, select_strategy
from fulgor.strategies.strategy_registry import StrategyRegistry

CPU = [torch.device("cpu")]


def test_builtin_names_build_their_strategy() -> None:
    spawn = StrategyRegistry.get("ddp_spawn_find_unused_parameters_true")
    assert isinstance(spawn, DDPStrategy)
    assert spawn.strategy_name == "ddp_spawn_find_unused_parameters_true"
    assert (spawn._start_method, spawn._ddp_kwargs) == ("spawn", {"find_unused_parameters": True})
    offload = StrategyRegistry.get("fsdp_cpu_offload")
    assert isinstance(offload, FSDPStrategy)
    assert offload.cpu_offload
    assert isinstance(StrategyRegistry.get("single_device"), SingleDeviceStrategy)
    assert FORK_STRATEGY_NAMES == (
        "ddp_fork",
        "ddp_notebook",
        "ddp_fork_find_unused_parameters_false",
        "ddp_fork_find_unused_parameters_true",
        "ddp_notebook_find_unused_parameters_false",
        "ddp_notebook_find_unused_parameters_true",
    )


def test_registered_strategy_is_chosen_by_name_and_removed() -> None:
    StrategyRegistry.register("my_ddp", DDPStrategy, description="mine", find_unused_parameters=True)
    try:
        assert StrategyRegistry["my_ddp"]["description"] == "mine"
        chosen = select_strategy("my_ddp", CPU * 2, 1)
        assert isinstance(chosen, DDPStrategy)
        assert chosen._ddp_kwargs == {"find_unused_parameters": True}
        assert chosen.strategy_name == "my_ddp"
        with pytest.raises(ValueError, match=r"'my_ddp' is already present in the registry. HINT: Use `override=True`"):
            StrategyRegistry.register("my_ddp", DDPStrategy)
        StrategyRegistry.register("my_ddp", DDPStrategy, override=True, start_method="spawn")
        assert select_strategy("my_ddp", CPU * 2, 1)._start_method == "spawn"
    finally:
        StrategyRegistry.remove("my_ddp")
    assert "my_ddp" not in StrategyRegistry.available_strategies()
    with pytest.raises(ValueError, match="invalid strategy name: `strategy='my_ddp'`"):
        select_strategy("my_ddp", CPU * 2, 1)


def test_decorator_form_and_unknown_name() -> None:
    @StrategyRegistry.register("one_device_again", description="decorated", device="cpu")
    class OneDevice(SingleDeviceStrategy):
        pass

    try:
        assert isinstance(StrategyRegistry.get("one_device_again"), OneDevice)
    finally:
        StrategyRegistry.remove("one_device_again")
    with pytest.raises(KeyError, match=r"'nope' not found in registry\. Available names: ddp, ddp_find_unused"):
        StrategyRegistry.get("nope")
    assert StrategyRegistry.get("nope", default="fallback") == "fallback"


@pytest.mark.oracle
def test_same_names_and_arguments_as_lightning() -> None:
    pl = pytest.importorskip("pytorch_lightning")
    theirs = pl.strategies.StrategyRegistry
    refused = ("deepspeed", "xla", "single_xla", "single_tpu")
    expected = [name for name in theirs.available_strategies() if not name.startswith(refused)]
    assert StrategyRegistry.available_strategies() == expected
    for name in expected:
        assert StrategyRegistry[name]["init_params"] == theirs[name]["init_params"], name
        assert StrategyRegistry[name]["description"] == theirs[name]["description"], name
