"""Cluster environments of job schedulers (Lightning's classes): SLURM (`srun`), LSF (`jsrun`) and MPI (`mpirun`,
through `mpi4py`); each reads ranks and the rendezvous address from what the scheduler set."""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import sys
from typing import Any

from fulgor import fs
from fulgor.errors import PossibleUserWarning
from fulgor.rank import rank_zero_warn
from fulgor.strategies.cluster_environment import ClusterEnvironment, find_free_network_port

# Lightning logs these under its environments module (`lightning.fabric.plugins.environments`).
log = logging.getLogger("fulgor.plugins.environments")

__all__ = ["LSFEnvironment", "MPIEnvironment", "SLURMEnvironment", "resolve_root_node_address"]


def _ignored(environment: ClusterEnvironment, what: str) -> None:
    log.debug(f"{type(environment).__name__}.set_{what} was called, but setting {what.replace('_', ' ')} is not"
              " allowed. Ignored.")  # fmt: skip


def resolve_root_node_address(nodes: str) -> str:
    """The first host of a SLURM node list: "host0 host1", "host0,host1" and "host[5-9]" give host0/host0/host5."""
    nodes = re.sub(r"\[(.*?)[,-].*\]", r"\1", nodes)  # the first node of each range
    nodes = re.sub(r"\[(.*?)\]", r"\1", nodes)  # a range of one number
    return nodes.split(" ")[0].split(",")[0]


def _slurm_interactive() -> bool:
    # Lightning's escape hatch: a job named "bash"/"interactive" uses SLURM for resources only. Read through the public
    # `SLURMEnvironment.job_name`, as Lightning reads it.
    return SLURMEnvironment.job_name() in ("bash", "interactive")


def _srun_used() -> bool:
    return "SLURM_NTASKS" in os.environ and not _slurm_interactive()


