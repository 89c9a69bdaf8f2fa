"""`fulgor describe` (fulgor.describe): the plan of a Trainer + model printed without training."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import fulgor
from fulgor.callbacks import EarlyStopping, ModelCheckpoint
from fulgor.describe import describe
from fulgor.loggers import CSVLogger
from helpers.boring import boring_classes

ROOT = Path(__file__).resolve().parents[1]
BoringModel = boring_classes(fulgor).BoringModel


class WithEpochEnd(BoringModel):  # type: ignore[misc,valid-type]
    def on_train_epoch_end(self) -> None: ...

    def validation_epoch_end(self, outputs: Any) -> None: ...


def test_describe_prints_the_resolved_plan(tmp_path: Path) -> None:
    trainer = fulgor.Trainer(
        max_epochs=3,
        logger=CSVLogger(str(tmp_path)),
        callbacks=[ModelCheckpoint(monitor="val_loss", save_top_k=2, save_last=True), EarlyStopping("val_loss")],
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )
    text = describe(trainer, WithEpochEnd())
    log_dir = os.path.join(str(tmp_path), "lightning_logs", "version_0")
    assert text.splitlines() == [
        "fulgor plan: Trainer.fit(WithEpochEnd)",
        "devices:",
        "  accelerator: cpu    devices: [0] (1 per node)    num_nodes: 1",
        "  strategy: SingleDeviceStrategy    precision: 32-true",
        "loop:",
        "  max_epochs: 3    min_epochs: None    max_steps: -1    min_steps: None",
        "  limit_train_batches: 1.0    limit_val_batches: 1.0    val_check_interval: 1.0    check_val_every_n_epoch: 1",
        "  num_sanity_val_steps: 2    accumulate_grad_batches: 1    gradient_clip_val: None    log_every_n_steps: 50",
        "  fast_dev_run: False",
        "callbacks (call order):",
        "  1. EarlyStopping  [monitors metrics: its on_train_epoch_end runs after the module's]",
        "  2. ModelCheckpoint  [monitors metrics: its on_train_epoch_end runs after the module's]",
        "hooks overridden (receivers in call order; every other hook costs nothing):",
        "  setup: EarlyStopping, ModelCheckpoint",
        "  on_train_start: ModelCheckpoint",
        "  on_train_end: ModelCheckpoint",
        "  on_train_epoch_end: WithEpochEnd, EarlyStopping, ModelCheckpoint",
        "  on_validation_end: EarlyStopping, ModelCheckpoint",
        "  on_exception: ModelCheckpoint",
        "1.x hooks (called where Lightning 1.9.5 called them; outputs kept only for *_epoch_end):",
        "  validation_epoch_end",
        "files:",
        f"  default_root_dir: {tmp_path}",
        f"  logger CSVLogger: {log_dir}",
        "  checkpoint: ModelCheckpoint: every 1 epoch(s), keeps best 2 by val_loss (min), plus last.ckpt,"
        " named {epoch}-{step}.ckpt",
        f"    into {os.path.join(log_dir, 'checkpoints')}",
    ]
    assert not (tmp_path / "lightning_logs").exists()  # nothing written


def run_describe(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "fulgor", *argv], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=120)  # fmt: skip


def test_fulgor_describe_stops_a_script_at_its_first_run(tmp_path: Path) -> None:
    script = ROOT / "tests" / "compat_scripts" / "pl_import.py"
    for argv in (["describe", str(script), str(tmp_path)], ["run", "--describe", str(script), str(tmp_path)]):
        proc = run_describe(*argv, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert lines[0] == "fulgor plan: Trainer.fit(Regressor)"
        assert "  checkpoint: ModelCheckpoint: every 1 epoch(s), keeps the latest, named {epoch}-{step}.ckpt" in lines
        assert f"    into {tmp_path / 'checkpoints'}" in lines  # logger=False: default_root_dir/checkpoints
        assert "RESULT" not in proc.stdout
    assert list(tmp_path.iterdir()) == []
