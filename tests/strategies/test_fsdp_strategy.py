"""FSDPStrategy construction and the `fsdp`/`fsdp_cpu_offload` names (no processes started)."""

from __future__ import annotations

import pytest
import torch

from fulgor.errors import MisconfigurationException
from fulgor.strategies.ddp import DDPStrategy
from fulgor.strategies.fsdp import FSDPStrategy
from fulgor.strategies.registry import select_strategy


@pytest.mark.parametrize(("name", "offload"), [("fsdp", False), ("fsdp_cpu_offload", True), ("FSDP", False)])
def test_names_build_fsdp_on_cpu_and_cuda(name: str, offload: bool) -> None:
    for accelerator in ("cpu", "cuda"):
        strategy = select_strategy(name, [torch.device(accelerator, 0), torch.device(accelerator, 1)], 1)
        assert type(strategy) is FSDPStrategy
        assert isinstance(strategy, DDPStrategy)  # same launching and collectives
        assert (strategy.strategy_name, strategy.cpu_offload) == (name.lower(), offload)
        assert (strategy.sharding_strategy, strategy.state_dict_type) == ("FULL_SHARD", "full")


def test_mps_keeps_lightnings_error() -> None:
    with pytest.raises(ValueError) as info:
        select_strategy("fsdp", [torch.device("mps", 0)], 1)
    assert str(info.value) == (
        "The strategy `fsdp` requires a GPU accelerator, but received `accelerator='mps'`. Please set"
        " `accelerator='cuda'`, `accelerator='gpu'`, or pass a `CUDAAccelerator()` instance to use FSDP."
    )


def test_sharding_strategy_accepts_names_and_torchs_enum() -> None:
    from torch.distributed.fsdp import ShardingStrategy

    assert FSDPStrategy(sharding_strategy="shard_grad_op").sharding_strategy == "SHARD_GRAD_OP"
    assert FSDPStrategy(sharding_strategy=ShardingStrategy.NO_SHARD).sharding_strategy == "NO_SHARD"  # type: ignore[arg-type]
    with pytest.raises(MisconfigurationException) as info:
        FSDPStrategy(sharding_strategy="ZERO3")
    assert str(info.value) == (
        "`FSDPStrategy(sharding_strategy='ZERO3')` is invalid. Choose one of FULL_SHARD, SHARD_GRAD_OP, NO_SHARD,"
        " HYBRID_SHARD."
    )


def test_unknown_state_dict_type_is_refused_with_the_fix() -> None:
    assert FSDPStrategy(state_dict_type="sharded").state_dict_type == "sharded"
    assert FSDPStrategy().state_dict_type == "full"  # the Trainer's default (Fabric's `save` shards by default)
    with pytest.raises(ValueError) as info:
        FSDPStrategy(state_dict_type="local")
    assert str(info.value) == (
        "`FSDPStrategy(state_dict_type='local')` is invalid: use 'full' (one file with the gathered state) or"
        " 'sharded' (a folder with one shard file per rank)."
    )


def test_auto_wrap_policy_selects_units_innermost_first() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU()))
    by_class = FSDPStrategy(auto_wrap_policy={torch.nn.Linear})._units(model)
    assert by_class == [model[1][0], model[0]]
    by_callable = FSDPStrategy(auto_wrap_policy=lambda m: isinstance(m, torch.nn.Sequential))._units(model)
    assert by_callable == [model[1]]  # never the root itself
    assert FSDPStrategy()._units(model) == []
