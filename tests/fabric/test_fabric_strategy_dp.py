"""Fabric's `DataParallelStrategy`: `torch.nn.DataParallel` in one process (a pass-through on the CPU), compared with
Lightning Fabric 2.6.6's: the same training numbers, checkpoint keys and reductions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch.nn import DataParallel

from fulgor.fabric import Fabric
from fulgor.strategies.dp import DataParallelStrategy


def train(fabric_cls: type, strategy: Any, root: Path, devices: int = 2) -> dict[str, Any]:
    """Two SGD steps on a seeded model under `strategy`, then a save and a reload."""
    fabric = fabric_cls(accelerator="cpu", devices=devices, strategy=strategy)  # one process: no launch needed
    torch.manual_seed(3)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2)
    model, optimizer = fabric.setup(model, optimizer)
    data = fabric.setup_dataloaders(torch.utils.data.DataLoader(torch.randn(8, 4), batch_size=4))
    for batch in data:
        fabric.backward(model(batch).pow(2).mean())
        optimizer.step()
        optimizer.zero_grad()
    fabric.save(root / "dp.ckpt", {"model": model, "optimizer": optimizer})
    saved = torch.load(root / "dp.ckpt", weights_only=True)
    reloaded = torch.nn.Linear(4, 2)
    fabric.load(root / "dp.ckpt", {"model": reloaded}, strict=False)
    return {
        "forward_module": type(model._forward_module).__name__,
        "weight": model.weight.detach().clone(),
        "saved_keys": sorted(saved["model"]),
        "reloaded": reloaded.weight.detach().clone(),
        "sampler": type(data.sampler).__name__,
        "world_size": fabric.world_size,
    }


def test_data_parallel_trains_like_one_device(tmp_path: Path) -> None:
    ours = train(Fabric, DataParallelStrategy(), tmp_path)
    assert ours["forward_module"] == "DataParallel"
    assert ours["saved_keys"] == ["bias", "weight"]  # no `module.` prefix from the wrapper
    assert torch.equal(ours["reloaded"], ours["weight"])
    assert ours["sampler"] == "SequentialSampler"  # one process reads everything: no distributed sampler
    assert ours["world_size"] == 1
    (tmp_path / "single").mkdir()
    single = train(Fabric, "auto", tmp_path / "single", devices=1)  # one device: the same numbers
    assert torch.equal(single["weight"], ours["weight"])


@pytest.mark.oracle
def test_data_parallel_matches_lightning_fabric(tmp_path: Path) -> None:
    lightning_fabric = pytest.importorskip("lightning_fabric")
    (tmp_path / "ours").mkdir()
    (tmp_path / "theirs").mkdir()
    ours = train(Fabric, DataParallelStrategy(), tmp_path / "ours")
    theirs = train(lightning_fabric.Fabric, lightning_fabric.strategies.DataParallelStrategy(), tmp_path / "theirs")
    for key in ("forward_module", "saved_keys", "sampler", "world_size"):
        assert ours[key] == theirs[key], key
    assert torch.equal(ours["weight"], theirs["weight"])
    assert torch.equal(ours["reloaded"], theirs["reloaded"])


@pytest.mark.oracle
def test_data_parallel_reductions_match_lightning_fabric() -> None:
    theirs = pytest.importorskip("lightning_fabric.strategies").DataParallelStrategy(
        parallel_devices=[torch.device("cpu")] * 2
    )
    ours = DataParallelStrategy(parallel_devices=[torch.device("cpu")] * 2)
    for value in (torch.tensor([1.0, 4.0]), torch.tensor([1, 4]), {"a": torch.tensor([2.0, 3.0]), "n": 7}):
        mine, lightning = ours.all_reduce(value), theirs.all_reduce(value)
        if isinstance(mine, dict):
            assert mine["n"] == lightning["n"]
            mine, lightning = mine["a"], lightning["a"]
        assert torch.equal(mine, lightning)
        assert mine.dtype == lightning.dtype
    for name in ("reduce_boolean_decision", "broadcast"):
        assert getattr(ours, name)(True) == getattr(theirs, name)(True)
    assert (ours.world_size, ours.global_rank, ours.local_rank) == (theirs.world_size, 0, 0)
    assert ours.distributed_sampler_kwargs is theirs.distributed_sampler_kwargs is None


def test_data_parallel_reduces_with_the_operation_asked_for() -> None:
    # Lightning Fabric's DataParallelStrategy averages whatever `reduce_op` says; fulgor's does what was asked.
    strategy = DataParallelStrategy(parallel_devices=[torch.device("cpu")] * 2)
    value = torch.tensor([1.0, 4.0])
    assert strategy.all_reduce(value, reduce_op="sum").item() == 5.0
    assert strategy.all_reduce(value, reduce_op="max").item() == 4.0
    assert strategy.all_reduce(value, reduce_op="min").item() == 1.0
    with pytest.raises(ValueError, match="reduce_op='median'"):
        strategy.all_reduce(value, reduce_op="median")


def test_data_parallel_devices_and_wrapping() -> None:
    strategy = DataParallelStrategy()
    strategy.parallel_devices = [torch.device("cuda", 2), torch.device("cuda", 0)]
    assert strategy.root_device == torch.device("cuda", 2)
    cpu = DataParallelStrategy(parallel_devices=[torch.device("cpu")] * 2)
    module = torch.nn.Linear(2, 2)
    wrapped = cpu.setup_module(module)
    assert isinstance(wrapped, DataParallel)
    assert wrapped.module is module
    assert cpu.get_module_state_dict(wrapped).keys() == module.state_dict().keys()
    cpu.load_module_state_dict(wrapped, {k: torch.zeros_like(v) for k, v in module.state_dict().items()})
    assert module.weight.abs().sum().item() == 0.0
    assert torch.equal(cpu.batch_to_device(torch.ones(2)), torch.ones(2))
