"""Cluster environments (Lightning's classes): fulgor's own launcher or a user-started job (`LightningEnvironment`),
torchrun (`TorchElasticEnvironment`), Kubeflow's PyTorchJob, and the scheduler ones (SLURM, LSF, MPI: re-exported
from `scheduler_environments`); which one a process runs in, and a free port for the rendezvous."""

from __future__ import annotations

import logging
import os

from fulgor.rank import rank_zero_only, rank_zero_warn
from fulgor.strategies.cluster_environment import ClusterEnvironment, find_free_network_port
from fulgor.strategies.scheduler_environments import (
    LSFEnvironment,
    MPIEnvironment,
    SLURMEnvironment,
    resolve_root_node_address,
)

# Lightning logs these under its environments module (`lightning.fabric.plugins.environments`).
log = logging.getLogger("fulgor.plugins.environments")

__all__ = [
    "ClusterEnvironment",
    "KubeflowEnvironment",
    "LSFEnvironment",
    "LightningEnvironment",
    "MPIEnvironment",
    "SLURMEnvironment",
    "TorchElasticEnvironment",
    "detect_environment",
    "find_free_network_port",
    "resolve_root_node_address",
]


find_free_port = find_free_network_port  # fulgor's earlier name, still used by the distributed tests


class LightningEnvironment(ClusterEnvironment):
    """The default: fulgor starts the processes of this node itself, or the user did (then `LOCAL_RANK` is set in
    each, and `NODE_RANK`, `MASTER_ADDR`, `MASTER_PORT` where needed). Ranks are computed by the Trainer."""

    def __init__(self) -> None:
        self._main_port = -1
        self._global_rank = 0
        self._world_size = 1

    @property
    def creates_processes_externally(self) -> bool:
        """True when `LOCAL_RANK` is set: something else started this process, so fulgor launches none."""
        return "LOCAL_RANK" in os.environ

    @property
    def main_address(self) -> str:
        return os.environ.get("MASTER_ADDR", "127.0.0.1")

    @property
    def main_port(self) -> int:
        """`MASTER_PORT`, else a free port chosen once."""
        if self._main_port == -1:
            port = os.environ.get("MASTER_PORT")
            self._main_port = int(port) if port is not None else find_free_network_port()
        return self._main_port

    @staticmethod
    def detect() -> bool:
        return True

    def world_size(self) -> int:
        return self._world_size

    def set_world_size(self, size: int) -> None:
        self._world_size = size

    def global_rank(self) -> int:
        return self._global_rank

    def set_global_rank(self, rank: int) -> None:
        self._global_rank = rank
        rank_zero_only.rank = rank  # type: ignore[attr-defined]

    def local_rank(self) -> int:
        return int(os.environ.get("LOCAL_RANK", 0))

    def node_rank(self) -> int:
        return int(os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", 0)))

    def teardown(self) -> None:
        """Drop the `WORLD_SIZE` variable the launcher set, so a later Trainer in this process starts clean."""
        os.environ.pop("WORLD_SIZE", None)


class _FromVariables(ClusterEnvironment):
    """Environments whose ranks come from the launcher's variables: the Trainer's values are ignored."""

    @property
    def creates_processes_externally(self) -> bool:
        return True

    def set_world_size(self, size: int) -> None:
        log.debug(f"{type(self).__name__}.set_world_size was called, but setting world size is not allowed. Ignored.")

    def set_global_rank(self, rank: int) -> None:
        log.debug(f"{type(self).__name__}.set_global_rank was called, but setting global rank is not allowed. Ignored.")

    def world_size(self) -> int:
        return int(os.environ["WORLD_SIZE"])

    def global_rank(self) -> int:
        return int(os.environ["RANK"])


class TorchElasticEnvironment(_FromVariables):
    """Processes started by `torchrun` (TorchElastic): ranks from `RANK`, `LOCAL_RANK`, `WORLD_SIZE`, `GROUP_RANK`."""

    @property
    def main_address(self) -> str:
        if "MASTER_ADDR" not in os.environ:
            rank_zero_warn("MASTER_ADDR environment variable is not defined. Set as localhost")
            os.environ["MASTER_ADDR"] = "127.0.0.1"
        return os.environ["MASTER_ADDR"]

    @property
    def main_port(self) -> int:
        if "MASTER_PORT" not in os.environ:
            rank_zero_warn("MASTER_PORT environment variable is not defined. Set as 12910")
            os.environ["MASTER_PORT"] = "12910"
        return int(os.environ["MASTER_PORT"])

    @staticmethod
    def detect() -> bool:
        """True in a process `torchrun` started (torch's own test, without importing torch.distributed here)."""
        return "TORCHELASTIC_RUN_ID" in os.environ

    def local_rank(self) -> int:
        return int(os.environ["LOCAL_RANK"])

    def node_rank(self) -> int:
        return int(os.environ.get("GROUP_RANK", 0))

    def validate_settings(self, num_devices: int, num_nodes: int) -> None:
        """Raise if `devices * num_nodes` differs from the world size torchrun started."""
        if num_devices * num_nodes != self.world_size():
            raise ValueError(
                f"You set `devices={num_devices}` and `num_nodes={num_nodes}` in Lightning, but the product"
                f" ({num_devices} * {num_nodes}) does not match the world size ({self.world_size()})."
            )


class KubeflowEnvironment(_FromVariables):
    """A Kubeflow PyTorchJob: one process per pod (local rank 0), ranks from `RANK`/`WORLD_SIZE`. Never detected:
    pass it as `Trainer(plugins=[KubeflowEnvironment()])`."""

    @property
    def main_address(self) -> str:
        return os.environ["MASTER_ADDR"]

    @property
    def main_port(self) -> int:
        return int(os.environ["MASTER_PORT"])

    @staticmethod
    def detect() -> bool:
        """Raises: the Kubeflow environment cannot be recognised from its variables."""
        raise NotImplementedError("The Kubeflow environment can't be detected automatically.")

    def local_rank(self) -> int:
        return 0

    def node_rank(self) -> int:
        return self.global_rank()


def detect_environment() -> ClusterEnvironment:
    """The environment of this process, in Lightning's order: torchrun (which may run inside SLURM), SLURM, LSF, MPI,
    else `LightningEnvironment`."""
    for environment in (TorchElasticEnvironment, SLURMEnvironment, LSFEnvironment, MPIEnvironment):
        if environment.detect():
            return environment()
    return LightningEnvironment()
