"""`strategy=` names, auto-selection, cluster-environment detection and Lightning's mismatch messages."""

from __future__ import annotations

import pytest
import torch

from fulgor.rank import rank_zero_only
from fulgor.strategies import DDPStrategy, SingleDeviceStrategy
from fulgor.strategies.environments import (
    LightningEnvironment,
    SLURMEnvironment,
    TorchElasticEnvironment,
    detect_environment,
    resolve_root_node_address,
)
from fulgor.strategies.launcher import MultiProcessingLauncher, ScriptLauncher
from fulgor.strategies.registry import select_strategy

_RANK_VARS = (
    "TORCHELASTIC_RUN_ID", "RANK", "LOCAL_RANK", "WORLD_SIZE", "GROUP_RANK", "NODE_RANK", "MASTER_ADDR",
    "MASTER_PORT", "LOCAL_WORLD_SIZE", "SLURM_NTASKS", "SLURM_JOB_NAME", "SLURM_PROCID", "SLURM_LOCALID",
    "SLURM_NODEID", "SLURM_NTASKS_PER_NODE", "SLURM_NNODES", "SLURM_NODELIST", "SLURM_JOB_ID", "STANDALONE_PORT",
    "LSB_JOBID", "LSB_DJOB_RANKFILE", "JSM_NAMESPACE_LOCAL_RANK", "JSM_NAMESPACE_SIZE", "JSM_NAMESPACE_RANK",
)  # fmt: skip
CPU2 = [torch.device("cpu")] * 2


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in _RANK_VARS:
        # set first so that monkeypatch restores the original state: environments write MASTER_ADDR/MASTER_PORT
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    monkeypatch.setenv("PATH", "/nonexistent")  # no `srun` on PATH: no SLURM hint warning


@pytest.mark.parametrize(
    ("name", "start_method", "unused"),
    [
        ("ddp", "popen", None),
        ("DDP_Spawn", "spawn", None),
        ("ddp_fork", "fork", None),
        ("ddp_notebook", "fork", None),
        ("ddp_find_unused_parameters_true", "popen", True),
        ("ddp_spawn_find_unused_parameters_false", "spawn", False),
    ],
)
def test_ddp_names(name: str, start_method: str, unused: bool | None) -> None:
    strategy = select_strategy(name, CPU2, 1)
    assert isinstance(strategy, DDPStrategy)
    assert strategy._start_method == start_method
    assert strategy.strategy_name == name.lower()
    assert strategy._ddp_kwargs == ({} if unused is None else {"find_unused_parameters": unused})


def test_auto_selection() -> None:
    single = select_strategy("auto", CPU2[:1], 1)
    assert isinstance(single, SingleDeviceStrategy)
    assert str(single.root_device) == "cpu"
    two_devices = select_strategy("auto", CPU2, 1)
    assert isinstance(two_devices, DDPStrategy)
    assert two_devices._start_method == "popen"
    two_nodes = select_strategy("auto", CPU2[:1], 2)
    assert isinstance(two_nodes, DDPStrategy)


def test_invalid_names() -> None:
    with pytest.raises(ValueError, match=r"You selected an invalid strategy name: `strategy='dp'`\. It must be"):
        select_strategy("dp", CPU2[:1], 1)
    with pytest.raises(ValueError) as info:
        select_strategy("fsdp", [torch.device("mps")], 1)  # CPU (gloo) and CUDA run FSDP in fulgor; MPS does not
    assert str(info.value) == (
        "The strategy `fsdp` requires a GPU accelerator, but received `accelerator='mps'`. Please set"
        " `accelerator='cuda'`, `accelerator='gpu'`, or pass a `CUDAAccelerator()` instance to use FSDP."
    )
    with pytest.raises(ValueError, match=r"strategy='single_device'\)` runs on one device, but devices=2 and"):
        select_strategy("single_device", CPU2, 1)
    with pytest.raises(ValueError, match="start_method='thread'"):
        DDPStrategy(start_method="thread")


