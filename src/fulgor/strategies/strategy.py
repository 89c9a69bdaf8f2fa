"""The Strategy ABC: the device, the model's placement, the collectives the loop and `self.log` use, and the parts
Lightning hangs on a strategy (accelerator, precision plugin, checkpoint IO). One class answers both Lightning APIs: the
Trainer's (`backward(closure_loss, optimizer)`, `save_checkpoint(checkpoint, filepath)`) and Fabric's."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.overrides import TorchFunctionMode

from fulgor.accelerators import Accelerator
from fulgor.checkpoint_io import AsyncCheckpointIO, CheckpointIO, TorchCheckpointIO
from fulgor.data.transfer import move_data_to_device
from fulgor.precision import Precision
from fulgor.strategies.state_files import StateFilter, read_state_file, restore_state, saveable_state


class Strategy(ABC):
    """Owns the root device, moves the model and batches there, and implements reduce/gather/broadcast/barrier.

    Args:
        accelerator: the hardware (default: from the Trainer's or Fabric's `accelerator` flag).
        checkpoint_io: how checkpoint files are written (default: `TorchCheckpointIO`, or `plugins=`).
        precision_plugin: the precision (default: from the `precision` flag, or `plugins=`): the Trainer's name.
        precision: the same, under Lightning Fabric's name (give one of the two).

    Raises:
        ValueError: both `precision_plugin` and `precision` were given, as different objects.
    """

    def __init__(
        self,
        accelerator: Accelerator | None = None,
        checkpoint_io: CheckpointIO | None = None,
        precision_plugin: Precision | None = None,
        precision: Precision | None = None,
    ) -> None:
        if precision is not None and precision_plugin is not None and precision is not precision_plugin:
            raise ValueError(
                f"`{type(self).__name__}(precision_plugin={precision_plugin!r}, precision={precision!r})`: both name"
                " the precision (Trainer and Fabric spelling). Pass only one of them."
            )
        self.model: nn.Module | None = None
        self._lightning_module: nn.Module | None = None
        self.accelerator = accelerator
        self._checkpoint_io = checkpoint_io
        self._precision_plugin = precision_plugin if precision_plugin is not None else precision
        self._launcher: Any = None  # a strategy that starts processes sets one (DDP's launchers)
        self._optimizers: list[Optimizer] = []

    def connect(self, model: nn.Module) -> None:
        """Attach the LightningModule this strategy runs (the Trainer does it as each run starts)."""
        self._lightning_module = model

    def setup(self, trainer: Any) -> None:
        """Place the connected LightningModule for a Trainer run: converted by the precision, then wrapped and moved
        by `setup_module`. The Trainer calls it in every run after the `setup`/`configure_model` hooks (and after the
        checkpoint's weights are loaded, unless `restore_checkpoint_after_setup`); override it to add steps, calling
        `super().setup(trainer)`."""
        module = self._lightning_module
        if module is None:
            raise RuntimeError(
                f"`{type(self).__name__}.setup(trainer)` needs a LightningModule: call `strategy.connect(model)` first"
                " (the Trainer does it as each run starts)."
            )
        self.setup_module(self.precision_plugin.convert_module(module))

    @property
    def restore_checkpoint_after_setup(self) -> bool:
        """Whether the Trainer loads `ckpt_path` (weights, datamodule and callback states) only after `setup(trainer)`
        and the `on_fit_start` hooks, instead of before the model is placed. False; a strategy that must set the model
        up before loading into it overrides this to return True."""
        return False

    @property
    def lightning_restore_optimizer(self) -> bool:
        """Whether the Trainer restores the optimizers from a checkpoint through `load_optimizer_state_dict` (the
        schedulers are restored either way). True; a strategy that restores them itself overrides this."""
        return True

    @property
    def optimizers(self) -> list[Optimizer]:
        """The optimizers of the current (or last) Trainer run; outside a run, what was assigned (empty at first)."""
        run = self._trainer_run()
        if run is not None and run.optimizers:
            return list(run.optimizers)
        return self._optimizers

    @optimizers.setter
    def optimizers(self, optimizers: list[Optimizer]) -> None:
        self._optimizers = list(optimizers)

    @property
    def lightning_module(self) -> nn.Module | None:
        """The LightningModule of the current (or last) Trainer run, unwrapped (None under Fabric)."""
        return self._lightning_module

    def _trainer_run(self) -> Any:
        """The Trainer run this strategy serves now (None outside one, e.g. under Fabric): it picks the Trainer form
        of the calls whose Lightning signatures differ between Trainer and Fabric."""
        return getattr(self._lightning_module, "_run", None)

    # ------------------------------------------------------------------ the parts
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
    def precision(self) -> Precision:
        """Lightning Fabric's name for `precision_plugin` (the same object)."""
        return self.precision_plugin

    @precision.setter
    def precision(self, precision: Precision | None) -> None:
        self._precision_plugin = precision

    # ------------------------------------------------------------------ devices and ranks
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
        """What starts this strategy's processes (`launch(function, *args, **kwargs)`), or None: run in place."""
        return self._launcher

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
        constructor and Fabric's; a strategy built with its own accelerator keeps it)."""
        if self.accelerator is None:
            self.accelerator = accelerator

    def setup_environment(self, trainer: Any = None) -> None:
        """Start of every run: prepare the device (the accelerator's `setup_device`, and for a Trainer run its
        `setup(trainer)`); distributed strategies also launch processes and join the process group. Fabric calls it
        without a trainer."""
        if self.accelerator is not None:
            self.accelerator.setup_device(self.root_device)
            if trainer is not None:
                self.accelerator.setup(trainer)

    # ------------------------------------------------------------------ model, optimizers, data
    def setup_module_and_optimizers(
        self, module: nn.Module, optimizers: list[Optimizer], scheduler: Any = None
    ) -> tuple[nn.Module, list[Optimizer], Any]:
        """Set up a module and its optimizers together (`Fabric.setup(model, *optimizers)`): `setup_module`, then
        `setup_optimizer` for each; a strategy that must see both at once overrides this."""
        module = self.setup_module(module)
        return module, [self.setup_optimizer(optimizer) for optimizer in optimizers], scheduler

    def setup_module(self, module: nn.Module) -> nn.Module:
        """Wrap the module for this strategy (distributed strategies: DDP/FSDP) and return what runs forward. In a
        Trainer run the model is also moved to the root device (Fabric moves it first, with `module_to_device`)."""
        if self._trainer_run() is not None or module is self._lightning_module:
            module = module.to(self.root_device)
        self.model = module
        return module

    def setup_optimizer(self, optimizer: Optimizer) -> Optimizer:
        """Prepare an optimizer for this strategy (`Fabric.setup_optimizers`): unchanged unless a strategy wraps it."""
        return optimizer

    def module_to_device(self, module: nn.Module) -> None:
        """Move the module's parameters and buffers to the root device, in place."""
        module.to(self.root_device)

    def process_dataloader(self, dataloader: Any) -> Any:
        """The dataloader the loop iterates (`Fabric.setup_dataloaders`): unchanged unless a strategy wraps it."""
        return dataloader

    def batch_to_device(self, batch: Any, device: torch.device | None = None, dataloader_idx: int = 0) -> Any:
        """`batch` (tensors in any nesting) moved to `device`, by default the root device."""
        return move_data_to_device(batch, device or self.root_device)

    def step_fn(self, module: nn.Module, name: str) -> Any:
        """The callable that runs `module.<name>` (a step method); distributed strategies route it through
        their wrapper so gradient synchronisation sees a forward call."""
        return getattr(module, name)

    @contextmanager
    def tensor_init_context(self, empty_init: bool | None = None) -> Iterator[None]:
        """Tensors created inside go to the root device, in the precision's dtype (`Trainer.init_module`,
        `Fabric.init_tensor`). A strategy that creates them otherwise (sharded, on the meta device when `empty_init`)
        overrides this. With `empty_init=True` the `torch.nn.init` calls are skipped, as in Lightning."""
        with SkipInit(enabled=bool(empty_init)), self.root_device, self.precision_plugin.tensor_init_context():
            yield

    @contextmanager
    def module_init_context(self, empty_init: bool | None = None) -> Iterator[None]:
        """Modules built inside get their parameters on the root device in the precision's dtype
        (`Fabric.init_module`); with `empty_init=True` the `torch.nn.init` calls are skipped (weights a checkpoint
        overwrites next). A sharding strategy overrides this to create them on the meta device."""
        with SkipInit(enabled=bool(empty_init)), self.root_device, self.precision_plugin.module_init_context():
            yield

    # ------------------------------------------------------------------ the training step
    def backward(self, tensor: Tensor, *args: Any, **kwargs: Any) -> Any:
        """The backward pass of `tensor`, in either Lightning form.

        Inside a Trainer run, `backward(closure_loss, optimizer, *args, **kwargs)`: the precision's loss scaling, the
        `on_before_backward` hooks, `LightningModule.backward(loss, *args, **kwargs)`, the `on_after_backward` hooks;
        returns `closure_loss` (`optimizer` is the one being stepped, None in manual optimization). Otherwise
        (Fabric), `backward(tensor, module, *args, **kwargs)`: the precision's `pre_backward`, `backward` and
        `post_backward`; returns None.
        """
        run = self._trainer_run()
        if run is not None:
            run.backward(tensor, *args[1:], **kwargs)
            return tensor
        module = args[0] if args else kwargs.pop("module", None)
        precision = self.precision_plugin
        precision.pre_backward(tensor, module)
        precision.backward(tensor, module, *args[1:], **kwargs)
        precision.post_backward(tensor, module)
        return None

    def optimizer_step(
        self, optimizer: Any, closure: Callable[[], Any] | None = None, model: Any = None, **kwargs: Any
    ) -> Any:
        """Step `optimizer` through the precision (the loss scaler's step for "16-mixed"); `closure` and `kwargs` go
        to `optimizer.step`. Returns what the step returned."""
        if closure is not None:
            kwargs["closure"] = closure
        return self.precision_plugin.optimizer_step(optimizer, **kwargs)

    def clip_gradients_norm(
        self,
        module: nn.Module,
        optimizer: Optimizer,
        max_norm: float | int,
        norm_type: float | int = 2.0,
        error_if_nonfinite: bool = True,
    ) -> Tensor:
        """Clip the gradients of `optimizer`'s parameters to a total `norm_type`-norm of `max_norm` (unscaled first
        for "16-mixed").

        Returns:
            The total norm before clipping.
        """
        self.precision_plugin.unscale_gradients(optimizer)
        parameters = list(self.precision_plugin.main_params(optimizer))
        return torch.nn.utils.clip_grad_norm_(
            parameters, max_norm=max_norm, norm_type=norm_type, error_if_nonfinite=error_if_nonfinite
        )

    def clip_gradients_value(self, module: nn.Module, optimizer: Optimizer, clip_val: float | int) -> None:
        """Clamp every gradient of `optimizer`'s parameters to [-clip_val, clip_val] (unscaled first for
        "16-mixed")."""
        self.precision_plugin.unscale_gradients(optimizer)
        parameters = list(self.precision_plugin.main_params(optimizer))
        torch.nn.utils.clip_grad_value_(parameters, clip_value=clip_val)

    @contextmanager
    def no_backward_sync(self) -> Iterator[None]:
        """Skip gradient synchronisation while accumulating (no-op on one process)."""
        yield

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(
        self,
        path: Any = None,
        state: Any = None,
        storage_options: Any | None = None,
        filter: StateFilter | None = None,
        *,
        checkpoint: Mapping[str, Any] | None = None,
        filepath: Any = None,
    ) -> None:
        """Write a checkpoint through the checkpoint IO plugin, on global rank 0 only (atomically, with fulgor's
        `TorchCheckpointIO`). Both Lightning forms are accepted:

        - Fabric: `save_checkpoint(path, state, storage_options=None, filter=None)`: `state` maps names to modules,
          optimizers, objects with `state_dict()` and plain values; each object is saved as its state dict, and
          `filter[name](key, value)` keeps only the entries of that state dict it accepts.
        - Trainer: `save_checkpoint(checkpoint, filepath, storage_options=None)`: `checkpoint` is the finished dict
          (a Mapping as the first argument, or the `checkpoint=`/`filepath=` keywords, selects this form).
        """
        if checkpoint is not None or isinstance(path, Mapping):
            given = checkpoint if checkpoint is not None else path
            self._save_checkpoint_dict(
                given if isinstance(given, dict) else dict(given),  # the same dict: its resume record is keyed by id
                filepath if filepath is not None else state,
                storage_options,
            )
            return
        converted = saveable_state(self, state if state is not None else {}, filter)
        if self.is_global_zero:
            self.checkpoint_io.save_checkpoint(checkpoint=converted, path=path, storage_options=storage_options)

    def _save_checkpoint_dict(self, checkpoint: dict[str, Any], filepath: Any, storage_options: Any | None) -> None:
        """The Trainer form: the finished checkpoint dict, written from global rank 0."""
        if self.is_global_zero:
            self.checkpoint_io.save_checkpoint(checkpoint, filepath, storage_options=storage_options)

    def remove_checkpoint(self, filepath: Any) -> None:
        """Delete a checkpoint through the checkpoint IO plugin, on global rank 0 only."""
        if self.is_global_zero:
            self.checkpoint_io.remove_checkpoint(filepath)

    def load_checkpoint(
        self,
        path: Any = None,
        state: Any = None,
        strict: bool = True,
        weights_only: bool | None = None,
        *,
        checkpoint_path: Any = None,
    ) -> dict[str, Any]:
        """Read a checkpoint through the checkpoint IO plugin and restore `state` from it in place.

        Args:
            path: the file (the Trainer form's `checkpoint_path=` keyword is accepted too).
            state: None or {} (the whole checkpoint is returned, as the Trainer form does), a module or an optimizer
                (the file holds its raw state dict), or a dict whose modules, optimizers and stateful objects are
                restored in place and whose plain values are replaced by the saved ones.
            strict: a key of `state` missing from the checkpoint is an error, and modules load strictly.
            weights_only: restrict unpickling to tensors and plain types (safe, the default for fulgor's files).

        Returns:
            What the checkpoint holds that was not restored into `state` (everything without a `state`).

        Raises:
            KeyError: with `strict`, a key of `state` that the checkpoint lacks.
        """
        path = path if path is not None else checkpoint_path
        if isinstance(state, bool):  # the Trainer form's positional `load_checkpoint(checkpoint_path, weights_only)`
            state, weights_only = None, state
        if not state and self._lightning_module is not None:
            # A Trainer run reads its own checkpoint layout through the plugin (checked for a `state_dict`).
            return self.checkpoint_io.load_checkpoint(path, weights_only=weights_only)
        loaded = read_state_file(self.checkpoint_io, path, weights_only)
        return restore_state(self, loaded, state, strict=strict)

    def get_module_state_dict(self, module: nn.Module) -> dict[str, Any]:
        """The module's state dict as a checkpoint stores it (a sharding strategy gathers the full one)."""
        return module.state_dict()

    def load_module_state_dict(self, module: nn.Module, state_dict: Mapping[str, Any], strict: bool = True) -> None:
        """Load `state_dict` into the module (`strict`: the keys must match)."""
        module.load_state_dict(state_dict, strict=strict)

    def load_optimizer_state_dict(self, checkpoint: Mapping[str, Any]) -> None:
        """Restore each of `optimizers` from the checkpoint's `optimizer_states`, in order (the Trainer calls it when
        resuming a fit, if `lightning_restore_optimizer`)."""
        for optimizer, state in zip(self.optimizers, checkpoint["optimizer_states"]):
            self.load_optimizer_state(optimizer, state)

    def load_optimizer_state(self, optimizer: Optimizer, state: dict[str, Any]) -> None:
        """Load one optimizer's saved state dict into `optimizer` (a sharding strategy shards it first)."""
        optimizer.load_state_dict(state)

    def get_optimizer_state(self, optimizer: Optimizer) -> dict[str, Any]:
        """The optimizer's state dict as a checkpoint stores it (Lightning Fabric's name for `optimizer_state`)."""
        return self.optimizer_state(optimizer)

    def optimizer_state(self, optimizer: Optimizer) -> dict[str, Any]:
        """The optimizer's state dict (a sharding strategy gathers the full one)."""
        state: dict[str, Any] = optimizer.state_dict()
        return state

    # ------------------------------------------------------------------ collectives
    def reduce(self, tensor: Any, group: Any | None = None, reduce_op: Any = "mean") -> Any:
        """Reduce `tensor` across processes with `reduce_op` ("mean", "sum", "max", "min" or a
        `torch.distributed.ReduceOp`) over `group` (default: all processes); the identity on one process.

        Raises:
            TypeError: an operation name was passed as `group` (Lightning's order is `tensor, group, reduce_op`).
        """
        check_reduce_group(group)
        return tensor

    def all_reduce(self, tensor: Any, group: Any | None = None, reduce_op: Any = "mean") -> Any:
        """Lightning Fabric's name for `reduce` (same arguments, same result)."""
        return self.reduce(tensor, group=group, reduce_op=reduce_op)

    def all_gather(self, tensor: Any, group: Any | None = None, sync_grads: bool = False) -> Any:
        """Gather across processes (identity on one process, as in Lightning)."""
        return tensor

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        return obj

    def barrier(self, name: str | None = None) -> None:  # noqa: B027
        """Wait for every process (no-op on one process)."""

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        return decision

    # ------------------------------------------------------------------ the end
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


def check_reduce_group(group: Any) -> None:
    """Refuse an operation name passed where Lightning's `reduce(tensor, group, reduce_op)` takes the group."""
    if isinstance(group, str):
        raise TypeError(
            f"`Strategy.reduce(tensor, group={group!r})`: the second argument is the process group. Pass the"
            f" operation by name: `reduce(tensor, reduce_op={group!r})`."
        )


class SkipInit(TorchFunctionMode):
    """While enabled, `torch.nn.init` functions return their tensor untouched: parameters are allocated but not
    initialised (cheap when a checkpoint overwrites them next)."""

    def __init__(self, enabled: bool) -> None:
        super().__init__()
        self.enabled = enabled

    def __torch_function__(
        self, func: Callable[..., Any], types: Any, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        if self.enabled and getattr(func, "__module__", None) == "torch.nn.init":
            return kwargs["tensor"] if "tensor" in kwargs else args[0]
        return func(*args, **kwargs)
