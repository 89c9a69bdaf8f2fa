"""The Strategy ABC: the device, the model's placement, and the collectives the loop and `self.log` use."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn


class Strategy(ABC):
    """Owns the root device, moves the model and batches there, and implements reduce/gather/broadcast/barrier."""

    def __init__(self) -> None:
        self.model: nn.Module | None = None

    @property
    @abstractmethod
    def root_device(self) -> torch.device:
        """The device this process computes on."""

    @property
    def world_size(self) -> int:
        return 1

    @property
    def global_rank(self) -> int:
        return 0

    @property
    def local_rank(self) -> int:
        return 0

    @property
    def node_rank(self) -> int:
        return 0

    @property
    def is_global_zero(self) -> bool:
        return self.global_rank == 0

    @property
    def launcher(self) -> Any:
        return None

    @property
    def launches_workers(self) -> bool:
        """True when the Trainer's entry points must run through `launcher.launch(...)` in worker processes
        (`ddp_spawn`/`ddp_fork` in the calling process); False on one device and inside the workers."""
        return False

    @property
    def distributed_sampler_kwargs(self) -> dict[str, int] | None:
        """`num_replicas`/`rank` for the `DistributedSampler` fulgor injects; None when not distributed."""
        return None

    def configure(self, accelerator: str, device_ids: list[int], num_nodes: int) -> None:  # noqa: B027
        """Receive the parsed `accelerator`/`devices`/`num_nodes` flags (called by the Trainer's constructor)."""

    def setup_environment(self, trainer: Any) -> None:  # noqa: B027
        """Start of every run: launch processes and join the process group (nothing to do on one device)."""

    def setup_module(self, module: nn.Module) -> nn.Module:
        """Move the module to the root device; distributed strategies also wrap it."""
        self.model = module.to(self.root_device)
        return self.model

    def step_fn(self, module: nn.Module, name: str) -> Any:
        """The callable that runs `module.<name>` (a step method); distributed strategies route it through
        their wrapper so gradient synchronisation sees a forward call."""
        return getattr(module, name)

    @contextmanager
    def no_backward_sync(self) -> Iterator[None]:
        """Skip gradient synchronisation while accumulating (no-op on one process)."""
        yield

    def reduce(self, tensor: Tensor, reduce_op: str = "mean") -> Tensor:
        """Reduce across processes (identity on one process)."""
        return tensor

    def all_gather(self, data: Any, group: Any | None = None, sync_grads: bool = False) -> Any:
        """Gather across processes (identity on one process, as in Lightning)."""
        return data

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        return obj

    def barrier(self, name: str | None = None) -> None:  # noqa: B027
        """Wait for every process (no-op on one process)."""

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        return decision

    def teardown(self) -> None:
        """Release what the strategy holds after a run: a model trained on a GPU goes back to the CPU."""
        if self.model is not None and self.root_device.type == "cuda":
            self.model.cpu()
            torch.cuda.empty_cache()
