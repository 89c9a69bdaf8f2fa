"""DDP on CUDA: nccl with one process per GPU, and two ranks sharing one GPU over gloo (the most a one-GPU machine
can show), each compared with the CPU run of the same script. Marked `gpu`: `pytest -m gpu tests/gpu`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    pytest.mark.timeout(240),
]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tests" / "distributed" / "scripts" / "train.py"


def _run(tmp: Path, name: str, *args: str) -> tuple[dict[str, Any], str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "RANK", "WORLD_SIZE")}
    env["PYTHONPATH"] = str(REPO / "src")
    out = tmp / f"{name}.json"
    command = [sys.executable, str(SCRIPT), "--root", str(tmp / name), "--out", str(out), *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180, cwd=tmp)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return json.loads(out.read_text()), done.stdout + done.stderr


def _close(a: dict[str, Any], b: dict[str, Any]) -> None:
    for key in ("weight", "bias"):
        assert torch.tensor(a[key]) == pytest.approx(torch.tensor(b[key]), abs=1e-5), key


def test_nccl_one_gpu_matches_cpu(tmp_path: Path) -> None:
    cpu, _ = _run(tmp_path, "cpu", "--devices", "1", "--strategy", "auto", "--batch_size", "32")
    nccl, output = _run(tmp_path, "nccl", "--accelerator", "cuda", "--devices", "1", "--strategy", "ddp",
                        "--batch_size", "32")  # fmt: skip
    assert "distributed_backend=nccl" in output
    assert "All distributed processes registered. Starting with 1 processes" in output
    _close(nccl, cpu)


def test_two_ranks_on_one_gpu_over_gloo_match_cpu_ddp(tmp_path: Path) -> None:
    cpu, _ = _run(tmp_path, "cpu", "--devices", "1", "--strategy", "auto", "--batch_size", "32")
    # nccl refuses two ranks on one GPU; gloo (with CUDA tensors) does not: two torchrun "nodes" of one rank each.
    port = "29577"
    procs = []
    for node in (0, 1):
        env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "RANK", "WORLD_SIZE")}
        env["PYTHONPATH"] = str(REPO / "src")
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
                   "--node_rank", str(node), "--master_addr", "127.0.0.1", "--master_port", port, str(SCRIPT),
                   "--root", str(tmp_path / "gloo"), "--out", str(tmp_path / f"gloo{node}.json"),
                   "--accelerator", "cuda", "--devices", "1", "--num_nodes", "2", "--backend", "gloo"]  # fmt: skip
        procs.append(subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))  # fmt: skip
    outputs = [p.communicate(timeout=180)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    _close(json.loads((tmp_path / "gloo0.json").read_text()), cpu)
