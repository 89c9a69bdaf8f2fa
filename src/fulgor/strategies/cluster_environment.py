"""The ClusterEnvironment ABC (Lightning's API): where the current process sits in a job (ranks, world size) and where
the processes meet (address, port), as a scheduler or launcher reports it; a free port for that meeting.
Implementations are in `environments` and `scheduler_environments`."""

from __future__ import annotations

import os
import socket
from abc import ABC, abstractmethod


class ClusterEnvironment(ABC):
    """What a cluster or launcher tells a process about the job; pass your own as `Trainer(plugins=[MyEnvironment()])`.

    Ranks and the world size are methods (they may read the environment each time); the address and port are
    properties. Environments whose values come from the scheduler ignore `set_world_size`/`set_global_rank`.
    """

    @property
    @abstractmethod
    def creates_processes_externally(self) -> bool:
        """True when something else (torchrun, srun, jsrun, mpirun, the user) started every process, so the
        Trainer launches none."""

    @property
    @abstractmethod
    def main_address(self) -> str:
        """The host of global rank 0, through which all processes connect."""

    @property
    @abstractmethod
    def main_port(self) -> int:
        """The port on `main_address` where the processes meet."""

    @staticmethod
    @abstractmethod
    def detect() -> bool:
        """Whether the current process runs in this environment (read from environment variables)."""

    @abstractmethod
    def world_size(self) -> int:
        """The number of processes across all nodes and devices."""

    @abstractmethod
    def set_world_size(self, size: int) -> None:
        """Tell the environment the world size the Trainer computed (ignored where the scheduler sets it)."""

    @abstractmethod
    def global_rank(self) -> int:
        """The rank of this process across all nodes and devices."""

    @abstractmethod
    def set_global_rank(self, rank: int) -> None:
        """Tell the environment the global rank the Trainer computed (ignored where the scheduler sets it)."""

    @abstractmethod
    def local_rank(self) -> int:
        """The rank of this process on its node."""

    @abstractmethod
    def node_rank(self) -> int:
        """The rank of this process's node."""

    def validate_settings(self, num_devices: int, num_nodes: int) -> None:  # noqa: B027
        """Raise if the Trainer's `devices`/`num_nodes` disagree with what the environment started."""

    def teardown(self) -> None:  # noqa: B027
        """Undo what the environment set after the run (e.g. environment variables)."""


def find_free_network_port() -> int:
    """A TCP port that is free on this machine right now (`STANDALONE_PORT` when set, as in Lightning)."""
    if "STANDALONE_PORT" in os.environ:
        return int(os.environ["STANDALONE_PORT"])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])
