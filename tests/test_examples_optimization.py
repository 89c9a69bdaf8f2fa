"""The optimization examples (manual-optimization GAN, seed section 3 frozen-backbone fine-tuning) run in a
subprocess; their printed numbers are checked."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(name: str, root: Path) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    env.pop("PL_TRAINER_MAX_EPOCHS", None)
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=root,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    return output


def numbers(pattern: str, text: str) -> tuple[float, ...]:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in output:\n{text}"
    return tuple(float(g) for g in match.groups())


def test_gan_steps_twice_per_batch_and_learns_the_target_mean(tmp_path: Path) -> None:
    out = run("gan_manual_optimization.py", tmp_path)
    assert "batches: 240, global_step: 480" in out  # 16 batches x 15 epochs, two optimizer steps each
    loss_g, loss_d = numbers(r"last losses: generator ([\d.]+), discriminator ([\d.]+)", out)
    assert 0.3 < loss_g < 2.0
    assert 0.5 < loss_d < 2.0  # neither side collapsed (softplus losses near log 2 and 2 log 2)
    (before,) = numbers(r"before: generated mean \(([-\d.]+),", out)
    (distance,) = numbers(r"distance of the generated mean to the target: ([\d.]+)", out)
    assert abs(before - 2.0) > 1.5
    assert distance < 0.5


def test_s3_freezes_the_pretrained_backbone_and_trains_the_head(tmp_path: Path) -> None:
    out = run("s3_pretrained_finetune.py", tmp_path)
    assert (tmp_path / "tiny-bert.pt").is_file()
    assert "trainable parameters after freeze(): 99 (the head), backbone training mode: False" in out
    assert "backbone weights unchanged: True" in out
    assert "head weights changed: True" in out
    assert "global_step: 128" in out  # 1024 pairs / 64 x 8 epochs
    loss_before, acc_before = numbers(r"before fine-tuning: loss ([\d.]+), accuracy ([\d.]+)", out)
    loss_after, acc_after = numbers(r"after fine-tuning: loss ([\d.]+), accuracy ([\d.]+)", out)
    assert loss_after < loss_before - 0.3
    assert acc_after > acc_before
    assert "attention (256, 8, 8)" in out  # forward also returns the attention, as in the notes
