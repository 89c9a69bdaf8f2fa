"""Regression guards for per-step cost that do not time anything: Python calls made inside src/fulgor and hook
dispatches per training step, counted with a profiler hook; and `import fulgor` leaving optional packages alone."""

from __future__ import annotations

import contextlib
import gc
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

# Measured on the minimal config (logger, checkpointing, progress bar and summary off): 12 Python calls inside
# src/fulgor and 0 call_hook dispatches per training step (the six per-batch hooks nobody overrides are skipped before
# the call; their receivers are resolved once per run; torch's own optimizers step after the closure ran, without
# the optimizer calling it). It was 49 calls and 6 dispatches when this guard was written, 16 before the Run refactor.
# The bounds leave a little room; raising them needs a reason (a new per-step feature).
MAX_FULGOR_CALLS_PER_STEP = 13
MAX_HOOK_DISPATCHES_PER_STEP = 0
# Workload W2: every default feature on (progress bar, logger, ModelCheckpoint, summary) and `self.log` every step.
# Measured: 29.3 calls and 1 dispatch (the progress bar's `on_train_batch_end`; ModelCheckpoint's is not
# dispatched when it cannot save on a batch) per step, the logger's writes at `log_every_n_steps` included.
MAX_FULGOR_CALLS_PER_STEP_DEFAULTS = 31
MAX_HOOK_DISPATCHES_PER_STEP_DEFAULTS = 1


class TinyMLP(fulgor.LightningModule):
    """Workload W1 of benchmarks/: a 32->32->1 MLP, MSE, SGD; with `log`, W2's `self.log` every step."""

    def __init__(self, log: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1))
        self.log_loss = log

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss = F.mse_loss(self.net(x), y)
        if self.log_loss:
            self.log("train_loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


MINIMAL = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False}


def count_calls(steps: int, root: Path, defaults: bool = False) -> tuple[int, int]:
    """(Python calls inside src/fulgor, call_hook dispatches) during a `fit` of `steps` batches; the minimal config,
    or with `defaults` every default feature and `self.log` every step."""
    g = torch.Generator().manual_seed(1)
    n = steps * 32
    loader = DataLoader(TensorDataset(torch.randn(n, 32, generator=g), torch.randn(n, 1, generator=g)), batch_size=32)
    flags: dict[str, Any] = {} if defaults else MINIMAL
    trainer = fulgor.Trainer(max_epochs=1, default_root_dir=str(root), num_sanity_val_steps=0, **flags)
    counts = {"fulgor": 0, "hooks": 0}

    def profiler(frame: Any, event: str, arg: Any) -> None:
        if event != "call":
            return
        code = frame.f_code
        if code.co_filename.startswith(FULGOR_DIR):
            counts["fulgor"] += 1
        if code is CALL_HOOK:
            counts["hooks"] += 1

    model = TinyMLP(log=defaults)
    sys.setprofile(profiler)
    try:
        trainer.fit(model, loader)
    finally:
        sys.setprofile(None)
    assert trainer.global_step == steps
    return counts["fulgor"], counts["hooks"]


def calls_per_step(root: pytest.TempPathFactory, defaults: bool) -> tuple[float, float]:
    """Calls per step as the difference of a 400-step and a 200-step fit, so one-off setup costs cancel out."""
    short = count_calls(200, root.mktemp("short"), defaults)
    long = count_calls(400, root.mktemp("long"), defaults)
    return (long[0] - short[0]) / 200, (long[1] - short[1]) / 200


@pytest.fixture(scope="module")
def per_step(tmp_path_factory: pytest.TempPathFactory) -> tuple[float, float]:
    return calls_per_step(tmp_path_factory, defaults=False)


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


def test_default_features_per_training_step_are_bounded(tmp_path_factory: pytest.TempPathFactory) -> None:
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull), contextlib.redirect_stderr(devnull):
        calls, hooks = calls_per_step(tmp_path_factory, defaults=True)
    assert calls <= MAX_FULGOR_CALLS_PER_STEP_DEFAULTS, (
        f"{calls:.2f} Python calls inside src/fulgor per training step with the default features (bound"
        f" {MAX_FULGOR_CALLS_PER_STEP_DEFAULTS}): profile benchmarks/run.py --only W2 and remove the new per-step work"
    )
    assert hooks <= MAX_HOOK_DISPATCHES_PER_STEP_DEFAULTS, f"{hooks} call_hook dispatches per step with the defaults"


class TinyMLPWithValidation(TinyMLP):
    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.log("val_loss", F.mse_loss(self.net(batch[0]), batch[1]))


def cyclic_garbage(steps: int, root: Path) -> int:
    """Objects only the cycle collector can free, left by a default-features `fit` of `steps` training batches and
    as many validation batches (the collector is off during the fit, so nothing is collected behind our back)."""
    g = torch.Generator().manual_seed(1)
    n = steps * 32
    data = TensorDataset(torch.randn(n, 32, generator=g), torch.randn(n, 1, generator=g))
    trainer = fulgor.Trainer(max_epochs=1, default_root_dir=str(root), num_sanity_val_steps=0)
    model = TinyMLPWithValidation(log=True)
    gc.collect()
    gc.disable()
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull), contextlib.redirect_stderr(devnull):
            trainer.fit(model, DataLoader(data, batch_size=32), DataLoader(data, batch_size=32))
        del trainer, model
        return gc.collect()
    finally:
        gc.enable()


def test_training_and_validation_steps_leave_no_reference_cycles(tmp_path_factory: pytest.TempPathFactory) -> None:
    # A cycle per step (e.g. a closure referring to itself) keeps every batch and loss alive until the next
    # collection: more memory (GPU memory too), colder caches, and a collection every few dozen steps.
    short = cyclic_garbage(100, tmp_path_factory.mktemp("short"))
    long = cyclic_garbage(300, tmp_path_factory.mktemp("long"))
    assert (long - short) / 200 < 0.5, f"{long - short} more cyclic objects for 200 more steps ({short} -> {long})"


OPTIONAL = (
    "tensorboard", "tensorboardX", "rich", "yaml", "jsonargparse", "matplotlib", "sklearn", "pytorch_lightning",
    "lightning", "mlflow", "wandb",
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
