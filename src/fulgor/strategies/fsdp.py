"""FSDPStrategy: DDP's processes and collectives, with the parameters, gradients and optimizer state sharded across
ranks by torch's FSDP2 (`fully_shard`); checkpoints hold full (gathered) state dicts that load into a plain module."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from functools import partial
from typing import Any

import torch
from torch import nn

from fulgor.accelerators import Accelerator
from fulgor.checkpoint_io import CheckpointIO
from fulgor.errors import MisconfigurationException
from fulgor.precision import Precision
from fulgor.strategies.cluster_environment import ClusterEnvironment
from fulgor.strategies.ddp import DEFAULT_TIMEOUT, DDPStrategy, _StepRouter

SHARDING_STRATEGIES = ("FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD")
STATE_DICT_TYPES = ("full",)
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
        state_dict_type: "full": checkpoints hold the full state dict gathered on rank 0 (loadable anywhere).
        process_group_backend: "gloo", "nccl", ...; default nccl on CUDA, gloo otherwise.
        timeout: how long collectives and fulgor's barriers wait for a missing process.
        start_method: how the ranks start, as for `DDPStrategy`.
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
        state_dict_type: str = "full",
        process_group_backend: str | None = None,
        timeout: timedelta | None = DEFAULT_TIMEOUT,
        start_method: str = "popen",
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
        )
        sharding = getattr(sharding_strategy, "name", sharding_strategy)  # also torch's ShardingStrategy enum
        if not isinstance(sharding, str) or sharding.upper() not in SHARDING_STRATEGIES:
            raise MisconfigurationException(
                f"`FSDPStrategy(sharding_strategy={sharding_strategy!r})` is invalid. Choose one of"
                f" {', '.join(SHARDING_STRATEGIES)}."
            )
        if state_dict_type not in STATE_DICT_TYPES:
            raise MisconfigurationException(
                f"`FSDPStrategy(state_dict_type={state_dict_type!r})` is not supported by fulgor: checkpoints hold the"
                " full state dict. Use `state_dict_type='full'`."
            )
        self.sharding_strategy = sharding.upper()
        self.auto_wrap_policy = auto_wrap_policy
        self.cpu_offload = cpu_offload
        self.state_dict_type = state_dict_type
        self._fsdp_kwargs = kwargs

    # ------------------------------------------------------------------ model
    def setup_module(self, module: nn.Module) -> nn.Module:
        """Move the module to this rank's device and shard it (once: `validate` after `fit` reuses the shards)."""
        runner = self._runner
        if isinstance(runner, _StepRouter) and runner.module is module:
            self.model = runner
            return runner
        from torch.distributed.fsdp import fully_shard

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
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import CPUOffloadPolicy

        device = self.root_device.type
        replicas = {"FULL_SHARD": 1, "SHARD_GRAD_OP": 1, "NO_SHARD": self.world_size, "HYBRID_SHARD": self.num_nodes}
        copies = replicas[self.sharding_strategy]
        if copies > 1:  # FSDP2 expresses replication as a 2-D mesh: replicate across rows, shard within one
            mesh = init_device_mesh(device, (copies, self.world_size // copies), mesh_dim_names=("replicate", "shard"))
        else:
            mesh = init_device_mesh(device, (self.world_size,))
        options: dict[str, Any] = {"mesh": mesh, "reshard_after_forward": self.sharding_strategy != "SHARD_GRAD_OP"}
        if self.cpu_offload:
            options["offload_policy"] = CPUOffloadPolicy(pin_memory=device == "cuda")
        options.update(self._fsdp_kwargs)
        return options

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
    def _full_options(self, cpu_offload: bool = False) -> Any:
        from torch.distributed.checkpoint.state_dict import StateDictOptions

        return StateDictOptions(full_state_dict=True, cpu_offload=cpu_offload)

    def lightning_module_state_dict(self) -> dict[str, Any]:
        """The full module state dict on CPU, gathered on rank 0 (an empty dict on the other ranks).

        A collective: every rank must call it (fulgor's checkpointing does).
        """
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        assert self._module is not None, "setup_module runs before any checkpoint"
        return get_model_state_dict(self._module, options=self._full_options(cpu_offload=True))

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """The full optimizer state on CPU, keyed by parameter name, on rank 0 (empty elsewhere); a collective."""
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        assert self._module is not None, "setup_module runs before any checkpoint"
        return get_optimizer_state_dict(self._module, optimizer, options=self._full_options(cpu_offload=True))

    def load_optimizer_state(self, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        """Shard a full optimizer state (as `optimizer_state` returns it; every rank holds it) into `optimizer`."""
        from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

        assert self._module is not None, "setup_module runs before the training state is restored"
        if not _holds_tensors(state.get("state")):
            # torch cannot distribute a state without tensors (plain SGD): only the hyperparameters need restoring.
            own = optimizer.state_dict()["param_groups"]
            groups = [{**saved, "params": mine["params"]} for saved, mine in zip(state["param_groups"], own)]
            optimizer.load_state_dict({"state": {}, "param_groups": groups})
            return
        set_optimizer_state_dict(self._module, optimizer, state, options=self._full_options())


def _holds_tensors(tree: Any) -> bool:
    if isinstance(tree, dict):
        return any(_holds_tensors(v) for v in tree.values())
    return isinstance(tree, torch.Tensor) and tree.dim() > 0


def _is_instance(module: nn.Module, classes: tuple[type[nn.Module], ...]) -> bool:
    return isinstance(module, classes)
