"""Cluster environments, collectives and the spawn launcher as Lightning users call them: SLURM's settings check
(skipped for an interactive job, as `SLURMEnvironment.job_name` names it), `TorchCollective.scatter_object_list` by
keyword, and `MultiProcessingLauncher`'s default start method; differential against the real Lightning."""

from __future__ import annotations

import inspect
import os
from unittest import mock

import pytest
import torch.distributed as dist

from fulgor.collectives import TorchCollective
from fulgor.strategies.environments import SLURMEnvironment
from fulgor.strategies.launcher import MultiProcessingLauncher

_SLURM = {"SLURM_NTASKS_PER_NODE": "4", "SLURM_NNODES": "2", "SLURM_JOB_NAME": "train"}


def _errors(environment_class: type, devices: int, nodes: int) -> str | None:
    try:
        environment_class().validate_settings(num_devices=devices, num_nodes=nodes)
    except ValueError as err:
        return str(err)
    return None


@mock.patch.dict(os.environ, _SLURM)
def test_slurm_validate_settings() -> None:
    assert _errors(SLURMEnvironment, 4, 2) is None
    message = _errors(SLURMEnvironment, 2, 2)
    assert message is not None
    assert "the number of tasks per node configured in SLURM `--ntasks-per-node=4` does not match" in message
    assert "HINT: Set `devices=4`" in message
    message = _errors(SLURMEnvironment, 4, 1)
    assert message is not None
    assert "the number of nodes configured in SLURM `--nodes=2` does not match. HINT: Set `num_nodes=2`." in message


@mock.patch.dict(os.environ, _SLURM)
def test_slurm_interactive_job_skips_the_check() -> None:
    # An interactive job: the Trainer launches the processes, SLURM's task counts do not apply.
    with mock.patch.object(SLURMEnvironment, "job_name", return_value="interactive"):
        assert _errors(SLURMEnvironment, 4, 1) is None
    with mock.patch.object(SLURMEnvironment, "job_name", return_value="bash"):
        assert _errors(SLURMEnvironment, 1, 1) is None
    assert _errors(SLURMEnvironment, 1, 1) is not None


@pytest.mark.oracle
@mock.patch.dict(os.environ, _SLURM)
def test_slurm_messages_match_lightning() -> None:
    environments = pytest.importorskip("lightning_fabric.plugins.environments")
    for devices, nodes in [(4, 2), (2, 2), (4, 1), (3, 5)]:
        assert _errors(SLURMEnvironment, devices, nodes) == _errors(environments.SLURMEnvironment, devices, nodes)


def test_scatter_object_list_by_keyword(tmp_path: object) -> None:
    if dist.is_initialized():
        pytest.skip("a process group is already running in this process")
    collective = TorchCollective()
    collective.setup(main_address="127.0.0.1", main_port="0", backend="gloo", rank=0, world_size=1,
                     init_method=f"file://{tmp_path}/rendezvous")  # fmt: skip
    try:
        output: list[object] = [None]
        result = collective.scatter_object_list(
            scatter_object_output_list=output, scatter_object_input_list=[{"a": 1}], src=0
        )
        assert result is output
        assert output == [{"a": 1}]
    finally:
        collective.teardown()
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.mark.oracle
def test_collective_signatures_match_lightning() -> None:
    collectives = pytest.importorskip("lightning_fabric.plugins.collectives")
    for name in ("scatter_object_list", "gather_object", "all_gather_object", "broadcast_object_list", "send"):
        ours = list(inspect.signature(getattr(TorchCollective, name)).parameters)
        theirs = list(inspect.signature(getattr(collectives.TorchCollective, name)).parameters)
        assert ours == theirs, name


def test_multiprocessing_launcher_defaults_to_spawn() -> None:
    launcher = MultiProcessingLauncher(strategy=mock.Mock())
    assert launcher.start_method == "spawn"
    assert not launcher.is_interactive_compatible
    assert MultiProcessingLauncher(mock.Mock(), "fork").is_interactive_compatible
