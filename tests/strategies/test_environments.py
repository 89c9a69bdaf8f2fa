"""The cluster environments against Lightning's (pytorch-lightning 2.6.6 / lightning_fabric): the same environment
variables give the same ranks, addresses, ports, detection and errors."""

from __future__ import annotations

import os
from typing import Any

import pytest

import fulgor.strategies.environments as ours
from fulgor.rank import rank_zero_only

theirs = pytest.importorskip("lightning_fabric.plugins.environments")
pytestmark = pytest.mark.oracle

_VARIABLES = (
    "TORCHELASTIC_RUN_ID", "RANK", "LOCAL_RANK", "WORLD_SIZE", "GROUP_RANK", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT",
    "SLURM_NTASKS", "SLURM_JOB_NAME", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID", "SLURM_NTASKS_PER_NODE",
    "SLURM_NNODES", "SLURM_NODELIST", "SLURM_JOB_ID", "STANDALONE_PORT", "LSB_JOBID", "LSB_DJOB_RANKFILE",
    "JSM_NAMESPACE_LOCAL_RANK", "JSM_NAMESPACE_SIZE", "JSM_NAMESPACE_RANK",
)  # fmt: skip

SCENARIOS: dict[str, dict[str, str]] = {
    "nothing": {},
    "user_launched": {"LOCAL_RANK": "1", "NODE_RANK": "2", "MASTER_ADDR": "10.1.1.1", "MASTER_PORT": "4000"},
    "group_rank": {"LOCAL_RANK": "0", "GROUP_RANK": "3", "STANDALONE_PORT": "5555"},
    "torchrun": {"TORCHELASTIC_RUN_ID": "x", "RANK": "5", "LOCAL_RANK": "1", "WORLD_SIZE": "8", "GROUP_RANK": "2",
                 "MASTER_ADDR": "10.0.0.2", "MASTER_PORT": "29500"},
    "torchrun_no_address": {"TORCHELASTIC_RUN_ID": "x", "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2"},
    "slurm": {"SLURM_NTASKS": "4", "SLURM_JOB_NAME": "train", "SLURM_PROCID": "3", "SLURM_LOCALID": "1",
              "SLURM_NODEID": "1", "SLURM_NTASKS_PER_NODE": "2", "SLURM_NNODES": "2", "SLURM_NODELIST": "gpu[07-08]",
              "SLURM_JOB_ID": "9876543"},
    "slurm_interactive": {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "interactive", "SLURM_PROCID": "0",
                          "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NODELIST": "a,b"},
    "slurm_bad_ntasks": {"SLURM_NTASKS": "4", "SLURM_JOB_NAME": "train"},
    "kubeflow": {"RANK": "3", "WORLD_SIZE": "4", "MASTER_ADDR": "pod-0", "MASTER_PORT": "23456"},
}  # fmt: skip
CLASSES = ["LightningEnvironment", "TorchElasticEnvironment", "SLURMEnvironment", "KubeflowEnvironment"]
QUERIES = ["creates_processes_externally", "main_address", "main_port", "world_size", "global_rank", "local_rank",
           "node_rank", "detect"]  # fmt: skip


@pytest.fixture
def scenario(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key in _VARIABLES:
        monkeypatch.setenv(key, "")  # recorded, so that what the environments write is undone after the test
        monkeypatch.delenv(key)
    monkeypatch.setenv("PATH", "/nonexistent")  # no `srun` hint
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    variables: dict[str, str] = SCENARIOS[request.param]
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    return variables


def _ask(environment: Any, query: str) -> Any:
    try:
        value = getattr(environment, query)
        return value() if callable(value) else value
    except Exception as error:
        return (type(error).__name__, str(error))


def _snapshot(cls_name: str, module: Any) -> dict[str, Any]:
    """Every answer of a fresh environment, and the variables it left behind."""
    saved = dict(os.environ)
    try:
        environment = getattr(module, cls_name)()
    except Exception as error:
        return {"init": (type(error).__name__, str(error))}
    answers = {query: _ask(environment, query) for query in QUERIES}
    for devices, nodes in ((2, 2), (4, 2), (2, 1), (1, 1)):
        answers[f"validate {devices}x{nodes}"] = _ask(
            lambda d=devices, n=nodes: environment.validate_settings(d, n), "__call__"
        )
    answers["variables"] = {k: v for k, v in os.environ.items() if saved.get(k) != v}
    os.environ.clear()
    os.environ.update(saved)
    return answers


@pytest.mark.parametrize("scenario", list(SCENARIOS), indirect=True)
@pytest.mark.parametrize("cls_name", CLASSES)
def test_environment_answers_like_lightning(scenario: dict[str, str], cls_name: str) -> None:
    expected = _snapshot(cls_name, theirs)
    actual = _snapshot(cls_name, ours)
    if cls_name == "LightningEnvironment" and "MASTER_PORT" not in scenario and "STANDALONE_PORT" not in scenario:
        # a free port chosen at random by each: only its type can agree
        assert isinstance(actual.pop("main_port"), int)
        assert isinstance(expected.pop("main_port"), int)
    assert actual == expected


@pytest.mark.parametrize(
    "nodes", ["host0 host1", "host0,host1,host3", "host[5-9]", "host[3]", "alpha,beta[1-2]", "n[01-04,07]", "a[1,3]b"]
)
def test_root_node_address_like_lightning(nodes: str) -> None:
    assert ours.resolve_root_node_address(nodes) == theirs.SLURMEnvironment.resolve_root_node_address(nodes)


@pytest.mark.parametrize("scenario", ["slurm", "slurm_interactive", "nothing"], indirect=True)
def test_slurm_job_id_and_name_like_lightning(scenario: dict[str, str]) -> None:
    assert ours.SLURMEnvironment.job_id() == theirs.SLURMEnvironment.job_id()
    assert ours.SLURMEnvironment.job_name() == theirs.SLURMEnvironment.job_name()


@pytest.mark.parametrize("scenario", list(SCENARIOS), indirect=True)
def test_detection_order_like_lightning(scenario: dict[str, str]) -> None:
    from lightning_fabric.plugins.environments import LSFEnvironment, MPIEnvironment

    order = (theirs.TorchElasticEnvironment, theirs.SLURMEnvironment, LSFEnvironment, MPIEnvironment)
    expected = next((cls.__name__ for cls in order if cls.detect()), "LightningEnvironment")
    try:
        actual: Any = type(ours.detect_environment()).__name__
    except RuntimeError as error:  # SLURM's constructor refuses `--ntasks` without `--ntasks-per-node`
        actual = str(error)
        with pytest.raises(RuntimeError) as theirs_error:
            theirs.SLURMEnvironment()
        assert actual == str(theirs_error.value)
        return
    assert actual == expected


@pytest.mark.parametrize("scenario", ["nothing"], indirect=True)
def test_lsf_environment_like_lightning(
    scenario: dict[str, str], tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    rankfile = tmp_path / "ranks"
    rankfile.write_text(f"launch\nother\n{socket.gethostname()}\n{socket.gethostname()}\n")
    for key, value in {"LSB_JOBID": "12345", "LSB_DJOB_RANKFILE": str(rankfile), "JSM_NAMESPACE_LOCAL_RANK": "1",
                       "JSM_NAMESPACE_SIZE": "4", "JSM_NAMESPACE_RANK": "3"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    assert _snapshot("LSFEnvironment", ours) == _snapshot("LSFEnvironment", theirs)
    monkeypatch.delenv("JSM_NAMESPACE_RANK")
    assert _snapshot("LSFEnvironment", ours) == _snapshot("LSFEnvironment", theirs)
