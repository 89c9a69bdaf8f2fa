"""Fabric on 2 CPU processes through the shared DDPStrategy: `launch` goes through the strategy's launcher (spawn),
each process runs `setup_environment` once, `rank_zero_first` lets rank 0 finish the block before rank 1 enters it,
and `all_reduce` reaches the strategy with Lightning's arguments (the world group, the operation by name)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(180)

SCRIPT = Path(__file__).parent / "scripts" / "fabric_strategy_ranks.py"


def test_rank_zero_first_and_all_reduce_through_the_strategy(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    for name in ("LOCAL_RANK", "MASTER_PORT", "WORLD_SIZE", "NODE_RANK"):
        env.pop(name, None)
    log = tmp_path / "order.log"
    proc = subprocess.run([sys.executable, str(SCRIPT), str(log)], capture_output=True, text=True, timeout=150, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    result = ast.literal_eval(line.removeprefix("RESULT "))
    assert result == {"total": 3.0, "mean": 0.5, "environments": 1, "reduced": (True, "mean")}
    events = {}
    for entry in log.read_text().splitlines():
        rank, what, when = entry.split()
        events[(int(rank), what)] = float(when)
    assert events[(0, "out")] <= events[(1, "in")]  # rank 1 entered only after rank 0 left
