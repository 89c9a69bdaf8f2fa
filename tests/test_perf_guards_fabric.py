"""Regression guard for Fabric's per-step cost that does not time anything: the Python calls made inside src/fulgor
per step of a Fabric loop (set-up module forward, `fabric.backward`, set-up optimizer step, set-up dataloader),
counted with a profiler hook on benchmarks/fabric_overhead.py's workload (W1's tiny MLP)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import fulgor
from fulgor.fabric import Fabric

FULGOR_DIR = str(Path(fulgor.__file__).resolve().parent)

# Measured on one CPU device, "32-true": 15 calls per step inside src/fulgor: 4 in the wrappers (the dataloader's
# resumption and its on-device check, `_FabricModule.forward`, `_FabricOptimizer.step`), 3 for the step through the
# strategy (`strategy.optimizer_step` -> the precision's), 8 for `Fabric.backward` -> `strategy.backward` -> the
# precision's pre_backward/backward/scale_loss/post_backward. It was 22 before the wrappers' fast paths (forward
# through `_call_through` and `forward_context`, `move_data_to_device` rebuilding every batch). Raising a bound
# needs a reason (a new per-step feature).
MAX_FULGOR_CALLS_PER_STEP = 16
# "bf16-mixed" converts inputs and outputs, enters autocast and guards `loss.backward()`: 37 measured.
MAX_FULGOR_CALLS_PER_STEP_BF16 = 40


def _loader(steps: int) -> DataLoader[Any]:
    g = torch.Generator().manual_seed(1)
    n = steps * 32
    return DataLoader(TensorDataset(torch.randn(n, 32, generator=g), torch.randn(n, 1, generator=g)), batch_size=32)


def count_calls(steps: int, precision: str = "32-true") -> int:
    """Python calls inside src/fulgor during `steps` steps of a Fabric loop (set-up excluded)."""
    fabric = Fabric(accelerator="cpu", devices=1, precision=precision)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1))
    model, optimizer = fabric.setup(net, torch.optim.SGD(net.parameters(), lr=0.01))
    loader = fabric.setup_dataloaders(_loader(steps))
    calls = [0]

    def profiler(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code.co_filename.startswith(FULGOR_DIR):
            calls[0] += 1

    sys.setprofile(profiler)
    try:
        for x, y in loader:
            loss = F.mse_loss(model(x), y)
            optimizer.zero_grad()
            fabric.backward(loss)
            optimizer.step()
    finally:
        sys.setprofile(None)
    return calls[0]


def _per_step(precision: str) -> float:
    # The difference of two run lengths cancels what happens once per loop (iterator creation, the last resumption).
    return (count_calls(20, precision) - count_calls(10, precision)) / 10


def test_fabric_step_calls_inside_fulgor_are_bounded() -> None:
    per_step = _per_step("32-true")
    assert 0 < per_step <= MAX_FULGOR_CALLS_PER_STEP, per_step


def test_fabric_mixed_precision_step_calls_are_bounded() -> None:
    per_step = _per_step("bf16-mixed")
    assert MAX_FULGOR_CALLS_PER_STEP < per_step <= MAX_FULGOR_CALLS_PER_STEP_BF16, per_step
