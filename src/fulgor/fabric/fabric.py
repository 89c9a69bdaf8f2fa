"""The Fabric class: your own training loop, with devices, precision, distributed processes, checkpoints, loggers and
callbacks handled by the strategies and precision plugins the Trainer uses (Lightning Fabric's API)."""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Mapping
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.utils.data import DataLoader

from fulgor.accelerators import Accelerator
from fulgor.data.conversion import convert_tensors_to_scalars, convert_to_tensors, map_leaves
from fulgor.data.transfer import move_data_to_device
from fulgor.fabric.checks import (
    backward_sync_context,
    call_hooks,
    check_launch_function,
    check_run_override,
    warn_mixed_devices,
)
from fulgor.fabric.connector import build_strategy
from fulgor.fabric.launching import launch_function, patient_barrier, prepare_dataloader
from fulgor.fabric.wrappers import FABRIC_BACKWARD, _FabricDataLoader, _FabricModule, _FabricOptimizer, unwrap_objects
from fulgor.fabric_cli import cli_flags
from fulgor.loggers.logger import Logger
from fulgor.precision import Precision
from fulgor.rank_messages import rank_zero_deprecation
from fulgor.seed import seed_everything
from fulgor.strategies.dp import DataParallelStrategy
from fulgor.strategies.single_device import SingleDeviceStrategy
from fulgor.strategies.state_files import StateFilter, check_filter
from fulgor.strategies.strategy import Strategy

__all__ = ["Fabric"]


def _do_nothing(*_: Any) -> None:
    """`launch()` without a function: only the processes are started."""


