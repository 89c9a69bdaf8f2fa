"""Regression guards for per-step cost that do not time anything: Python calls made inside src/fulgor and hook
dispatches per training step, counted with a profiler hook; and `import fulgor` leaving optional packages alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

import fulgor
from fulgor.trainer import dispatch

FULGOR_DIR = str(Path(fulgor.__file__).resolve().parent)
CALL_HOOK = dispatch.call_hook.__code__

# Measured on the minimal config (logger, checkpointing, progress bar and summary off): 16 Python calls inside
# src/fulgor and 0 call_hook dispatches per training step (the six per-batch hooks nobody overrides are skipped
# before the call; their receivers are resolved once per run). It was 49 calls and 6 dispatches when this guard was
# written. The bounds leave a little room; raising them needs a reason (a new per-step feature).
MAX_FULGOR_CALLS_PER_STEP = 18
MAX_HOOK_DISPATCHES_PER_STEP = 0


class TinyMLP(fulgor.LightningModule):
    """Workload W1 of benchmarks/: a 32->32->1 MLP, MSE, SGD."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1))

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        return F.mse_loss(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def count_calls(steps: int, root: Path) -> tuple[int, int]:
    """(Python calls inside src/fulgor, call_hook dispatches) during a `fit` of `steps` batches."""
    g = torch.Generator().manual_seed(1)
    n = steps * 32
    loader = DataLoader(TensorDataset(torch.randn(n, 32, generator=g), torch.randn(n, 1, generator=g)), batch_size=32)
    trainer = fulgor.Trainer(
        max_epochs=1, default_root_dir=str(root), logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    counts = {"fulgor": 0, "hooks": 0}

    def profiler(frame: Any, event: str, arg: Any) -> None:
        if event != "call":
            return
        code = frame.f_code
        if code.co_filename.startswith(FULGOR_DIR):
            counts["fulgor"] += 1
        if code is CALL_HOOK:
            counts["hooks"] += 1

    model = TinyMLP()
    sys.setprofile(profiler)
    try:
        trainer.fit(model, loader)
    finally:
        sys.setprofile(None)
    assert trainer.global_step == steps
    return counts["fulgor"], counts["hooks"]


@pytest.fixture(scope="module")
def per_step(tmp_path_factory: pytest.TempPathFactory) -> tuple[float, float]:
    """Calls per step as the difference of a 400-step and a 200-step fit, so one-off setup costs cancel out."""
    short = count_calls(200, tmp_path_factory.mktemp("short"))
    long = count_calls(400, tmp_path_factory.mktemp("long"))
    return (long[0] - short[0]) / 200, (long[1] - short[1]) / 200


def test_python_calls_inside_fulgor_per_training_step_are_bounded(per_step: tuple[float, float]) -> None:
    calls, _ = per_step
    assert calls <= MAX_FULGOR_CALLS_PER_STEP, (
        f"{calls:.2f} Python calls inside src/fulgor per training step (bound {MAX_FULGOR_CALLS_PER_STEP}): "
        "profile benchmarks/run.py --only W1 and remove the new per-step work, or raise the bound with a reason"
    )


def test_hook_dispatches_per_training_step_are_bounded(per_step: tuple[float, float]) -> None:
    _, hooks = per_step
    assert hooks <= MAX_HOOK_DISPATCHES_PER_STEP, (
        f"{hooks} call_hook dispatches per training step (bound {MAX_HOOK_DISPATCHES_PER_STEP}): hooks nobody "
        "overrides must not be dispatched per step"
    )


OPTIONAL = (
    "tensorboard", "rich", "jsonargparse", "matplotlib", "sklearn", "pytorch_lightning", "lightning", "mlflow", "wandb",
)  # fmt: skip


def test_import_fulgor_does_not_import_optional_packages() -> None:
    code = "import json, sys; import fulgor; print(json.dumps(sorted(sys.modules)))"
    src = str(Path(FULGOR_DIR).parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    modules = json.loads(proc.stdout.splitlines()[-1])
    assert "fulgor" in modules
    imported = sorted({name.split(".")[0] for name in modules} & set(OPTIONAL))
    assert imported == [], f"`import fulgor` imported optional packages {imported}: import them where they are used"
