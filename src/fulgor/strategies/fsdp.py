"""FSDPStrategy: DDP's processes and collectives, with the parameters, gradients and optimizer state sharded across
ranks by torch's FSDP2 (`fully_shard`); checkpoints are full (gathered) files or sharded folders (Lightning's layout),
modules can be created on the meta device and materialised when sharded."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh

from fulgor.accelerators import Accelerator
from fulgor.checkpoint_io import CheckpointIO
from fulgor.checkpointing import load_sharded_metadata
from fulgor.errors import MisconfigurationException
from fulgor.fsdp_precision_config import to_fsdp2_policy
from fulgor.precision import Precision
from fulgor.strategies import fsdp_checkpoint as ckpt
from fulgor.strategies.cluster_environment import ClusterEnvironment
from fulgor.strategies.ddp import DEFAULT_TIMEOUT, DDPStrategy, _StepRouter

SHARDING_STRATEGIES = ("FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD")
STATE_DICT_TYPES = ("full", "sharded")
_STEPS = frozenset({"training_step", "validation_step", "test_step", "predict_step"})
AutoWrapPolicy = Callable[[nn.Module], bool] | Iterable[type[nn.Module]]


class FSDPStrategy(DDPStrategy):
    """Fully sharded data parallel: each rank keeps 1/world_size of every parameter, gradient and optimizer state.

    The processes start as with `strategy="ddp"` (gloo on CPU, nccl on CUDA). Every step (training and evaluation)
    runs inside the sharded root's forward, so FSDP gathers the parameters it needs and frees them afterwards. Outside
    a step the module's parameters are `DTensor` shards; `lightning_module_state_dict()` gathers them.

    Args:
        accelerator, parallel_devices, cluster_environment, checkpoint_io, precision_plugin: as for `DDPStrategy`.
        sharding_strategy: "FULL_SHARD" (gather parameters again for backward), "SHARD_GRAD_OP" (keep them gathered
            from forward to backward), "NO_SHARD" (replicate, like DDP) or "HYBRID_SHARD" (shard within a node,
            replicate across nodes).
        auto_wrap_policy: which submodules get their own FSDP unit (gathered and freed on their own): a set of module
            classes, or a callable `policy(module) -> bool`. None: one unit for the whole model.
        cpu_offload: keep the sharded parameters and their gradients in CPU memory (the optimizer steps on the CPU).
        state_dict_type: "full": a checkpoint is one file with the full state gathered on rank 0 (loadable anywhere);
            "sharded": a folder written by `torch.distributed.checkpoint` (one shard file per rank, `meta.pt` with the
            rest), cheap to write and read back at any world size. None (default): "full" for the Trainer's
            checkpoints and "sharded" for Fabric's `save`, the defaults of Lightning's two FSDP strategies.
        process_group_backend: "gloo", "nccl", ...; default nccl on CUDA, gloo otherwise.
        timeout: how long collectives and fulgor's barriers wait for a missing process.
        start_method: how the ranks start, as for `DDPStrategy`.
        mixed_precision: the dtypes FSDP computes and reduces gradients in: a `torch.distributed.fsdp.MixedPrecision`
            (Lightning's type: its parameter and reduction dtypes apply) or FSDP2's `MixedPrecisionPolicy`. None: FSDP
            keeps full precision and the precision plugin's autocast does the mixed precision.
        device_mesh: `(replicas, shards)` (a 2-D mesh: replicate across rows, shard within one) or a `DeviceMesh`;
            default from `sharding_strategy`.
        precision: Lightning Fabric's name for `precision_plugin`.
        **kwargs: passed to `torch.distributed.fsdp.fully_shard` (`reshard_after_forward`, `mp_policy`, ...).
    """

    strategy_name = "fsdp"
    _reverts_layer_sync = False

    def __init__(
        self,
        accelerator: Accelerator | None = None,
        parallel_devices: list[torch.device] | None = None,
        cluster_environment: ClusterEnvironment | None = None,
        checkpoint_io: CheckpointIO | None = None,
        precision_plugin: Precision | None = None,
        sharding_strategy: str = "FULL_SHARD",
        auto_wrap_policy: AutoWrapPolicy | None = None,
        cpu_offload: bool = False,
        state_dict_type: str | None = None,
        process_group_backend: str | None = None,
        timeout: timedelta | None = DEFAULT_TIMEOUT,
        start_method: str = "popen",
        mixed_precision: Any = None,
        device_mesh: tuple[int, int] | DeviceMesh | None = None,
        precision: Precision | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            accelerator=accelerator,
            parallel_devices=parallel_devices,
            cluster_environment=cluster_environment,
            checkpoint_io=checkpoint_io,
            precision_plugin=precision_plugin,
            process_group_backend=process_group_backend,
            timeout=timeout,
            start_method=start_method,
            precision=precision,
        )
        sharding = getattr(sharding_strategy, "name", sharding_strategy)  # also torch's ShardingStrategy enum
        if not isinstance(sharding, str) or sharding.upper() not in SHARDING_STRATEGIES:
            raise MisconfigurationException(
                f"`FSDPStrategy(sharding_strategy={sharding_strategy!r})` is invalid. Choose one of"
                f" {', '.join(SHARDING_STRATEGIES)}."
            )
        if state_dict_type is not None and state_dict_type not in STATE_DICT_TYPES:
            raise ValueError(
                f"`FSDPStrategy(state_dict_type={state_dict_type!r})` is invalid: use 'full' (one file with the"
                " gathered state) or 'sharded' (a folder with one shard file per rank)."
            )
        if mixed_precision is not None:
            to_fsdp2_policy(mixed_precision)  # refuses anything else now, not at the first run
        self.sharding_strategy = sharding.upper()
        self.auto_wrap_policy = auto_wrap_policy
        self.cpu_offload = cpu_offload
        self._state_dict_type = state_dict_type
        self.mixed_precision = mixed_precision
        self.device_mesh = device_mesh
        self._fsdp_kwargs = kwargs

    @property
    def state_dict_type(self) -> str:
        """How the Trainer's checkpoints are written: "full" or "sharded" (Fabric's `save` uses "sharded" unless
        "full" was given)."""
        return self._state_dict_type or "full"

    # ------------------------------------------------------------------ model
    def setup_module(self, module: nn.Module) -> nn.Module:
        """Move the module to this rank's device and shard it (once: `validate` after `fit` reuses the shards)."""
        runner = self._runner
        if isinstance(runner, _StepRouter) and runner.module is module:
            self.model = runner
            return runner
        from torch.distributed.fsdp import fully_shard

        materialize(module, self.root_device)  # created on the meta device by `init_module(empty_init=True)`
        module = module.to(self.root_device)
        if self._layer_sync is not None and self._fitting():
            module = self._layer_sync.apply(module)  # before sharding: the shards then belong to the new layers
        self._module = module
        router = _StepRouter(self._module)
        options = self._shard_options()
        for submodule in self._units(self._module):
            fully_shard(submodule, **options)
        fully_shard(router, **options)
        self._runner = self.model = router
        return router

    def _shard_options(self) -> dict[str, Any]:
        from torch.distributed.fsdp import CPUOffloadPolicy

        device = self.root_device.type
        options: dict[str, Any] = {
            "mesh": self._mesh(),
            "reshard_after_forward": self.sharding_strategy != "SHARD_GRAD_OP",
        }
        if self.cpu_offload:
            options["offload_policy"] = CPUOffloadPolicy(pin_memory=device == "cuda")
        if self.mixed_precision is not None:
            options["mp_policy"] = to_fsdp2_policy(self.mixed_precision)
        options.update(self._fsdp_kwargs)
        return options

    def _mesh(self) -> Any:
        from torch.distributed.device_mesh import init_device_mesh

        if isinstance(self.device_mesh, DeviceMesh):
            return self.device_mesh
        device = self.root_device.type
        replicas = {"FULL_SHARD": 1, "SHARD_GRAD_OP": 1, "NO_SHARD": self.world_size, "HYBRID_SHARD": self.num_nodes}
        shape = self.device_mesh or (
            replicas[self.sharding_strategy],
            self.world_size // replicas[self.sharding_strategy],
        )
        if shape[0] > 1:  # FSDP2 expresses replication as a 2-D mesh: replicate across rows, shard within one
            return init_device_mesh(device, tuple(shape), mesh_dim_names=("replicate", "shard"))
        return init_device_mesh(device, (self.world_size,))

    @property
    def mixed_precision_config(self) -> Any:
        """The `mixed_precision` given (Lightning's `MixedPrecision` or FSDP2's policy), None when FSDP keeps full
        precision (fulgor does not take the precision plugin's config: see docs/distributed.md)."""
        return self.mixed_precision

    @contextmanager
    def tensor_init_context(self, empty_init: bool | None = None) -> Iterator[None]:
        """As for every strategy; with `empty_init=True` the tensors go to the meta device (no memory, no init), and
        `setup_module` materialises them (`reset_parameters()` of each submodule) before sharding."""
        if not empty_init:
            with super().tensor_init_context(empty_init):
                yield
            return
        with torch.device("meta"), self.precision_plugin.tensor_init_context():
            yield

    @contextmanager
    def module_init_context(self, empty_init: bool | None = None) -> Iterator[None]:
        """`Fabric.init_module`: as `tensor_init_context` (meta device with `empty_init=True`)."""
        if not empty_init:
            with super().module_init_context(empty_init):
                yield
            return
        with torch.device("meta"), self.precision_plugin.module_init_context():
            yield

    def module_to_device(self, module: nn.Module) -> None:
        """Materialise a meta-device module on the root device (`reset_parameters()`), else move it there."""
        materialize(module, self.root_device)
        module.to(self.root_device)

    def _units(self, module: nn.Module) -> list[nn.Module]:
        """The submodules the auto-wrap policy selects, innermost first (FSDP2 shards children before parents)."""
        policy = self.auto_wrap_policy
        if policy is None:
            return []
        if not callable(policy):
            classes = tuple(policy)
            policy = partial(_is_instance, classes=classes)
        return [m for m in reversed(list(module.modules())) if m is not module and policy(m)]

    def step_fn(self, module: nn.Module, name: str) -> Any:
        """Every step runs through the sharded root, whose forward hooks gather the parameters."""
        if name not in _STEPS:
            return getattr(module, name)
        return partial(self._run_step, name)

    @contextmanager
    def no_backward_sync(self) -> Iterator[None]:
        """Keep gradients unreduced while accumulating (`set_requires_gradient_sync(False)`)."""
        runner = self._runner
        from torch.distributed.fsdp import FSDPModule

        if not isinstance(runner, FSDPModule):
            yield
            return
        runner.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            runner.set_requires_gradient_sync(True)

    def teardown(self) -> None:
        """As DDP, but the model stays sharded (as in Lightning): the shards are what the optimizer stepped on."""
        runner = self._runner
        super().teardown()
        self._runner = runner

    # ------------------------------------------------------------------ state dicts
    def _sharded_module(self) -> nn.Module:
        assert self._module is not None, "setup_module runs before any checkpoint"
        return self._module

    def lightning_module_state_dict(self) -> dict[str, Any]:
        """The module's state dict for a Trainer checkpoint: gathered on rank 0's CPU (an empty dict elsewhere), or
        with `state_dict_type="sharded"` this rank's shards. A collective: every rank must call it."""
        return ckpt.module_state(self._sharded_module(), full=self.state_dict_type != "sharded")

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """The optimizer state for a Trainer checkpoint: full on rank 0 in torch's layout (keyed by parameter index,
        so it loads into a plain optimizer), or this rank's shards keyed by parameter name; a collective."""
        optimizer = getattr(optimizer, "_optimizer", optimizer)  # a LightningOptimizer
        if self.state_dict_type == "sharded":
            return ckpt.optimizer_state(self._sharded_module(), optimizer, full=False)
        state = ckpt.optimizer_state(self._sharded_module(), optimizer, full=True)
        return ckpt.to_param_ids(state) if state else state

    def get_module_state_dict(self, module: nn.Module) -> dict[str, Any]:
        """Fabric's full state dict of `module`: gathered on rank 0's CPU; a collective."""
        return ckpt.module_state(module, full=True)

    def get_optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """Fabric's full optimizer state, keyed by parameter name (as Lightning Fabric), on rank 0; a collective."""
        return ckpt.optimizer_state(self._sharded_module(), optimizer, full=True)

    def load_module_state_dict(self, module: nn.Module, state_dict: Mapping[str, Any], strict: bool = True) -> None:
        """Load a full state dict (every rank holds it) into `module`, sharded or not."""
        ckpt.load_full_module(module, state_dict, strict=strict)

    def load_optimizer_state(self, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        """Shard a full optimizer state (keyed by parameter index or name; every rank holds it) into `optimizer`."""
        ckpt.load_full_optimizer(self._sharded_module(), optimizer, state)

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(
        self,
        path: Any = None,
        state: Any = None,
        storage_options: Any | None = None,
        filter: Any = None,
        *,
        checkpoint: Mapping[str, Any] | None = None,
        filepath: Any = None,
    ) -> None:
        """Both Lightning forms, as `Strategy.save_checkpoint`; every rank must call it. With `state_dict_type`
        "sharded" (Fabric's default), `path` becomes a folder: a shard file per rank and `meta.pt` with the values
        that are neither the (one) sharded module nor its optimizers; "full" writes one file from rank 0.

        Raises:
            TypeError: `storage_options` (FSDP writes its files itself).
            NotImplementedError: a `filter` with sharded checkpoints (torch cannot load filtered shards).
            ValueError: the state holds no sharded module, or several.
            IsADirectoryError: a full checkpoint's path is a folder that is not a sharded checkpoint.
        """
        if checkpoint is not None or isinstance(path, Mapping):
            super().save_checkpoint(path, state, storage_options, filter, checkpoint=checkpoint, filepath=filepath)
            return
        _refuse_storage_options(storage_options)
        sharded = (self._state_dict_type or "sharded") == "sharded"
        if filter is not None and sharded:
            raise NotImplementedError(
                "FSDP doesn't support loading sharded filtered checkpoints, so saving them is disabled."
            )
        target = Path(self.broadcast(os.fspath(path)))
        state = dict(state or {})
        if sharded:
            tensors, metadata = ckpt.sharded_state(state)
            ckpt.write_sharded(target, tensors, metadata, self.is_global_zero, self.barrier)
            return
        ckpt.the_module(state, "save")
        self._clear_for_file(target)
        super().save_checkpoint(target, state, None, filter)
        self.barrier()

    def _save_checkpoint_dict(self, checkpoint: dict[str, Any], filepath: Any, storage_options: Any | None) -> None:
        """The Trainer form: a sharded folder (`model`, `optimizer_0`, ... shards and `meta.pt`) or the full file."""
        if self.state_dict_type != "sharded":
            self._clear_for_file(filepath)
            super()._save_checkpoint_dict(checkpoint, filepath, storage_options)
            return
        _refuse_storage_options(storage_options)
        tensors = {"model": checkpoint.pop("state_dict")}
        tensors.update({f"optimizer_{i}": s for i, s in enumerate(checkpoint.pop("optimizer_states", []))})
        target = Path(self.broadcast(os.fspath(filepath)))
        ckpt.write_sharded(target, tensors, checkpoint, self.is_global_zero, self.barrier)

    def _clear_for_file(self, path: Any) -> None:
        """A full checkpoint replaces a sharded folder of the same name (Lightning's rule); any other folder stays."""
        if not isinstance(path, (str, os.PathLike)) or not os.path.isdir(path):
            return
        if not ckpt.is_sharded_checkpoint(path):
            raise IsADirectoryError(f"The checkpoint path exists and is a directory: {path}")
        self.barrier()  # every rank has seen the folder before rank 0 removes it
        if self.is_global_zero:
            self.checkpoint_io.remove_checkpoint(path)

    def load_checkpoint(
        self,
        path: Any = None,
        state: Any = None,
        strict: bool = True,
        weights_only: bool | None = None,
        *,
        checkpoint_path: Any = None,
    ) -> dict[str, Any]:
        """Both Lightning forms, from a sharded folder or a full file.

        Trainer (no `state`, in a run): the checkpoint dict; a sharded folder's shards are read whole (the model is
        not sharded yet when the Trainer restores it) and given as `state_dict` and `optimizer_states`.
        Fabric: `state` (a module, or a dict with one sharded module, its optimizers and other values) is restored in
        place (from a sharded folder each rank reads only its shards); returns what was not restored.
        """
        path = path if path is not None else checkpoint_path
        if isinstance(state, bool):  # the Trainer form's positional `load_checkpoint(checkpoint_path, weights_only)`
            state, weights_only = None, state
        if not state and self._lightning_module is not None:
            return self._load_trainer_checkpoint(path, weights_only)
        return ckpt.load_state(Path(self.broadcast(os.fspath(path))), state, strict, weights_only)

    def _load_trainer_checkpoint(self, path: Any, weights_only: bool | None) -> dict[str, Any]:
        # The Trainer loads the weights before `setup_module`: a module still on the meta device
        # (`init_module(empty_init=True)`) needs storage first, or loading into it would do nothing.
        if self._lightning_module is not None:
            materialize(self._lightning_module, self.root_device)
        if not ckpt.is_sharded_checkpoint(path):
            return super().load_checkpoint(path, weights_only=weights_only)
        folder = Path(path)
        checkpoint = load_sharded_metadata(folder / ckpt.METADATA_FILENAME, weights_only)
        shards = ckpt.read_sharded(folder)
        checkpoint["state_dict"] = shards.pop("model")
        count = sum(1 for key in shards if key.startswith("optimizer_"))
        if count:
            checkpoint["optimizer_states"] = [shards[f"optimizer_{i}"] for i in range(count)]
        return checkpoint

    def remove_checkpoint(self, filepath: Any) -> None:
        """Delete a checkpoint file or sharded folder, on global rank 0 only."""
        if self.is_global_zero:
            self.checkpoint_io.remove_checkpoint(filepath)


# Evaluated, not a postponed string: jsonargparse (LightningCLI) reads it to parse `--strategy.device_mesh=[1, 4]`.
FSDPStrategy.__init__.__annotations__["device_mesh"] = tuple[int, int] | DeviceMesh | None


def _refuse_storage_options(storage_options: Any) -> None:
    if storage_options is not None:
        raise TypeError(
            "`FSDPStrategy.save_checkpoint(..., storage_options=...)` is not supported because `FSDPStrategy` does"
            " not use the `CheckpointIO`."
        )


def materialize(module: nn.Module, device: torch.device) -> None:
    """Give every submodule with meta-device parameters or buffers real storage on `device` and initialise it with
    its `reset_parameters()` (a module created under `init_module(empty_init=True)`).

    Raises:
        TypeError: a submodule with meta tensors has no `reset_parameters()` to initialise them.
    """
    for submodule in module.modules():
        own = [*submodule.parameters(recurse=False), *submodule.buffers(recurse=False)]
        if not any(t.is_meta for t in own):
            continue
        reset = getattr(submodule, "reset_parameters", None)
        if not callable(reset):
            raise TypeError(
                f"Materialization requires that the `{type(submodule).__name__}.reset_parameters` method is"
                " implemented. This method is used to initialize any children parameters or buffers in this module."
            )
        submodule.to_empty(device=device, recurse=False)
        reset()


def _is_instance(module: nn.Module, classes: tuple[type[nn.Module], ...]) -> bool:
    return isinstance(module, classes)
