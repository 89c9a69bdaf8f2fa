"""Differential tests: the same Fabric training script under fulgor and under Lightning Fabric 2.6.6 (the oracle), on
one CPU process and on 2 DDP processes (gloo), with 32-true, 64-true and bf16-mixed: equal weights, equal logged
metrics, and checkpoints that each side loads from the other."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("lightning_fabric")

pytestmark = [pytest.mark.oracle, pytest.mark.timeout(300)]

SCRIPTS = Path(__file__).parent / "scripts"
RUN_TIMEOUT = 120


def _run(*args: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    for name in ("LOCAL_RANK", "MASTER_PORT", "WORLD_SIZE", "NODE_RANK", "MASTER_ADDR"):
        env.pop(name, None)
    proc = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=RUN_TIMEOUT, env=env, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _metrics(out: Path) -> list[dict[str, float]]:
    (path,) = out.glob("logs/**/metrics.csv")
    with open(path) as file:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(file)]


def _train(backend: str, strategy: str, devices: int, precision: str, out: Path) -> dict[str, torch.Tensor]:
    out.mkdir()
    _run(str(SCRIPTS / "fabric_train.py"), backend, strategy, str(devices), precision, str(out))
    return torch.load(out / "weights.pt")


@pytest.mark.parametrize(("strategy", "devices"), [("auto", 1), ("ddp", 2)], ids=["single", "ddp2"])
@pytest.mark.parametrize("precision", ["32-true", "64-true", "bf16-mixed"])
def test_same_training_same_weights_metrics_and_checkpoints(
    tmp_path: Path, strategy: str, devices: int, precision: str
) -> None:
    ours = _train("fulgor", strategy, devices, precision, tmp_path / "fulgor")
    theirs = _train("lightning", strategy, devices, precision, tmp_path / "lightning")
    assert ours.keys() == theirs.keys()
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], atol=1e-6, rtol=0)
    our_rows, their_rows = _metrics(tmp_path / "fulgor"), _metrics(tmp_path / "lightning")
    assert len(our_rows) == len(their_rows) == 24 // devices
    for mine, other in zip(our_rows, their_rows):
        assert mine.keys() == other.keys()
        for key in mine:
            assert mine[key] == pytest.approx(other[key], abs=1e-6), key
    our_ckpt = torch.load(tmp_path / "fulgor" / "ckpt.pt")
    their_ckpt = torch.load(tmp_path / "lightning" / "ckpt.pt")
    assert sorted(our_ckpt) == sorted(their_ckpt) == ["model", "optimizer", "step"]
    assert list(our_ckpt["model"]) == list(their_ckpt["model"])
    assert our_ckpt["optimizer"].keys() == their_ckpt["optimizer"].keys()
    # Each side loads the other's checkpoint into fresh objects.
    for loader, writer in (("fulgor", "lightning"), ("lightning", "fulgor")):
        result = tmp_path / f"{loader}_from_{writer}.pt"
        _run(str(SCRIPTS / "fabric_load.py"), loader, str(tmp_path / writer / "ckpt.pt"), str(result))
        loaded = torch.load(result)
        assert loaded["step"] == 24 // devices
        assert loaded["optimizer_steps"] == [24 / devices] * 4
        for key in ours:
            torch.testing.assert_close(loaded["weights"][key], theirs[key], atol=1e-6, rtol=0)
