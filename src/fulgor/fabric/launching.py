"""How `Fabric.launch` starts the processes: in place (one device, or `ddp` re-running the script per rank through the
strategy's own launcher), or a function in torch.multiprocessing workers (`ddp_spawn`/`ddp_fork`), rank 0's return
value coming back; and the DataLoader preparation `setup_dataloaders` does (distributed sampler, worker seeding)."""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Callable
from functools import partial
from types import SimpleNamespace
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler, IterableDataset, RandomSampler, SequentialSampler

from fulgor.samplers import DistributedSamplerWrapper
from fulgor.seed import pl_worker_init_function
from fulgor.strategies.launcher import MultiProcessingLauncher
from fulgor.strategies.strategy import Strategy
from fulgor.trainer.data import rebuild_dataloader

__all__ = ["launch_function", "prepare_dataloader", "setup_environment", "spawns"]


def spawns(strategy: Strategy) -> bool:
    """Whether the strategy runs a function in worker processes (`ddp_spawn`, `ddp_fork`) from this process."""
    launcher = strategy.launcher
    return isinstance(launcher, MultiProcessingLauncher) and not launcher.in_worker


def setup_environment(strategy: Strategy) -> None:
    """Start the other ranks (`ddp`), join the process group and prepare the device."""
    # What the strategies read of their host: the local rank (CUDA's log line) and that this is a training run.
    host = SimpleNamespace(local_rank=strategy.local_rank, state=SimpleNamespace(fn="fit"))
    strategy.setup_environment(host)


def launch_function(fabric: Any, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run `function(*args, **kwargs)` on every rank; returns this process's result (rank 0's when spawning)."""
    strategy = fabric.strategy
    if not spawns(strategy):
        setup_environment(strategy)
        return function(*args, **kwargs)
    launcher = strategy.launcher
    env = strategy.cluster_environment
    os.environ.update(MASTER_ADDR=env.main_address, MASTER_PORT=str(env.main_port))
    with tempfile.TemporaryDirectory(prefix="fulgor-fabric-") as tmp:
        path = os.path.join(tmp, "rank0.pt")
        call: Any = (fabric, function, args, kwargs)
        if launcher.start_method == "spawn":
            call = pickle.dumps(call)  # plain pickle: each worker gets its own copy of the parameters
        import torch.multiprocessing as mp

        mp.start_processes(  # type: ignore[attr-defined,no-untyped-call]
            partial(_run_worker, path=path),
            args=(call,),
            nprocs=strategy.num_processes,
            start_method=launcher.start_method,
        )
        return torch.load(path, weights_only=False) if os.path.exists(path) else None


def _run_worker(local_rank: int, call: Any, path: str) -> None:
    fabric, function, args, kwargs = pickle.loads(call) if isinstance(call, bytes) else call
    strategy = fabric.strategy
    strategy.launcher.in_worker = True
    strategy.set_local_rank(local_rank)
    setup_environment(strategy)
    value = function(*args, **kwargs)
    if strategy.global_rank == 0:
        torch.save(value, path)


def prepare_dataloader(
    dataloader: DataLoader[Any], strategy: Strategy, use_distributed_sampler: bool
) -> DataLoader[Any]:
    """`dataloader` with a DistributedSampler when running distributed (the original's shuffling kept, seeded by
    `PL_GLOBAL_SEED`) and, after `seed_everything(workers=True)`, worker seeding; else as it is."""
    kwargs = strategy.distributed_sampler_kwargs
    needs_sampler = (
        use_distributed_sampler
        and kwargs is not None
        and not isinstance(dataloader.sampler, DistributedSampler)
        and not isinstance(dataloader.dataset, IterableDataset)
    )
    if needs_sampler:
        assert kwargs is not None
        options: dict[str, Any] = {
            **kwargs,
            "shuffle": isinstance(dataloader.sampler, RandomSampler),
            "seed": int(os.getenv("PL_GLOBAL_SEED", 0)),
        }
        sampler: DistributedSampler[Any]
        if isinstance(dataloader.sampler, (RandomSampler, SequentialSampler)):
            sampler = DistributedSampler(dataloader.dataset, **options)
        else:
            sampler = DistributedSamplerWrapper(dataloader.sampler, **options)
        dataloader = rebuild_dataloader(dataloader, sampler)
    if os.environ.get("PL_SEED_WORKERS") == "1" and dataloader.worker_init_fn is None:
        dataloader.worker_init_fn = partial(pl_worker_init_function, rank=strategy.global_rank)
    return dataloader