class Fabric:
    """Accelerate your own PyTorch training loop: devices, precision, DDP, checkpoints, logging.

    Args:
        accelerator: "cpu", "cuda", "gpu", "mps", "auto" or an `Accelerator`.
        strategy: "auto", "ddp", "ddp_spawn", "ddp_fork", "fsdp", "single_device" or a `Strategy` instance.
        devices: how many devices (or which ones, or "auto").
        num_nodes: how many machines.
        precision: "32-true" (default), "64-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true" (or the
            legacy 64, 32, 16, "bf16").
        plugins: a precision, checkpoint IO or cluster environment object (or a list).
        callbacks: objects whose methods `call(name, ...)` runs.
        loggers: a logger or a list of loggers that `log` and `log_dict` write to.
    """

    def __init__(
        self,
        *,
        accelerator: str | Accelerator = "auto",
        strategy: str | Strategy = "auto",
        devices: list[int] | str | int = "auto",
        num_nodes: int = 1,
        precision: str | int | None = None,
        plugins: Any = None,
        callbacks: list[Any] | Any | None = None,
        loggers: Logger | list[Logger] | None = None,
    ) -> None:
        # `fabric run --devices=2 ...` passes its flags through LT_* environment variables
        accelerator, strategy, devices, num_nodes, precision = cli_flags(
            accelerator, strategy, devices, num_nodes, precision
        )
        self._strategy = build_strategy(accelerator, strategy, devices, num_nodes, precision, plugins)
        assert self._strategy.accelerator is not None, "build_strategy configures the accelerator"
        self._accelerator: Accelerator = self._strategy.accelerator
        callbacks = [] if callbacks is None else callbacks
        self._callbacks: list[Any] = list(callbacks) if isinstance(callbacks, list) else [callbacks]
        loggers = [] if loggers is None else loggers
        self._loggers: list[Logger] = list(loggers) if isinstance(loggers, list) else [loggers]
        self._models_setup = 0
        self._launched = False
        if check_run_override(self, Fabric):  # Fabric 1.x style: `run()` launches the processes, then runs
            self.run = partial(self._launch_and_run, self.run)  # type: ignore[method-assign]
        if os.environ.get("LT_CLI_USED") == "1":  # started by `fabric run`: the processes exist already
            self._strategy.setup_environment()
            self._launched = True

    @property
    def accelerator(self) -> Accelerator:
        """The accelerator (the hardware kind)."""
        return self._accelerator

    @property
    def strategy(self) -> Strategy:
        """The strategy (devices, processes, collectives, checkpoint IO), shared with the Trainer's classes."""
        return self._strategy

    @property
    def _precision(self) -> Precision:
        return self._strategy.precision_plugin

    @property
    def device(self) -> torch.device:
        """The device this process computes on (create tensors there if you need to)."""
        return self._strategy.root_device

    @property
    def global_rank(self) -> int:
        """The index of this process among all processes."""
        return self._strategy.global_rank

    @property
    def local_rank(self) -> int:
        """The index of this process on its machine."""
        return self._strategy.local_rank

    @property
    def node_rank(self) -> int:
        """The index of this machine."""
        return self._strategy.node_rank

    @property
    def world_size(self) -> int:
        """How many processes run."""
        return self._strategy.world_size

    @property
    def is_global_zero(self) -> bool:
        """Whether this is the process of global rank 0."""
        return self._strategy.is_global_zero

    @property
    def loggers(self) -> list[Logger]:
        """The loggers `log` and `log_dict` write to."""
        return self._loggers

    @property
    def logger(self) -> Logger:
        """The first logger."""
        return self._loggers[0]

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Fabric 1.x's entry point for subclasses (`launch(function)` is the 2.x way); does nothing here. A subclass's
        `run` is called through the strategy's launcher (in every process) and may not be used with `fabric run`."""

    def _launch_and_run(self, run: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self._launched = True
        return launch_function(self._strategy, run, *args, **kwargs)

    # ------------------------------------------------------------------ setup
    def setup(
        self, module: nn.Module, *optimizers: Optimizer, scheduler: Any = None, move_to_device: bool = True
    ) -> Any:
        """Prepare a module and its optimizers: precision conversion, device placement, then the strategy's
        `setup_module_and_optimizers` (or `setup_module` without optimizers), which may wrap them (DDP).

        Returns:
            The wrapped module when no optimizer is given, else a tuple (module, *optimizers), with `scheduler`
            last when one was given.

        Raises:
            ValueError: the module or an optimizer was set up already.
            RuntimeError: several devices and `launch()` was not called.
        """
        self._check_launched()
        if isinstance(module, _FabricModule):
            raise ValueError("A model should be passed only once to the `setup` method.")
        if any(isinstance(optimizer, _FabricOptimizer) for optimizer in optimizers):
            raise ValueError("An optimizer should be passed only once to the `setup` method.")
        wrapped, fabric_optimizers, scheduler = self._set_up(module, optimizers, scheduler, move_to_device)
        self.call("on_after_setup", fabric=self, module=wrapped)  # `setup` only, as Lightning (not `setup_module`)
        if not fabric_optimizers:
            return wrapped
        return (wrapped, *fabric_optimizers, scheduler) if scheduler is not None else (wrapped, *fabric_optimizers)

    def setup_module(self, module: nn.Module, move_to_device: bool = True) -> _FabricModule:
        """Prepare a module alone (precision, device, the strategy's `setup_module`); set up its optimizers after.

        Raises:
            ValueError: the module was set up already.
        """
        self._check_launched()
        if isinstance(module, _FabricModule):
            raise ValueError("A model should be passed only once to the `setup_module` method.")
        return self._set_up(module, (), None, move_to_device)[0]

    def _set_up(
        self, module: nn.Module, optimizers: tuple[Optimizer, ...], scheduler: Any, move_to_device: bool
    ) -> tuple[_FabricModule, list[_FabricOptimizer], Any]:
        module = self._precision.convert_module(module)
        if move_to_device:
            warn_mixed_devices(module)
            self.to_device(module)
        if optimizers:
            strategy_setup = self._strategy.setup_module_and_optimizers(module, list(optimizers), scheduler)
            forward_module, set_up, scheduler = strategy_setup
        else:
            forward_module, set_up = self._strategy.setup_module(module), []
        wrapped = _FabricModule(forward_module, self._strategy, original_module=module)
        if move_to_device:
            wrapped.to(self.device)  # the wrapper's `device` follows the module's
        fabric_optimizers = [_FabricOptimizer(opt, self._strategy, self._callbacks) for opt in set_up]
        lightning_module: Any = module
        if hasattr(lightning_module, "_fabric"):  # it logs, steps and clips through this Fabric; `call` runs its hooks
            lightning_module._fabric = self
            if optimizers:
                lightning_module._fabric_optimizers = fabric_optimizers
            self._callbacks += [] if module in self._callbacks else [module]
        self._models_setup += 1
        return wrapped, fabric_optimizers, scheduler

    def setup_optimizers(self, *optimizers: Optimizer) -> Any:
        """Wrap optimizers (after the strategy's `setup_optimizer`) so that `step` goes through the strategy and its
        precision; one optimizer in, one out (else a tuple).

        Raises:
            ValueError: no optimizer, or one that was set up already.
        """
        self._check_launched()
        if not optimizers:
            raise ValueError("`setup_optimizers` requires at least one optimizer as input.")
        if any(isinstance(optimizer, _FabricOptimizer) for optimizer in optimizers):
            raise ValueError("An optimizer should be passed only once to the `setup_optimizers` method.")
        wrapped = tuple(
            _FabricOptimizer(self._strategy.setup_optimizer(opt), self._strategy, self._callbacks) for opt in optimizers
        )
        return wrapped[0] if len(wrapped) == 1 else wrapped

    def setup_dataloaders(
        self, *dataloaders: DataLoader[Any], use_distributed_sampler: bool = True, move_to_device: bool = True
    ) -> Any:
        """Wrap dataloaders: a DistributedSampler when distributed (unless `use_distributed_sampler=False`), the
        strategy's `process_dataloader`, batches moved to `fabric.device` (unless `move_to_device=False`).

        Returns:
            One wrapped dataloader for one given, else a list.

        Raises:
            ValueError: none given, or one set up already.
            TypeError: something other than a torch DataLoader.
        """
        self._check_launched()
        if not dataloaders:
            raise ValueError("`setup_dataloaders` requires at least one dataloader as input.")
        if any(isinstance(loader, _FabricDataLoader) for loader in dataloaders):
            raise ValueError("A dataloader should be passed only once to the `setup_dataloaders` method.")
        if any(not isinstance(loader, DataLoader) for loader in dataloaders):
            raise TypeError("Only PyTorch DataLoader are currently supported in `setup_dataloaders`.")
        wrapped = [
            _FabricDataLoader(
                self._strategy.process_dataloader(prepare_dataloader(loader, self._strategy, use_distributed_sampler)),
                device=self.device if move_to_device else None,
            )
            for loader in dataloaders
        ]
        return wrapped[0] if len(wrapped) == 1 else wrapped

    def backward(self, tensor: Tensor, *args: Any, model: _FabricModule | None = None, **kwargs: Any) -> None:
        """`loss.backward()` through the strategy's `backward(tensor, module, *args, **kwargs)` and so the precision
        (loss scaling for "16-mixed"); `args`/`kwargs` go to `Tensor.backward`; `model` is the set-up module the
        strategy's backward receives (None by default)."""
        module = model._forward_module if model is not None else None
        module = getattr(module, "_orig_mod", module)  # a compiled module: the strategy sees what it wrapped
        FABRIC_BACKWARD.active = True
        try:
            self._strategy.backward(tensor, module, *args, **kwargs)
        finally:
            FABRIC_BACKWARD.active = False

    def clip_gradients(
        self,
        module: nn.Module,
        optimizer: Optimizer,
        clip_val: float | int | None = None,
        max_norm: float | int | None = None,
        norm_type: float | int = 2.0,
        error_if_nonfinite: bool = True,
    ) -> Tensor | None:
        """Clip the gradients of the optimizer's parameters by value (`clip_val`) or by total norm (`max_norm`), through
        the strategy's `clip_gradients_value` / `clip_gradients_norm`.

        Returns:
            The total norm before clipping for `max_norm`, else None.

        Raises:
            ValueError: both or neither of `clip_val` and `max_norm`.
        """
        if clip_val is not None and max_norm is not None:
            raise ValueError(
                "Only one of `clip_val` or `max_norm` can be set as this specifies the underlying clipping algorithm!"
            )
        if clip_val is not None:
            self._strategy.clip_gradients_value(unwrap_objects(module), unwrap_objects(optimizer), clip_val=clip_val)
            return None
        if max_norm is not None:
            return self._strategy.clip_gradients_norm(
                unwrap_objects(module),
                unwrap_objects(optimizer),
                max_norm=max_norm,
                norm_type=norm_type,
                error_if_nonfinite=error_if_nonfinite,
            )
        raise ValueError("You have to specify either `clip_val` or `max_norm` to do gradient clipping!")

    def autocast(self) -> AbstractContextManager[Any]:
        """The precision's forward context, for operations outside the set-up module's forward."""
        return self._precision.forward_context()

    def no_backward_sync(self, module: _FabricModule, enabled: bool = True) -> AbstractContextManager[Any]:
        """Skip DDP's gradient synchronisation in forward and backward while accumulating (no-op on one device).

        Raises:
            TypeError: the module was not set up by Fabric.
        """
        inner = getattr(module, "_orig_mod", module)
        if not isinstance(inner, _FabricModule):
            raise TypeError(
                "You need to set up the model first before you can call `fabric.no_backward_sync()`:"
                " `model = fabric.setup(model, ...)`"
            )
        return backward_sync_context(self._strategy, inner._forward_module, enabled)

    def to_device(self, obj: Any) -> Any:
        """Move a module (in place, through the strategy's `module_to_device`), a tensor or a collection of tensors to
        `fabric.device`."""
        if isinstance(obj, nn.Module):
            self._accelerator.setup_device(self.device)
            self._strategy.module_to_device(obj)
            return obj
        return move_data_to_device(obj, self.device)

    def init_tensor(self) -> AbstractContextManager[Any]:
        """Tensors created inside are on the device, in the precision's dtype (the strategy's
        `tensor_init_context`)."""
        return self._strategy.tensor_init_context()

    def init_module(self, empty_init: bool | None = None) -> AbstractContextManager[Any]:
        """Modules built inside are created on the device, in the precision's dtype (the strategy's
        `module_init_context`); `empty_init=True` skips the weight initialisation a checkpoint overwrites (a sharding
        strategy creates them on the meta device, to be materialised by `setup`)."""
        self._check_launched()
        return self._strategy.module_init_context(empty_init=empty_init)

    def sharded_model(self) -> AbstractContextManager[Any]:
        """Fabric 1.x's context for sharded creation (deprecated): use `init_module`."""
        rank_zero_deprecation("`Fabric.sharded_model()` is deprecated in favor of `Fabric.init_module()`.")
        return self.init_module()

    def print(self, *args: Any, **kwargs: Any) -> None:
        """`print` on local rank 0 only."""
        if self.local_rank == 0:
            print(*args, **kwargs)  # noqa: T201 (Fabric.print is print, on one rank)

    # ------------------------------------------------------------------ collectives
    def barrier(self, name: str | None = None) -> None:
        """Wait until every process reaches this call."""
        self._check_launched()
        self._strategy.barrier(name=name)

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        """Rank `src`'s `obj` (any picklable object) on every process."""
        self._check_launched()
        return self._strategy.broadcast(obj, src=src)

    def all_gather(self, data: Any, group: Any | None = None, sync_grads: bool = False) -> Any:
        """Gather numbers/tensors (in any collection) from every process: each gets a leading `world_size` dim
        when distributed (unchanged on one process)."""
        self._check_launched()
        group = group if group is not None else dist.group.WORLD
        data = convert_to_tensors(data, self.device)
        return map_leaves(data, lambda value: self._gather(value, group, sync_grads))

    def _gather(self, value: Any, group: Any, sync_grads: bool) -> Any:
        if not isinstance(value, Tensor):
            return value
        return self._strategy.all_gather(value, group=group, sync_grads=sync_grads)

    def all_reduce(self, data: Any, group: Any | None = None, reduce_op: Any = "mean") -> Any:
        """Reduce numbers/tensors (in any collection) across the processes of `group` (default: all) with "mean"
        (default), "sum", "max", "min" or a `torch.distributed.ReduceOp`: the strategy's `all_reduce`, per tensor."""
        self._check_launched()
        group = group if group is not None else dist.group.WORLD
        data = convert_to_tensors(data, self.device)
        return map_leaves(data, lambda value: self._reduce(value, group, reduce_op))

    def _reduce(self, value: Any, group: Any, reduce_op: Any) -> Any:
        if not isinstance(value, Tensor):
            return value
        return self._strategy.all_reduce(value, group=group, reduce_op=reduce_op)

    @contextmanager
    def rank_zero_first(self, local: bool = False) -> Generator[None, None, None]:
        """Run the block on rank 0 first (global, or per machine with `local=True`), then on the others; every
        process leaves together. The wait has no practical timeout (rank 0 may download a dataset meanwhile)."""
        rank = self.local_rank if local else self.global_rank
        with patient_barrier() as barrier:
            if rank > 0:
                barrier()
            yield
            if rank == 0:
                barrier()

    # ------------------------------------------------------------------ checkpoints
    def save(self, path: str | Path, state: dict[str, Any], filter: StateFilter | None = None) -> None:
        """Write `state` (names -> modules, optimizers, objects with `state_dict()`, plain values; each object as its
        state dict, of which `filter[name](key, value)` keeps the accepted entries) to `path` through the strategy's
        `save_checkpoint` (atomically, from global rank 0 by default); every process must call it.

        Raises:
            TypeError: `filter` is not a dict of callables.
            ValueError: `filter` names keys that `state` does not have.
        """
        check_filter(state, filter)
        self._strategy.save_checkpoint(path=path, state=unwrap_objects(state), filter=filter)
        self.barrier()

    def load(
        self,
        path: str | Path,
        state: dict[str, Any] | None = None,
        strict: bool = True,
        *,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        """Restore `state`'s objects in place from the checkpoint at `path` (the strategy's `load_checkpoint`); return
        what was not restored (the whole checkpoint without `state`). Plain values of `state` are replaced by the
        saved ones.

        Raises:
            KeyError: with `strict`, a key of `state` that the checkpoint lacks.
        """
        unwrapped = unwrap_objects(state) if state is not None else None
        remainder = self._strategy.load_checkpoint(path=path, state=unwrapped, strict=strict, weights_only=weights_only)
        self.barrier()
        if state is not None and unwrapped is not None:
            for key, value in unwrapped.items():
                if not (isinstance(state[key], (_FabricModule, _FabricOptimizer, _FabricDataLoader))):
                    state[key] = value
        return remainder

    def load_raw(
        self, path: str | Path, obj: nn.Module | Optimizer, strict: bool = True, *, weights_only: bool | None = None
    ) -> None:
        """Load a raw state dict file (plain `torch.save(model.state_dict())`) into a module or optimizer (the
        strategy's `load_checkpoint` with the object as `state`)."""
        self._strategy.load_checkpoint(path=path, state=unwrap_objects(obj), strict=strict, weights_only=weights_only)

    def launch(self, function: Callable[..., Any] = _do_nothing, *args: Any, **kwargs: Any) -> Any:
        """Start the processes (the strategy's `launcher.launch`, when it has a launcher) and join them (the strategy's
        `setup_environment`, in each process), then run `function(fabric, *args, **kwargs)`.

        Returns:
            What the function returned (rank 0's, for `ddp_spawn`/`ddp_fork`).

        Raises:
            RuntimeError: the script was started by `fabric run` (its processes exist already).
            TypeError: a function that is not callable or takes no argument, or a spawning strategy without one.
        """
        if os.environ.get("LT_CLI_USED") == "1":
            raise RuntimeError(
                "This script was launched through the CLI, and processes have already been created. Calling "
                " `.launch()` again is not allowed."
            )
        check_launch_function(function, self._strategy, _do_nothing)
        self._launched = True
        return launch_function(self._strategy, function, self, *args, **kwargs)

    def _check_launched(self) -> None:  # one process drives all devices of SingleDevice/DataParallel: no launch
        if not self._launched and not isinstance(self._strategy, (SingleDeviceStrategy, DataParallelStrategy)):
            raise RuntimeError(
                "To use Fabric with more than one device, you must call `.launch()` or use the CLI:"
                " `fabric run --help`."
            )

    def call(self, hook_name: str, *args: Any, **kwargs: Any) -> None:
        """Call `hook_name(*args, **kwargs)` on every callback that has it (keyword arguments its signature does
        not take are left out)."""
        call_hooks(self._callbacks, hook_name, args, kwargs)

    def log(self, name: str, value: Any, step: int | None = None) -> None:
        """Log one scalar (a tensor is detached and turned into a number) to every logger."""
        self.log_dict({name: value}, step=step)

    def log_dict(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log several scalars to every logger."""
        scalars = convert_tensors_to_scalars(dict(metrics))
        for logger in self._loggers:
            logger.log_metrics(metrics=scalars, step=step)

    @staticmethod
    def seed_everything(seed: int | None = None, workers: bool | None = None, verbose: bool = True) -> int:
        """Seed Python, NumPy and torch (dataloader workers too, unless `workers=False`); returns the seed."""
        return seed_everything(seed=seed, workers=True if workers is None else workers, verbose=verbose)