class SLURMEnvironment(ClusterEnvironment):
    """Processes started by SLURM's `srun`: ranks from `SLURM_PROCID`, `SLURM_LOCALID`, `SLURM_NODEID`.

    The rendezvous is `MASTER_ADDR`/`MASTER_PORT` when set, else the first node of `SLURM_NODELIST` and a port derived
    from the job id (the same in every task).

    Args:
        auto_requeue: whether the job requeues itself (`scontrol requeue`) when it receives `requeue_signal`.
        requeue_signal: the signal SLURM sends before the time limit; default SIGUSR1 (None on Windows).
    """

    def __init__(self, auto_requeue: bool = True, requeue_signal: signal.Signals | None = None) -> None:
        self.auto_requeue = auto_requeue
        if requeue_signal is None and sys.platform != "win32":
            requeue_signal = signal.SIGUSR1
        self.requeue_signal = requeue_signal
        self._validate_srun_used()
        self._validate_srun_variables()

    @property
    def creates_processes_externally(self) -> bool:
        return True

    @property
    def main_address(self) -> str:
        root = os.environ.get("MASTER_ADDR")
        if root is None:
            root = resolve_root_node_address(os.environ.get("SLURM_NODELIST", "127.0.0.1"))
            os.environ["MASTER_ADDR"] = root
        return root

    @property
    def main_port(self) -> int:
        if "MASTER_PORT" in os.environ:
            return int(os.environ["MASTER_PORT"])
        job_id = os.environ.get("SLURM_JOB_ID")
        # Every task derives the same port from the job id, so no task has to tell the others.
        port = int(job_id[-4:]) + 15000 if job_id is not None else 12910
        os.environ["MASTER_PORT"] = str(port)
        return port

    @staticmethod
    def detect() -> bool:
        """True in a task `srun` started (not in a job named "bash" or "interactive"); warns when `srun` exists but
        was not used."""
        SLURMEnvironment._validate_srun_used()
        return _srun_used()

    @staticmethod
    def job_name() -> str | None:
        return os.environ.get("SLURM_JOB_NAME")

    @staticmethod
    def job_id() -> int | None:
        """The SLURM job id (None outside SLURM and in interactive jobs)."""
        job_id = os.environ.get("SLURM_JOB_ID")
        if job_id is None or _slurm_interactive():
            return None
        try:
            return int(job_id)
        except ValueError:
            return None

    resolve_root_node_address = staticmethod(resolve_root_node_address)

    def world_size(self) -> int:
        return int(os.environ["SLURM_NTASKS"])

    def set_world_size(self, size: int) -> None:
        _ignored(self, "world_size")

    def global_rank(self) -> int:
        return int(os.environ["SLURM_PROCID"])

    def set_global_rank(self, rank: int) -> None:
        _ignored(self, "global_rank")

    def local_rank(self) -> int:
        return int(os.environ["SLURM_LOCALID"])

    def node_rank(self) -> int:
        return int(os.environ["SLURM_NODEID"])

    def validate_settings(self, num_devices: int, num_nodes: int) -> None:
        """Raise if `devices`/`num_nodes` differ from `--ntasks-per-node`/`--nodes` (Lightning's messages)."""
        if _slurm_interactive():
            return
        per_node = os.environ.get("SLURM_NTASKS_PER_NODE")
        if per_node is not None and int(per_node) != num_devices:
            raise ValueError(
                f"You set `devices={num_devices}` in Lightning, but the number of tasks per node configured in SLURM"
                f" `--ntasks-per-node={per_node}` does not match. HINT: Set `devices={per_node}`."
            )
        nodes = os.environ.get("SLURM_NNODES")
        if nodes is not None and int(nodes) != num_nodes:
            raise ValueError(
                f"You set `num_nodes={num_nodes}` in Lightning, but the number of nodes configured in SLURM"
                f" `--nodes={nodes}` does not match. HINT: Set `num_nodes={nodes}`."
            )

    @staticmethod
    def _validate_srun_used() -> None:
        # Multi-process SLURM jobs need `srun` in front of python; without it the ranks wait for each other forever.
        if sys.platform == "win32" or shutil.which("srun") is None or _srun_used():
            return
        hint = " ".join(["srun", os.path.basename(sys.executable), *sys.argv])[:64]
        rank_zero_warn(
            "The `srun` command is available on your system but is not used. HINT: If your intention is to run"
            f" Lightning on SLURM, prepend your python command with `srun` like so: {hint} ...",
            category=PossibleUserWarning,
        )

    @staticmethod
    def _validate_srun_variables() -> None:
        ntasks = int(os.environ.get("SLURM_NTASKS", "1"))
        if ntasks > 1 and "SLURM_NTASKS_PER_NODE" not in os.environ:
            raise RuntimeError(
                f"You set `--ntasks={ntasks}` in your SLURM bash script, but this variable is not supported."
                f" HINT: Use `--ntasks-per-node={ntasks}` instead."
            )


def _required(name: str, what: str) -> int:
    value = os.environ.get(name)
    if value is None:
        raise ValueError(
            f"Cannot determine {what}. Environment variable `{name}` not found. Make sure you run your executable with"
            " `jsrun`."
        )
    return int(value)


