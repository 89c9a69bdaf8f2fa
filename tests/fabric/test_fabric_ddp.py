"""fulgor's Fabric on 2 CPU processes (gloo): `launch(function)` with ddp_spawn and ddp_fork returns rank 0's result;
the distributed sampler shards the data, `no_backward_sync` keeps gradients local, a marked method goes through DDP,
collectives and `save` work across ranks. (DDP by script re-launch is in test_fabric_differential.py.)"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.timeout(180)

SCRIPT = Path(__file__).parent / "scripts" / "fabric_spawn.py"


@pytest.mark.parametrize("start_method", ["spawn", "fork"])
def test_launch_function_in_two_workers(tmp_path: Path, start_method: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    for name in ("LOCAL_RANK", "MASTER_PORT", "WORLD_SIZE", "NODE_RANK"):
        env.pop(name, None)
    ckpt = tmp_path / "model.ckpt"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), start_method, str(ckpt)], capture_output=True, text=True, timeout=150, env=env
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    result = ast.literal_eval(line.removeprefix("RESULT "))
    assert result["rank"] == 0
    assert result["world"] == 2
    # Each rank reads every other batch of the (unshuffled) data.
    assert result["seen"] == [[[0.0, 4.0], [8.0, 12.0]], [[2.0, 6.0], [10.0, 14.0]]]
    assert result["local_grads_differ"]
    assert result["same_weights"]
    assert result["from_rank1"] == 10
    assert result["sum"] == 3.0
    marks = sorted(p.name for p in tmp_path.glob("model.ckpt.atexit*"))
    assert marks == (["model.ckpt.atexit0", "model.ckpt.atexit1"] if start_method == "spawn" else [])
    assert list(torch.load(ckpt)["model"]) == ["layer.weight", "layer.bias"]
