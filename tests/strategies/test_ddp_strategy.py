"""DDPStrategy pieces in-process: collectives across 2 forked gloo ranks, step routing through DDP, `no_sync`
while accumulating, teardown, and the DistributedSampler that `prepare_loader` injects."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, IterableDataset, TensorDataset

from fulgor.rank import rank_zero_only
from fulgor.strategies import DDPStrategy
from fulgor.strategies.environments import ClusterEnvironment, find_free_network_port

pytestmark = pytest.mark.timeout(60)


class FixedEnvironment(ClusterEnvironment):
    """One node, ranks given (what torchrun would set), without touching the environment variables."""

    def __init__(self, rank: int, world_size: int, port: int) -> None:
        self.rank, self.size, self.port = rank, world_size, port

    creates_processes_externally = True
    main_address = "127.0.0.1"

    @property
    def main_port(self) -> int:  # type: ignore[override]
        return self.port

    @staticmethod
    def detect() -> bool:
        return False

    def world_size(self) -> int:
        return self.size

    def set_world_size(self, size: int) -> None:
        pass

    def global_rank(self) -> int:
        return self.rank

    def set_global_rank(self, rank: int) -> None:
        pass

    def local_rank(self) -> int:
        return self.rank

    def node_rank(self) -> int:
        return 0


def _strategy(rank: int, world_size: int, port: int, timeout: float = 30.0) -> DDPStrategy:
    return DDPStrategy(
        parallel_devices=[torch.device("cpu")] * world_size,
        cluster_environment=FixedEnvironment(rank, world_size, port),
        timeout=timedelta(seconds=timeout),
    )


def _collectives(rank: int, port: int, queue: Any) -> None:
    strategy = _strategy(rank, 2, port)
    strategy.setup_distributed()
    value = torch.tensor([1.0 + rank, 10.0 * rank])
    results = {
        "mean": strategy.reduce(value.clone(), reduce_op="mean").tolist(),
        "sum": strategy.reduce(value.clone(), reduce_op="sum").tolist(),
        "max": strategy.reduce(value.clone(), reduce_op="max").tolist(),
        "min": strategy.reduce(value.clone(), reduce_op="min").tolist(),
        "int_mean": strategy.reduce(torch.tensor(rank), reduce_op="mean").tolist(),
        "gather": strategy.all_gather(torch.tensor([rank, rank * 2])).tolist(),
        "gather_nested": {k: v.tolist() for k, v in strategy.all_gather({"a": torch.tensor(rank)}).items()},
        "broadcast": strategy.broadcast({"from": rank}),
        "all_true": strategy.reduce_boolean_decision(rank == 0, all=True),
        "any_true": strategy.reduce_boolean_decision(rank == 0, all=False),
    }
    strategy.barrier("test")
    strategy.teardown()
    results["kept"] = dist.is_initialized()  # reused by the next run of the process; destroyed at exit
    queue.put((rank, results))


def _run_two(target: Any, *args: Any) -> dict[int, Any]:
    ctx = mp.get_context("fork")
    queue = ctx.SimpleQueue()
    port = find_free_network_port()
    # daemon: a rank still alive when the test times out is killed at exit instead of keeping pytest waiting for it
    processes = [ctx.Process(target=target, args=(rank, port, queue, *args), daemon=True) for rank in (0, 1)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=25)
        if process.is_alive():
            process.kill()
            pytest.fail("a rank hung")
    out: dict[int, Any] = {}
    while not queue.empty():
        rank, result = queue.get()
        out[rank] = result
    return out


def test_collectives_across_two_ranks() -> None:
    results = _run_two(_collectives)
    assert sorted(results) == [0, 1]
    for rank in (0, 1):
        r = results[rank]
        assert r["mean"] == [1.5, 5.0]
        assert r["sum"] == [3.0, 10.0]
        assert r["max"] == [2.0, 10.0]
        assert r["min"] == [1.0, 0.0]
        assert r["int_mean"] == 0.5
        assert r["gather"] == [[0, 0], [1, 2]]
        assert r["gather_nested"] == {"a": [0, 1]}
        assert r["broadcast"] == {"from": 0}
        assert (r["all_true"], r["any_true"]) == (False, True)
        assert r["kept"] is True


def _late_barrier(rank: int, port: int, queue: Any) -> None:
    strategy = _strategy(rank, 2, port, timeout=2.0)
    strategy.setup_distributed()
    if rank == 1:
        time.sleep(6)  # misses rank 0's barrier deadline
        queue.put((rank, "late"))
        return
    try:
        strategy.barrier("before_save")
    except RuntimeError as error:
        queue.put((rank, str(error)))
        os._exit(0)  # the process group is broken; skip its teardown
    queue.put((rank, "passed"))


def test_barrier_timeout_names_the_missing_rank() -> None:
    results = _run_two(_late_barrier)
    message = results[0]
    assert message.startswith("fulgor: barrier 'before_save' on global rank 0 timed out after 0:00:02: ")
    assert "Rank 1" in message or "Ranks 1" in message
    assert message.endswith("A missing rank failed or is stuck; see its output above.")


class _Module(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layer = torch.nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("DDP must call the step, not forward")

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return self.layer(batch).sum() * (batch_idx + 1)


@pytest.fixture
def world_of_one(monkeypatch: pytest.MonkeyPatch) -> DDPStrategy:
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    for key in ("MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    strategy = _strategy(0, 1, find_free_network_port())
    strategy.setup_distributed()
    yield strategy
    if dist.is_initialized():
        dist.destroy_process_group()


def test_training_step_runs_through_ddp(world_of_one: DDPStrategy) -> None:
    strategy = world_of_one
    module = _Module()
    step = strategy.step_fn(module, "training_step")  # resolved before the model is wrapped, as the Trainer does
    strategy._trainer = SimpleNamespace(state=SimpleNamespace(fn="fit"))
    wrapped = strategy.setup_module(module)
    assert isinstance(wrapped, DistributedDataParallel)
    assert wrapped.module.module is module
    batch = torch.ones(2, 3)
    expected = module.training_step(batch, 1)
    assert torch.equal(step(batch, 1), expected)
    assert wrapped.require_backward_grad_sync
    with strategy.no_backward_sync():
        assert not wrapped.require_backward_grad_sync
    assert wrapped.require_backward_grad_sync
    strategy.teardown()
    assert strategy.model is module


def test_evaluation_runs_are_not_wrapped(world_of_one: DDPStrategy) -> None:
    strategy = world_of_one
    strategy._trainer = SimpleNamespace(state=SimpleNamespace(fn="validate"))
    module = _Module()
    assert strategy.setup_module(module) is module
    assert strategy.step_fn(module, "training_step")(torch.ones(1, 3), 0).shape == ()


class _Stream(IterableDataset[int]):
    def __iter__(self) -> Any:
        return iter(range(4))


def _trainer(rank: int = 1, use: bool = True) -> Any:
    """What `prepare_loader` reads of a run: its strategy (rank `rank` of 2), config and trainer (its device count,
    for the few-workers warning)."""
    strategy = SimpleNamespace(distributed_sampler_kwargs={"num_replicas": 2, "rank": rank}, global_rank=rank)
    config = SimpleNamespace(use_distributed_sampler=use, overfit_batches=0, reload_dataloaders_every_n_epochs=0)
    return SimpleNamespace(strategy=strategy, config=config, trainer=SimpleNamespace(num_devices=1), fitting=True)


def test_prepare_loader_injects_distributed_samplers(monkeypatch: pytest.MonkeyPatch) -> None:
    from fulgor.trainer.data import prepare_loader
    from fulgor.trainer.state import RunningStage

    monkeypatch.setenv("PL_GLOBAL_SEED", "7")
    monkeypatch.delenv("PL_SEED_WORKERS", raising=False)
    data = TensorDataset(torch.arange(10.0))
    train = prepare_loader(
        _trainer(), DataLoader(data, batch_size=3, shuffle=True, drop_last=True), RunningStage.TRAINING
    )
    sampler = train.sampler
    assert isinstance(sampler, DistributedSampler)
    assert (sampler.num_replicas, sampler.rank, sampler.shuffle, sampler.seed) == (2, 1, True, 7)
    assert (train.batch_size, train.drop_last) == (3, True)
    # Lightning's rule: the training sampler shuffles even when the user's loader did not (seed PL_GLOBAL_SEED).
    plain = prepare_loader(_trainer(), DataLoader(data, batch_size=2), RunningStage.TRAINING)
    assert plain.sampler.shuffle is True
    order = torch.randperm(10, generator=torch.Generator().manual_seed(7)).tolist()[1::2]  # rank 1 of 2, epoch 0
    assert [b[0].tolist() for b in plain] == [[float(i) for i in order[k : k + 2]] for k in range(0, 5, 2)]
    with pytest.warns(UserWarning, match="shuffling enabled"):
        val = prepare_loader(_trainer(), DataLoader(data, shuffle=True), RunningStage.VALIDATING)
    assert val.sampler.shuffle is False
    user = DistributedSampler(data, num_replicas=2, rank=0, shuffle=False)
    kept = DataLoader(data, sampler=user)
    assert prepare_loader(_trainer(), kept, RunningStage.TRAINING).sampler is user
    stream = DataLoader(_Stream())
    assert prepare_loader(_trainer(), stream, RunningStage.TRAINING) is stream
    off = DataLoader(data)
    assert prepare_loader(_trainer(use=False), off, RunningStage.TRAINING) is off
