"""DDPStrategy: one process per device on torch.distributed (gloo on CPU, nccl on CUDA); the training step runs
through `DistributedDataParallel` via a tiny router module, and the collectives the loop and users need."""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from functools import partial
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from fulgor.accelerators import Accelerator
from fulgor.checkpoint_io import CheckpointIO
from fulgor.precision import Precision
from fulgor.rank import log, rank_zero_info, rank_zero_only
from fulgor.stop_request import Preempted
from fulgor.strategies.cluster_environment import ClusterEnvironment
from fulgor.strategies.environments import LightningEnvironment, detect_environment
from fulgor.strategies.launcher import MultiProcessingLauncher, ScriptLauncher, watch_launcher
from fulgor.strategies.parallel import ParallelStrategy
from fulgor.strategies.strategy import check_reduce_group

# torch's default process-group timeout (Lightning's too); a dead peer is caught sooner by the launch watchdogs.
DEFAULT_TIMEOUT = timedelta(minutes=30)
_START_METHODS = ("popen", "spawn", "fork")
_REDUCE_OPS = {"sum": "SUM", "mean": "SUM", "avg": "SUM", "max": "MAX", "min": "MIN", "prod": "PRODUCT"}


class _StepRouter(nn.Module):
    """What DDP wraps: `forward(name, *args)` runs the LightningModule's step `name`, so a step call is a DDP forward
    (gradient hooks, unused-parameter detection, buffer broadcast) without touching the module's own `forward`."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.module, name)(*args, **kwargs)


class DDPStrategy(ParallelStrategy):
    """Distributed data parallel: every process holds the whole model and averages gradients after backward.

    Args:
        accelerator: the hardware (default: from the Trainer's `accelerator` flag).
        parallel_devices: the device of each process on a node (default: from the Trainer's `devices` flag).
        cluster_environment: where the processes come from and meet (default: detected, see `plugins=`).
        checkpoint_io: how checkpoint files are written (default: `TorchCheckpointIO`).
        precision_plugin: the precision (default: from the Trainer's `precision` flag).
        process_group_backend: "gloo", "nccl", ...; default nccl on CUDA, gloo otherwise.
        timeout: how long collectives and fulgor's barriers wait for a missing process.
        start_method: "popen" (re-run the script per rank), "spawn" or "fork" (torch.multiprocessing workers).
        precision: Lightning Fabric's name for `precision_plugin` (give one of the two).
        **kwargs: passed to `torch.nn.parallel.DistributedDataParallel` (`find_unused_parameters`, `static_graph`,
            `gradient_as_bucket_view`, `broadcast_buffers`, ...).
    """

    strategy_name = "ddp"
    _reverts_layer_sync = True  # FSDP keeps the synchronised layers: its shards hold references to them

    def __init__(
        self,
        accelerator: Accelerator | None = None,
        parallel_devices: list[torch.device] | None = None,
        cluster_environment: ClusterEnvironment | None = None,
        checkpoint_io: CheckpointIO | None = None,
        precision_plugin: Precision | None = None,
        process_group_backend: str | None = None,
        timeout: timedelta | None = DEFAULT_TIMEOUT,
        start_method: str = "popen",
        precision: Precision | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            accelerator, parallel_devices, cluster_environment, checkpoint_io, precision_plugin, precision=precision
        )
        if start_method not in _START_METHODS:
            raise ValueError(
                f"`DDPStrategy(start_method={start_method!r})` is invalid. Choose one of {', '.join(_START_METHODS)}."
            )
        if start_method != "popen":
            import torch.multiprocessing as mp

            if start_method not in mp.get_all_start_methods():
                raise ValueError(
                    f"The start method '{start_method}' is not available on this platform. Available methods are:"
                    f" {', '.join(mp.get_all_start_methods())}. Use `strategy='ddp_spawn'` instead."
                )
        self._backend = process_group_backend
        self._timeout = timeout or DEFAULT_TIMEOUT
        self._start_method = start_method
        self._ddp_kwargs = kwargs
        self._launcher: ScriptLauncher | MultiProcessingLauncher | None = None
        self._module: nn.Module | None = None
        self._runner: nn.Module | None = None
        self._trainer: Any = None

    # ------------------------------------------------------------------ configuration
    def configure(self, accelerator: Accelerator, parallel_devices: list[torch.device], num_nodes: int) -> None:
        """Take the Trainer's devices and nodes, find the cluster environment (unless one was given), check the flags
        against it, choose the launcher and compute this process's ranks."""
        super().configure(accelerator, parallel_devices, num_nodes)
        if self._parallel_devices is None:
            self._parallel_devices = list(parallel_devices)
        if self.parallel_devices[0].type == "mps":
            raise ValueError(
                f"You set `strategy={self.strategy_name}` but strategies from the DDP family are not supported on the"
                " MPS accelerator. Either explicitly set `accelerator='cpu'` or change the strategy."
            )
        self.num_nodes = num_nodes
        env = self.cluster_environment = self.cluster_environment or detect_environment()
        env.validate_settings(self.num_processes, num_nodes)
        if env.creates_processes_externally:
            self._launcher = None
        elif self._start_method == "popen":
            self._launcher = ScriptLauncher(env, self.num_processes, num_nodes)
        else:
            self._launcher = MultiProcessingLauncher(self, self._start_method)
        self.set_world_ranks()

    def set_world_ranks(self) -> None:
        """Tell the environment this process's global rank and the world size (scheduler environments keep theirs)."""
        env = self.cluster_environment
        if env is not None:
            env.set_global_rank(self.node_rank * self.num_processes + self.local_rank)
            env.set_world_size(self.num_nodes * self.num_processes)
        rank_zero_only.rank = self.global_rank  # type: ignore[attr-defined]

    def set_local_rank(self, local_rank: int) -> None:
        """Called in a torch.multiprocessing worker: this worker's local rank."""
        os.environ["LOCAL_RANK"] = str(local_rank)  # what LightningEnvironment reads, as in a launched script
        self.set_world_ranks()

    @property
    def launcher(self) -> ScriptLauncher | MultiProcessingLauncher | None:
        return self._launcher

    @property
    def launches_workers(self) -> bool:
        launcher = self._launcher
        return isinstance(launcher, MultiProcessingLauncher) and not launcher.in_worker

    @property
    def process_group_backend(self) -> str:
        return self._backend or ("nccl" if self.root_device.type == "cuda" else "gloo")

    # ------------------------------------------------------------------ processes
    def setup_environment(self, trainer: Any = None) -> None:
        """Start the other ranks (`ddp`: once per script) and join the process group (every run); Fabric calls it
        without a trainer."""
        self._trainer = trainer
        launcher = self._launcher
        if isinstance(launcher, MultiProcessingLauncher) and not launcher.in_worker:
            raise RuntimeError(
                f"`Trainer(strategy={self.strategy_name!r})` must run its entry points in worker processes through"
                " `trainer.strategy.launcher.launch(...)`, but this Trainer called them directly. Use"
                " `strategy='ddp'` (re-runs the script per rank) or a Trainer whose entry points use the launcher."
            )
        if isinstance(launcher, ScriptLauncher):
            launcher.launch_children()
        elif isinstance(self.cluster_environment, LightningEnvironment):
            watch_launcher()
        try:
            self.setup_distributed()
        except BaseException:
            self._stop_children()
            raise
        super().setup_environment(trainer)

    def setup_distributed(self) -> None:
        """Join the process group of this rank (rendezvous, backend, timeout): called by `setup_environment`; a no-op
        when already joined."""
        if dist.is_initialized():
            return
        env = self.cluster_environment
        assert env is not None, "configure() runs before the process group is joined"
        if (
            isinstance(env, LightningEnvironment)
            and env.creates_processes_externally
            and "MASTER_PORT" not in os.environ
        ):
            # Each process would otherwise pick its own free port and wait for the others forever.
            raise RuntimeError(
                f"Global rank {self.global_rank} was started outside fulgor (LOCAL_RANK is set) but MASTER_PORT is not:"
                " the processes cannot agree on where to meet. Set MASTER_PORT (and MASTER_ADDR on several nodes) to"
                " the same value in every process, or let fulgor start them (unset LOCAL_RANK)."
            )
        os.environ.setdefault("MASTER_ADDR", env.main_address)
        os.environ.setdefault("MASTER_PORT", str(env.main_port))
        if self.root_device.type == "cuda":
            torch.cuda.set_device(self.root_device)
        rank, size = self.global_rank, self.world_size
        log.info(f"Initializing distributed: GLOBAL_RANK: {rank}, MEMBER: {rank + 1}/{size}")
        dist.init_process_group(self.process_group_backend, rank=rank, world_size=size, timeout=self._timeout)
        # Kept for the next run of this process (fit then test): destroying and re-joining on the same port races
        # (a fast rank would join the slow rank's old store); destroyed when the process exits.
        atexit.register(_destroy_process_group)
        rule = "-" * 100
        rank_zero_info(
            f"{rule}\ndistributed_backend={self.process_group_backend}\n"
            f"All distributed processes registered. Starting with {size} processes\n{rule}\n"
        )

    def _stop_children(self) -> None:
        if isinstance(self._launcher, ScriptLauncher):
            self._launcher.kill_children()

    # ------------------------------------------------------------------ model
    def setup_module(self, module: nn.Module) -> nn.Module:
        """Move the module to this rank's device; for fitting, wrap it in DDP (through the step router)."""
        fitting = self._fitting()
        module = module.to(self.root_device)
        if fitting and self._layer_sync is not None:  # on the device: it decides torch's SyncBatchNorm or fulgor's
            module = self._layer_sync.apply(module)
        self._module = module
        router = _StepRouter(self._module)
        # Evaluation-only runs need no gradient sync (and DDP refuses modules without trainable parameters).
        if fitting and any(p.requires_grad for p in module.parameters()):
            device_ids = [self.root_device.index] if self.root_device.type == "cuda" else None
            self._runner = DistributedDataParallel(router, device_ids=device_ids, **self._ddp_kwargs)
            self.model = self._runner
        else:
            self._runner = router
            self.model = self._module
        return self.model

    def _fitting(self) -> bool:
        return self._trainer is None or self._trainer.state.fn == "fit"

    def step_fn(self, module: nn.Module, name: str) -> Any:
        """`training_step` goes through DDP's forward; evaluation steps call the module (no gradients to sync)."""
        if name != "training_step":
            return getattr(module, name)
        return partial(self._run_step, name)

    def _run_step(self, name: str, *args: Any, **kwargs: Any) -> Any:
        runner = self._runner
        assert runner is not None, "setup_module runs before the first step"
        return runner(name, *args, **kwargs)

    @contextmanager
    def no_backward_sync(self) -> Iterator[None]:
        """DDP's `no_sync` while accumulating: gradients stay local until the stepping batch."""
        if isinstance(self._runner, DistributedDataParallel):
            with self._runner.no_sync():
                yield
        else:
            yield

    def teardown(self) -> None:
        """Unwrap the model; after a failure, destroy the process group and stop the ranks this process started."""
        error = sys.exc_info()[1]
        # A preemption stop is agreed by every rank (they all save and exit): wait for them, do not kill them.
        failed = error is not None and not isinstance(error, Preempted)
        if failed:
            # Called from the Trainer's exception path: the other ranks would wait for this one forever.
            self._stop_children()
            _destroy_process_group()
        if self._layer_sync is not None and self._reverts_layer_sync and self._module is not None and self._fitting():
            self._module = self._layer_sync.revert(self._module)
        self.model = self._module
        self._runner = None
        if self.cluster_environment is not None:
            self.cluster_environment.teardown()
        super().teardown()

    # ------------------------------------------------------------------ collectives
    def _distributed(self) -> bool:
        return dist.is_available() and dist.is_initialized() and self.world_size > 1

    def reduce(self, tensor: Any, group: Any | None = None, reduce_op: Any = "mean") -> Any:
        """All-reduce `tensor` across the processes of `group` (default: all) with "mean" (default), "sum", "max",
        "min" or a `torch.distributed.ReduceOp` (in place)."""
        check_reduce_group(group)
        if not isinstance(tensor, Tensor) or not self._distributed():
            return tensor
        name = reduce_op.lower() if isinstance(reduce_op, str) else None
        if isinstance(reduce_op, str) and name not in _REDUCE_OPS:
            raise ValueError(
                f"`reduce_op={reduce_op!r}` is not supported. Use one of {', '.join(_REDUCE_OPS)} or a"
                " `torch.distributed.ReduceOp`."
            )
        op = getattr(dist.ReduceOp, _REDUCE_OPS[name]) if name is not None else reduce_op
        if name in ("mean", "avg") and not torch.is_floating_point(tensor):
            tensor = tensor.float()
        dist.all_reduce(tensor, op=op, group=group)
        if name in ("mean", "avg"):
            tensor = tensor / dist.get_world_size(group)
        return tensor

    def all_gather(self, data: Any, group: Any | None = None, sync_grads: bool = False) -> Any:
        """Gather tensors (in any list/tuple/dict nesting) from every process: each becomes `[world_size, *shape]`."""
        if isinstance(data, Mapping):
            return {k: self.all_gather(v, group, sync_grads) for k, v in data.items()}
        if isinstance(data, (list, tuple)):
            return type(data)(self.all_gather(v, group, sync_grads) for v in data)
        if isinstance(data, (int, float, bool)):
            data = torch.tensor(data, device=self.root_device)
        if not isinstance(data, Tensor) or not self._distributed():
            return data
        if sync_grads:
            from torch.distributed.nn.functional import all_gather as differentiable_gather

            gathered_with_grads = differentiable_gather(data.contiguous(), group=group or dist.group.WORLD)  # type: ignore[no-untyped-call]
            return torch.stack(gathered_with_grads)
        gathered = [torch.empty_like(data) for _ in range(dist.get_world_size(group))]
        dist.all_gather(gathered, data.contiguous(), group=group)
        return torch.stack(gathered)

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        """Rank `src`'s `obj` on every process (any picklable object)."""
        if not self._distributed():
            return obj
        holder = [obj]
        dist.broadcast_object_list(holder, src=src)
        return holder[0]

    def barrier(self, name: str | None = None) -> None:
        """Wait for every process; with gloo, a rank missing after `timeout` is named in the error."""
        if not self._distributed():
            return
        if self.process_group_backend != "gloo":
            dist.barrier(device_ids=[self.root_device.index] if self.root_device.type == "cuda" else None)
            return
        try:
            dist.monitored_barrier(timeout=self._timeout, wait_all_ranks=True)
        except RuntimeError as error:
            raise RuntimeError(
                f"fulgor: barrier {name or '(unnamed)'!r} on global rank {self.global_rank} timed out after"
                f" {self._timeout}: {error}. A missing rank failed or is stuck; see its output above."
            ) from error

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        """True when every (`all=True`) or any (`all=False`) process decided True."""
        if not self._distributed():
            return decision
        votes = self.reduce(torch.tensor(int(decision), device=self.root_device), reduce_op="sum")
        return bool(votes == self.world_size) if all else bool(votes > 0)


def _destroy_process_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
