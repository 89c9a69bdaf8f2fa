"""The Strategy ABC: the device, the model's placement, the collectives the loop and `self.log` use, and the parts
Lightning hangs on a strategy (accelerator, precision plugin, checkpoint IO)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from fulgor.accelerators import Accelerator
from fulgor.checkpoint_io import AsyncCheckpointIO, CheckpointIO, TorchCheckpointIO
from fulgor.precision import Precision


class Strategy(ABC):
    """Owns the root device, moves the model and batches there, and implements reduce/gather/broadcast/barrier.

    Args:
        accelerator: the hardware (default: from the Trainer's `accelerator` flag).
        checkpoint_io: how checkpoint files are written (default: `TorchCheckpointIO`, or `plugins=`).
        precision_plugin: the precision (default: from the Trainer's `precision` flag, or `plugins=`).
    """

    def __init__(
        self,
        accelerator: Accelerator | None = None,
        checkpoint_io: CheckpointIO | None = None,
        precision_plugin: Precision | None = None,
    ) -> None:
        self.model: nn.Module | None = None
        self._lightning_module: nn.Module | None = None
        self.accelerator = accelerator
        self._checkpoint_io = checkpoint_io
        self._precision_plugin = precision_plugin

    def connect(self, model: nn.Module) -> None:
        """Attach the LightningModule this strategy runs (the Trainer does it as each run starts)."""
        self._lightning_module = model

    @property
    def lightning_module(self) -> nn.Module | None:
        """The LightningModule of the current (or last) run, unwrapped."""
        return self._lightning_module

    def backward(self, closure_loss: Tensor, optimizer: Any, *args: Any, **kwargs: Any) -> Tensor:
        """The backward pass of `closure_loss`: the precision's loss scaling, the `on_before_backward` hooks,
        `LightningModule.backward(loss, *args, **kwargs)`, the `on_after_backward` hooks. A strategy that runs
        backward differently overrides this; `optimizer` is the one being stepped (None in manual optimization).

        Returns:
            `closure_loss`.
        """
        run = getattr(self._lightning_module, "_run", None)
        if run is None:
            raise RuntimeError(
                "`Strategy.backward` runs inside a Trainer run: call `manual_backward(loss)` from a LightningModule"
                " hook, or `loss.backward()` outside the Trainer."
            )
        run.backward(closure_loss, *args, **kwargs)
        return closure_loss

    @contextmanager
    def tensor_init_context(self, empty_init: bool | None = None) -> Iterator[None]:
        """Tensors created inside go to the root device, in the precision's dtype (`Trainer.init_module`). A strategy
        that creates them otherwise (sharded, on the meta device when `empty_init`) overrides this."""
        with self.root_device, self.precision_plugin.tensor_init_context():
            yield

    @property
    def checkpoint_io(self) -> CheckpointIO:
        """The plugin that writes, reads and removes checkpoint files (`TorchCheckpointIO` unless one was given)."""
        if self._checkpoint_io is None:
            self._checkpoint_io = TorchCheckpointIO()
        elif isinstance(self._checkpoint_io, AsyncCheckpointIO) and self._checkpoint_io.checkpoint_io is None:
            self._checkpoint_io.checkpoint_io = TorchCheckpointIO()
        return self._checkpoint_io

    @checkpoint_io.setter
    def checkpoint_io(self, io: CheckpointIO | None) -> None:
        self._checkpoint_io = io

    @property
    def precision_plugin(self) -> Precision:
        """The precision the run uses (full fp32 unless one was set)."""
        if self._precision_plugin is None:
            self._precision_plugin = Precision()
        return self._precision_plugin

    @precision_plugin.setter
    def precision_plugin(self, precision_plugin: Precision | None) -> None:
        self._precision_plugin = precision_plugin

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

    def configure(self, accelerator: Accelerator, parallel_devices: list[torch.device], num_nodes: int) -> None:
        """Receive the accelerator, the device of each process on this node and `num_nodes` (called by the Trainer's
        constructor; a strategy built with its own accelerator keeps it)."""
        if self.accelerator is None:
            self.accelerator = accelerator

    def setup_environment(self, trainer: Any) -> None:
        """Start of every run: prepare the device (the accelerator's `setup_device` and `setup`); distributed
        strategies also launch processes and join the process group."""
        if self.accelerator is not None:
            self.accelerator.setup_device(self.root_device)
            self.accelerator.setup(trainer)

    def save_checkpoint(self, checkpoint: dict[str, Any], filepath: Any, storage_options: Any | None = None) -> None:
        """Write `checkpoint` through the checkpoint IO plugin, on global rank 0 only."""
        if self.is_global_zero:
            self.checkpoint_io.save_checkpoint(checkpoint, filepath, storage_options=storage_options)

    def remove_checkpoint(self, filepath: Any) -> None:
        """Delete a checkpoint through the checkpoint IO plugin, on global rank 0 only."""
        if self.is_global_zero:
            self.checkpoint_io.remove_checkpoint(filepath)

    def load_checkpoint(self, checkpoint_path: Any, weights_only: bool | None = None) -> dict[str, Any]:
        """Read a checkpoint through the checkpoint IO plugin."""
        return self.checkpoint_io.load_checkpoint(checkpoint_path, weights_only=weights_only)

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

    def on_exception(self, exception: BaseException) -> None:  # noqa: B027
        """Called when a run is interrupted by `exception` (after the callbacks' `on_exception`); override to react."""

    def teardown(self) -> None:
        """Release what the strategy holds after a run: a model trained on a GPU goes back to the CPU; the precision,
        accelerator and checkpoint IO are torn down (an asynchronous checkpoint IO finishes its saves here and raises
        what a background save raised)."""
        if self.model is not None and self.root_device.type == "cuda":
            self.model.cpu()
        self.precision_plugin.teardown()
        if self.accelerator is not None:
            self.accelerator.teardown()
        self.checkpoint_io.teardown()
