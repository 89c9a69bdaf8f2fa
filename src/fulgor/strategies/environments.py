"""Where this process sits in a job: rank, world size and rendezvous address read from torchrun (TorchElastic),
SLURM, or fulgor's own launcher (a `LOCAL_RANK` set by it or by the user), with Lightning's mismatch messages."""

from __future__ import annotations

import os
import shutil
import socket
import sys
from dataclasses import dataclass

from fulgor.errors import PossibleUserWarning
from fulgor.rank import rank_zero_warn


@dataclass
class ClusterEnvironment:
    """The rank layout of one process.

    Attributes:
        name: "torchelastic", "slurm" or "lightning" (fulgor launches, or the user set `LOCAL_RANK`).
        creates_processes_externally: True when something else started every process (torchrun, srun, the user);
            fulgor then launches nothing and uses the ranks as they are.
        main_address: host of global rank 0 (`MASTER_ADDR`).
        main_port: rendezvous port (`MASTER_PORT`).
        world_size: total number of processes.
        global_rank: this process's rank in the job.
        local_rank: this process's rank on its node.
        node_rank: this node's rank.
    """

    name: str
    creates_processes_externally: bool
    main_address: str
    main_port: int
    world_size: int
    global_rank: int
    local_rank: int
    node_rank: int


def detect_environment(num_devices: int, num_nodes: int) -> ClusterEnvironment:
    """Detect the environment in Lightning's priority order (TorchElastic, SLURM, fulgor/user) and check that
    `devices`/`num_nodes` agree with it.

    Args:
        num_devices: processes per node (the `devices` flag, parsed).
        num_nodes: the `num_nodes` flag.

    Raises:
        ValueError: the Trainer flags disagree with what torchrun or SLURM started (Lightning's messages).
    """
    if _torchelastic_launched():
        return _torchelastic(num_devices, num_nodes)
    _warn_srun_unused()
    if _slurm_launched():
        return _slurm(num_devices, num_nodes)
    return _lightning(num_devices, num_nodes)


def _torchelastic_launched() -> bool:
    # torch's own test (`torch.distributed.is_torchelastic_launched`), without importing torch.distributed here.
    return "TORCHELASTIC_RUN_ID" in os.environ


def _torchelastic(num_devices: int, num_nodes: int) -> ClusterEnvironment:
    world_size = int(os.environ["WORLD_SIZE"])
    if num_devices * num_nodes != world_size:
        raise ValueError(
            f"You set `devices={num_devices}` and `num_nodes={num_nodes}` in Lightning, but the product"
            f" ({num_devices} * {num_nodes}) does not match the world size ({world_size})."
        )
    return ClusterEnvironment(
        name="torchelastic",
        creates_processes_externally=True,
        main_address=os.environ.get("MASTER_ADDR", "127.0.0.1"),
        main_port=int(os.environ.get("MASTER_PORT", "12910")),
        world_size=world_size,
        global_rank=int(os.environ["RANK"]),
        local_rank=int(os.environ["LOCAL_RANK"]),
        node_rank=int(os.environ.get("GROUP_RANK", "0")),
    )


def _slurm_launched() -> bool:
    return "SLURM_NTASKS" in os.environ and os.environ.get("SLURM_JOB_NAME") not in ("bash", "interactive")


def _warn_srun_unused() -> None:
    if sys.platform != "win32" and shutil.which("srun") is not None and not _slurm_launched():
        hint = " ".join(["srun", os.path.basename(sys.executable), *sys.argv])[:64]
        rank_zero_warn(
            "The `srun` command is available on your system but is not used. HINT: If your intention is to run"
            f" Lightning on SLURM, prepend your python command with `srun` like so: {hint} ...",
            category=PossibleUserWarning,
        )


def _slurm(num_devices: int, num_nodes: int) -> ClusterEnvironment:
    ntasks_per_node = os.environ.get("SLURM_NTASKS_PER_NODE")
    if ntasks_per_node is not None and int(ntasks_per_node) != num_devices:
        raise ValueError(
            f"You set `devices={num_devices}` in Lightning, but the number of tasks per node configured in SLURM"
            f" `--ntasks-per-node={ntasks_per_node}` does not match. HINT: Set `devices={ntasks_per_node}`."
        )
    nnodes = os.environ.get("SLURM_NNODES")
    if nnodes is not None and int(nnodes) != num_nodes:
        raise ValueError(
            f"You set `num_nodes={num_nodes}` in Lightning, but the number of nodes configured in SLURM"
            f" `--nodes={nnodes}` does not match. HINT: Set `num_nodes={nnodes}`."
        )
    job_id = os.environ.get("SLURM_JOB_ID", "")
    # Every task derives the same port from the job id, so no task has to tell the others.
    default_port = int(job_id[-4:]) + 15000 if job_id[-4:].isdigit() else 12910
    return ClusterEnvironment(
        name="slurm",
        creates_processes_externally=True,
        main_address=os.environ.get("MASTER_ADDR") or slurm_root_node(os.environ.get("SLURM_NODELIST", "127.0.0.1")),
        main_port=int(os.environ.get("MASTER_PORT", default_port)),
        world_size=int(os.environ["SLURM_NTASKS"]),
        global_rank=int(os.environ["SLURM_PROCID"]),
        local_rank=int(os.environ["SLURM_LOCALID"]),
        node_rank=int(os.environ["SLURM_NODEID"]),
    )


def slurm_root_node(nodelist: str) -> str:
    """The first host of a SLURM node list: "host0 host1", "host0,host1" and "host[5-9]" give host0/host0/host5."""
    first = nodelist.replace(" ", ",").split(",")[0] if "[" not in nodelist.split(",")[0] else nodelist
    if "[" in first:
        prefix, rest = first.split("[", 1)
        number = rest.split("]")[0].replace("-", ",").split(",")[0]
        return prefix + number
    return first


def _lightning(num_devices: int, num_nodes: int) -> ClusterEnvironment:
    local_rank = os.environ.get("LOCAL_RANK")
    node_rank = int(os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", "0")))
    port = os.environ.get("MASTER_PORT")
    return ClusterEnvironment(
        name="lightning",
        # A LOCAL_RANK already set means fulgor's launcher (or the user) started this process.
        creates_processes_externally=local_rank is not None,
        main_address=os.environ.get("MASTER_ADDR", "127.0.0.1"),
        main_port=int(port) if port is not None else 0,  # 0: choose a free one when launching
        world_size=num_devices * num_nodes,
        global_rank=node_rank * num_devices + int(local_rank or 0),
        local_rank=int(local_rank or 0),
        node_rank=node_rank,
    )


def find_free_port() -> int:
    """A TCP port that is free on this machine right now (for the rendezvous of processes fulgor launches)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
