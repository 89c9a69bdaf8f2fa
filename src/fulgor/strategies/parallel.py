"""ParallelStrategy: what every multi-process strategy shares (DDP, and FSDP on DDP's processes): the device of each
process, the cluster environment that gives the ranks, the sampler arguments, and the layer sync."""

from __future__ import annotations

import torch

from fulgor.accelerators import Accelerator
from fulgor.checkpoint_io import CheckpointIO
from fulgor.layer_sync import LayerSync
from fulgor.precision import Precision
from fulgor.strategies.cluster_environment import ClusterEnvironment
from fulgor.strategies.strategy import Strategy

__all__ = ["ParallelStrategy"]


class ParallelStrategy(Strategy):
    """A strategy running one process per device, possibly over several nodes (Lightning's base of DDP and FSDP).

    Args:
        accelerator: the hardware (default: from the Trainer's `accelerator` flag).
        parallel_devices: the device of each process on a node (default: from the Trainer's `devices` flag).
        cluster_environment: where the processes come from and meet (default: detected, see `plugins=`).
        checkpoint_io: how checkpoint files are written (default: `TorchCheckpointIO`).
        precision_plugin: the precision (default: from the Trainer's `precision` flag).
        precision: Lightning Fabric's name for `precision_plugin` (give one of the two).
    """

    def __init__(
        self,
        accelerator: Accelerator | None = None,
        parallel_devices: list[torch.device] | None = None,
        cluster_environment: ClusterEnvironment | None = None,
        checkpoint_io: CheckpointIO | None = None,
        precision_plugin: Precision | None = None,
        precision: Precision | None = None,
    ) -> None:
        super().__init__(accelerator, checkpoint_io, precision_plugin, precision)
        self._parallel_devices = parallel_devices
        self.num_nodes = 1
        self.cluster_environment = cluster_environment
        self._layer_sync: LayerSync | None = None

    @property
    def parallel_devices(self) -> list[torch.device]:
        """The device of each process on this node (one CPU device per process on CPU)."""
        return self._parallel_devices or [torch.device("cpu")]

    @parallel_devices.setter
    def parallel_devices(self, devices: list[torch.device]) -> None:
        self._parallel_devices = list(devices)

    @property
    def num_processes(self) -> int:
        return len(self.parallel_devices)

    @property
    def root_device(self) -> torch.device:
        return self.parallel_devices[self.local_rank]

    @property
    def world_size(self) -> int:
        return self.cluster_environment.world_size() if self.cluster_environment is not None else 1

    @property
    def global_rank(self) -> int:
        return self.cluster_environment.global_rank() if self.cluster_environment is not None else 0

    @property
    def local_rank(self) -> int:
        return self.cluster_environment.local_rank() if self.cluster_environment is not None else 0

    @property
    def node_rank(self) -> int:
        return self.cluster_environment.node_rank() if self.cluster_environment is not None else 0

    @property
    def layer_sync(self) -> LayerSync | None:
        """What converts layers for a distributed fit (`TorchSyncBatchNorm` with `sync_batchnorm=True`)."""
        return self._layer_sync

    @layer_sync.setter
    def layer_sync(self, layer_sync: LayerSync | None) -> None:
        self._layer_sync = layer_sync

    @property
    def distributed_sampler_kwargs(self) -> dict[str, int]:
        return {"num_replicas": self.world_size, "rank": self.global_rank}
