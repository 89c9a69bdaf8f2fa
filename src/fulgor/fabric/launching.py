"""How `Fabric.launch` starts the processes: through the strategy's launcher when it has one (`ddp` re-running the
script per rank, `ddp_spawn`/`ddp_fork` running the function in torch.multiprocessing workers and returning rank 0's
value), else in place; the barrier of `rank_zero_first`; and the DataLoader preparation `setup_dataloaders` does
(distributed sampler, worker seeding)."""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from functools import partial
from typing import Any

import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, IterableDataset, RandomSampler, SequentialSampler

from fulgor.errors import MisconfigurationException
from fulgor.samplers import DistributedSamplerWrapper
from fulgor.seed import pl_worker_init_function
from fulgor.strategies.launcher import MultiProcessingLauncher
from fulgor.strategies.strategy import Strategy
from fulgor.trainer.data import rebuild_dataloader

__all__ = ["copy_with_sampler", "launch_function", "patient_barrier", "prepare_dataloader", "spawns"]

# `rank_zero_first` waits as long as rank 0 needs (a download, a dataset build): far past the collectives' timeout.
_PATIENT_TIMEOUT = timedelta(days=10000)


def spawns(strategy: Strategy) -> bool:
    """Whether the strategy runs a function in worker processes (`ddp_spawn`, `ddp_fork`) from this process."""
    launcher = strategy.launcher
    return isinstance(launcher, MultiProcessingLauncher) and not launcher.in_worker


def launch_function(strategy: Strategy, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run `function(*args, **kwargs)` on every rank, each process first running `strategy.setup_environment()`
    (joining the process group); through `strategy.launcher.launch` when the strategy has a launcher. Returns this
    process's result (rank 0's when spawning)."""
    to_run = partial(_run_with_setup, strategy, function)
    launcher = strategy.launcher
    if launcher is not None:
        return launcher.launch(to_run, *args, **kwargs)
    return to_run(*args, **kwargs)


def _run_with_setup(strategy: Strategy, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    strategy.setup_environment()
    return function(*args, **kwargs)


@contextmanager
def patient_barrier() -> Iterator[Callable[[], None]]:
    """A barrier without a practical timeout, for `rank_zero_first`: over its own gloo group when processes are
    joined (a no-op otherwise); every process passes it once more on leaving, so all leave together."""
    group = None
    if dist.is_available() and dist.is_initialized():
        group = dist.new_group(backend="gloo", timeout=_PATIENT_TIMEOUT)

    def wait() -> None:
        if group is not None:
            dist.monitored_barrier(group=group, timeout=_PATIENT_TIMEOUT)

    try:
        yield wait
        wait()
    finally:
        if group is not None:
            dist.destroy_process_group(group)


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
        dataloader = copy_with_sampler(dataloader, _distributed_sampler(dataloader, kwargs))
    if os.environ.get("PL_SEED_WORKERS") == "1" and dataloader.worker_init_fn is None:
        dataloader.worker_init_fn = partial(pl_worker_init_function, rank=strategy.global_rank)
    return dataloader


def _distributed_sampler(dataloader: DataLoader[Any], kwargs: dict[str, int]) -> DistributedSampler[Any]:
    """The DistributedSampler replacing the loader's sampler: its shuffling kept, seeded by `PL_GLOBAL_SEED`; a custom
    sampler is wrapped (each process draws its share of that sampler's indices).

    Raises:
        TypeError: the custom sampler has no `__len__` (the share cannot be computed).
    """
    options: dict[str, Any] = {
        **kwargs,
        "shuffle": isinstance(dataloader.sampler, RandomSampler),
        "seed": int(os.getenv("PL_GLOBAL_SEED", 0)),
    }
    sampler = dataloader.sampler
    if isinstance(sampler, (RandomSampler, SequentialSampler)):
        return DistributedSampler(dataloader.dataset, **options)
    if not callable(getattr(sampler, "__len__", None)):
        raise TypeError(
            "You seem to have configured a sampler in your DataLoader which does not provide `__len__` method. The"
            " sampler was about to be replaced by `DistributedSamplerWrapper` since `use_distributed_sampler` is True"
            " and you are using distributed training. Either provide `__len__` method in your sampler, remove it from"
            " DataLoader or set `use_distributed_sampler=False` if you want to handle distributed sampling yourself."
        )
    return DistributedSamplerWrapper(sampler, **options)


# What `DataLoader.__init__` takes: a subclass accepting `**kwargs` passes these on to it.
_LOADER_PARAMETERS = frozenset(inspect.signature(DataLoader.__init__).parameters) - {"self"}


def copy_with_sampler(loader: DataLoader[Any], sampler: Any) -> DataLoader[Any]:
    """A copy of `loader` drawing indices from `sampler`. A DataLoader subclass is built again as that class, each
    `__init__` argument taken from the instance attribute of the same name (the standard ones from the loader).

    Raises:
        MisconfigurationException: an `__init__` argument of the subclass without a default has no such attribute.
    """
    cls = type(loader)
    if cls is DataLoader:
        return rebuild_dataloader(loader, sampler)
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    named = {p.name: p for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    passes_on = any(p.kind is p.VAR_KEYWORD for p in parameters)
    offered = {name: value for name, value in vars(loader).items() if not name.startswith("_")}
    offered.pop("batch_sampler", None)
    offered["sampler"] = sampler
    if loader.batch_sampler is None:  # batch_size=None: samples are batches
        offered["batch_size"] = None
    if offered.get("num_workers", 0) == 0:
        offered.pop("prefetch_factor", None)
        offered["persistent_workers"] = False
    kwargs = {
        name: value for name, value in offered.items() if name in named or (passes_on and name in _LOADER_PARAMETERS)
    }
    missing = sorted(name for name, p in named.items() if p.default is p.empty and name not in kwargs)
    if missing:
        name = cls.__name__
        raise MisconfigurationException(
            f"Trying to inject custom `Sampler` into the `{name}` instance. This would fail as some of the `__init__`"
            f" arguments are not available as instance attributes. The missing attributes are {missing}. If you"
            f" instantiate your `{name}` inside a `*_dataloader` hook of your module, we will do this for you."
            f" Otherwise, define `self.{missing[0]}` inside your `__init__`."
        )
    return _build(cls, kwargs)


def _build(cls: type[DataLoader[Any]], kwargs: dict[str, Any]) -> DataLoader[Any]:
    try:
        return cls(**kwargs)
    except TypeError as error:
        # A subclass taking both its own argument for the dataset (or another DataLoader argument) and `**kwargs`.
        clash = re.search(r"got multiple values for argument '(\w+)'", str(error))
        if clash is None:
            raise
        name = clash.group(1)
        raise MisconfigurationException(
            f"The {cls.__name__} implementation has an error where more than one `__init__` argument can be passed"
            f" to its parent's `{name}=...` `__init__` argument. This is likely caused by allowing passing both a"
            f" custom argument that will map to the `{name}` argument as well as `**kwargs`. `kwargs` should be"
            f" filtered to make sure they don't contain the `{name}` key. This argument was automatically passed to"
            " your object by PyTorch Lightning."
        ) from error