def test_trainer_devices_2_on_cpu_is_ddp_with_script_launcher() -> None:
    import fulgor as pl

    trainer = pl.Trainer(accelerator="cpu", devices=2, logger=False, enable_progress_bar=False)
    strategy = trainer.strategy
    assert isinstance(strategy, DDPStrategy)
    assert isinstance(strategy.launcher, ScriptLauncher)
    assert (trainer.world_size, trainer.global_rank, trainer.local_rank, trainer.node_rank) == (2, 0, 0, 0)
    assert trainer.is_global_zero
    assert strategy.process_group_backend == "gloo"
    assert strategy.distributed_sampler_kwargs == {"num_replicas": 2, "rank": 0}
    spawn = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", logger=False)
    assert isinstance(spawn.strategy.launcher, MultiProcessingLauncher)
    assert (spawn.strategy.launches_workers, strategy.launches_workers) == (True, False)


def test_user_set_local_rank_is_used_as_is(monkeypatch: pytest.MonkeyPatch) -> None:
    import fulgor as pl

    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("NODE_RANK", "1")
    trainer = pl.Trainer(accelerator="cpu", devices=2, num_nodes=2, logger=False)
    assert trainer.strategy.launcher is None  # processes were created outside
    assert (trainer.world_size, trainer.global_rank, trainer.local_rank, trainer.node_rank) == (4, 3, 1, 1)
    assert not trainer.is_global_zero
    assert rank_zero_only.rank == 3


def test_torchelastic(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {"TORCHELASTIC_RUN_ID": "x", "RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "GROUP_RANK": "1",
                           "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    env = detect_environment()
    assert isinstance(env, TorchElasticEnvironment)
    assert env.creates_processes_externally
    assert (env.global_rank(), env.local_rank(), env.node_rank(), env.world_size()) == (3, 1, 1, 4)
    assert (env.main_address, env.main_port) == ("10.0.0.1", 29500)
    env.validate_settings(2, 2)
    with pytest.raises(ValueError) as info:
        env.validate_settings(2, 1)
    assert str(info.value) == (
        "You set `devices=2` and `num_nodes=1` in Lightning, but the product (2 * 1) does not match the world size (4)."
    )


def test_slurm(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {"SLURM_NTASKS": "4", "SLURM_JOB_NAME": "train", "SLURM_PROCID": "2", "SLURM_LOCALID": "0",
                           "SLURM_NODEID": "1", "SLURM_NTASKS_PER_NODE": "2", "SLURM_NNODES": "2",
                           "SLURM_NODELIST": "gpu[7-8]", "SLURM_JOB_ID": "123456"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    env = detect_environment()
    assert isinstance(env, SLURMEnvironment)
    assert (env.global_rank(), env.local_rank(), env.node_rank(), env.world_size()) == (2, 0, 1, 4)
    assert (env.main_address, env.main_port) == ("gpu7", 3456 + 15000)
    env.validate_settings(2, 2)
    with pytest.raises(ValueError) as info:
        env.validate_settings(4, 2)
    assert str(info.value) == (
        "You set `devices=4` in Lightning, but the number of tasks per node configured in SLURM"
        " `--ntasks-per-node=2` does not match. HINT: Set `devices=2`."
    )
    with pytest.raises(ValueError) as info:
        env.validate_settings(2, 1)
    assert str(info.value) == (
        "You set `num_nodes=1` in Lightning, but the number of nodes configured in SLURM `--nodes=2` does not"
        " match. HINT: Set `num_nodes=2`."
    )
    monkeypatch.setenv("SLURM_JOB_NAME", "interactive")  # Lightning's escape hatch: not a SLURM launch
    assert isinstance(detect_environment(), LightningEnvironment)


@pytest.mark.parametrize(
    ("nodes", "root"),
    [
        ("host0 host1", "host0"),
        ("host0,host1,host3", "host0"),
        ("host[5-9]", "host5"),
        ("host[3]", "host3"),
        ("alpha,beta[1-2]", "alpha"),
    ],
)
def test_slurm_root_node(nodes: str, root: str) -> None:
    assert resolve_root_node_address(nodes) == root == SLURMEnvironment.resolve_root_node_address(nodes)
