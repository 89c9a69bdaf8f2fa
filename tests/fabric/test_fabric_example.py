"""examples/fabric_digits.py runs on CPU, in one process and in 2 DDP processes: it learns the digits, logs its
metrics to CSV and writes a checkpoint that loads back."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("sklearn")
pytestmark = pytest.mark.timeout(240)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fabric_digits.py"


@pytest.mark.parametrize(("devices", "steps"), [(1, 8 * 24), (2, 8 * 12)], ids=["single", "ddp2"])
def test_fabric_digits_example_trains(tmp_path: Path, devices: int, steps: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    for name in ("LOCAL_RANK", "MASTER_PORT", "WORLD_SIZE", "NODE_RANK", "FABRIC_DIGITS_ROOT"):
        env.pop(name, None)
    command = [sys.executable, str(EXAMPLE), "--root", str(tmp_path), "--devices", str(devices)]
    if devices > 1:
        command += ["--strategy", "ddp"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=200, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    final = re.search(r"final val_acc: ([\d.]+) \(steps (\d+)", proc.stdout)
    assert final is not None, proc.stdout
    assert float(final.group(1)) > 0.85
    assert int(final.group(2)) == steps
    assert proc.stdout.count("final val_acc") == 1  # `fabric.print` prints on local rank 0 only
    with open(tmp_path / "digits" / "version_0" / "metrics.csv") as file:
        rows = list(csv.DictReader(file))
    assert sum(1 for row in rows if row["val_acc"]) == 8
    assert sum(1 for row in rows if row["train_loss"]) == steps
    checkpoint = torch.load(tmp_path / "digits.ckpt")
    assert sorted(checkpoint) == ["model", "optimizer", "step"]
    assert checkpoint["step"] == steps
