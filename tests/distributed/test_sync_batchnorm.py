"""`Trainer(sync_batchnorm=True)` on 2 CPU processes (gloo), DDP and FSDP: the BatchNorm running statistics and the
weights equal those of one process trained on the global batch; without it they do not. Under DDP the layers are
BatchNorm1d again after the fit. (torch's SyncBatchNorm refuses CPU tensors; fulgor's does it.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).parent / "scripts" / "sync_bn.py"
RUN_TIMEOUT = 60  # seconds for one launched job
BN = ("net.1.running_mean", "net.1.running_var", "net.1.num_batches_tracked")

pytestmark = pytest.mark.timeout(240)


def _run(tmp: Path, name: str, *args: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    out = tmp / f"{name}.pt"
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--out", str(out), *args], cwd=tmp, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = process.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"the job did not end within {RUN_TIMEOUT}s (a hang):\n{output[-3000:]}")
    assert process.returncode == 0, output[-3000:]
    return torch.load(out, weights_only=True)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("sync_bn")
    return {
        "single": _run(tmp, "single", "--devices", "1", "--strategy", "auto", "--batch_size", "4"),
        "synced": _run(tmp, "synced", "--sync_batchnorm"),
        "local": _run(tmp, "local"),
        "fsdp": _run(tmp, "fsdp", "--strategy", "fsdp", "--sync_batchnorm"),
    }


@pytest.mark.parametrize("run", ["synced", "fsdp"])
def test_running_statistics_equal_one_process_on_the_global_batch(runs: dict[str, dict[str, Any]], run: str) -> None:
    single, synced = runs["single"], runs[run]
    assert single["steps"] == synced["steps"] == 8  # 16 samples, global batch 4, 2 epochs
    for key in BN:
        torch.testing.assert_close(synced["state"][key], single["state"][key], rtol=1e-5, atol=1e-6)
    for key, value in single["state"].items():  # and the gradients through the global statistics: same weights
        torch.testing.assert_close(synced["state"][key], value, rtol=1e-5, atol=1e-6)


def test_without_sync_the_statistics_are_per_process(runs: dict[str, dict[str, Any]]) -> None:
    single, local = runs["single"], runs["local"]
    assert not torch.allclose(local["state"]["net.1.running_var"], single["state"]["net.1.running_var"], rtol=1e-3)


def test_layers_are_batchnorm_again_after_the_fit(runs: dict[str, dict[str, Any]]) -> None:
    assert runs["synced"]["layers"] == ["BatchNorm1d"]
    assert runs["single"]["layers"] == ["BatchNorm1d"]
    # FSDP keeps the synchronised layers: its shards belong to them (and a later fit reuses the shards).
    assert runs["fsdp"]["layers"] == ["CPUSyncBatchNorm"]