class LSFEnvironment(ClusterEnvironment):
    """Processes started by LSF's `jsrun`: ranks from `JSM_NAMESPACE_*`, hosts from the rank file
    `LSB_DJOB_RANKFILE` (the first line is the launch node), the port from `LSB_JOBID` unless `MASTER_PORT` is set."""

    def __init__(self) -> None:
        hosts = self._read_hosts()
        self._main_address = hosts[0]
        self._main_port = self._get_main_port()
        self._node_rank = list(dict.fromkeys(hosts)).index(socket.gethostname())
        os.environ["MASTER_ADDR"] = self._main_address
        os.environ["MASTER_PORT"] = str(self._main_port)

    @property
    def creates_processes_externally(self) -> bool:
        return True

    @property
    def main_address(self) -> str:
        return self._main_address

    @property
    def main_port(self) -> int:
        return self._main_port

    @staticmethod
    def detect() -> bool:
        """True when the variables `jsrun` sets are present."""
        required = {"LSB_JOBID", "LSB_DJOB_RANKFILE", "JSM_NAMESPACE_LOCAL_RANK", "JSM_NAMESPACE_SIZE"}
        return required.issubset(os.environ)

    def world_size(self) -> int:
        return _required("JSM_NAMESPACE_SIZE", "world size")

    def set_world_size(self, size: int) -> None:
        _ignored(self, "world_size")

    def global_rank(self) -> int:
        return _required("JSM_NAMESPACE_RANK", "global rank")

    def set_global_rank(self, rank: int) -> None:
        _ignored(self, "global_rank")

    def local_rank(self) -> int:
        return _required("JSM_NAMESPACE_LOCAL_RANK", "local rank")

    def node_rank(self) -> int:
        """The position of this host among the job's hosts."""
        return self._node_rank

    @staticmethod
    def _read_hosts() -> list[str]:
        rankfile = os.environ.get("LSB_DJOB_RANKFILE")
        if rankfile is None:
            raise ValueError("Did not find the environment variable `LSB_DJOB_RANKFILE`")
        if not rankfile:
            raise ValueError("The environment variable `LSB_DJOB_RANKFILE` is empty")
        with fs.open(rankfile, "r") as file:
            hosts = [line.strip() for line in file]
        return hosts[1:]  # the first line is the launch node, which runs no task

    @staticmethod
    def _get_main_port() -> int:
        if "MASTER_PORT" in os.environ:
            return int(os.environ["MASTER_PORT"])
        if "LSB_JOBID" in os.environ:
            return int(os.environ["LSB_JOBID"]) % 1000 + 10000  # the same in every task, in the 10k range
        raise ValueError("Could not find job id in environment variable LSB_JOBID")


def _mpi() -> Any:
    try:
        from mpi4py import MPI
    except ImportError:  # not installed, or installed without an MPI library
        return None
    return MPI


class MPIEnvironment(ClusterEnvironment):
    """Processes started by `mpirun`/`mpiexec`: ranks from MPI's world communicator (needs `mpi4py`).

    Raises:
        ModuleNotFoundError: `mpi4py` is not installed.
    """

    def __init__(self) -> None:
        mpi = _mpi()
        if mpi is None:
            raise ModuleNotFoundError(
                "`MPIEnvironment` needs the `mpi4py` package (and an MPI library): `pip install mpi4py`. Without MPI,"
                " use `LightningEnvironment` (the default) or `TorchElasticEnvironment` (torchrun)."
            )
        self._world = mpi.COMM_WORLD
        self._ranks: dict[str, int] = {}
        self._main: tuple[str, int] | None = None

    @property
    def creates_processes_externally(self) -> bool:
        return True

    @property
    def main_address(self) -> str:
        return self._rendezvous()[0]

    @property
    def main_port(self) -> int:
        return self._rendezvous()[1]

    def _rendezvous(self) -> tuple[str, int]:
        if self._main is None:
            self._main = self._world.bcast((socket.gethostname(), find_free_network_port()), root=0)
        return self._main

    @staticmethod
    def detect() -> bool:
        """True when `mpi4py` imports and MPI's world has more than one process."""
        mpi = _mpi()
        return mpi is not None and mpi.COMM_WORLD.Get_size() > 1

    def world_size(self) -> int:
        return int(self._world.Get_size())

    def set_world_size(self, size: int) -> None:
        _ignored(self, "world_size")

    def global_rank(self) -> int:
        return int(self._world.Get_rank())

    def set_global_rank(self, rank: int) -> None:
        _ignored(self, "global_rank")

    def local_rank(self) -> int:
        return self._node_ranks()["local"]

    def node_rank(self) -> int:
        return self._node_ranks()["node"]

    def _node_ranks(self) -> dict[str, int]:
        # Every rank learns the sorted host list; a host's position is its node rank, its rank within it the local one.
        if not self._ranks:
            host = socket.gethostname()
            hosts = self._world.bcast(sorted(set(self._world.gather(host, root=0) or [])), root=0)
            node = hosts.index(host)
            self._ranks = {"node": node, "local": int(self._world.Split(color=node).Get_rank())}
        return self._ranks
