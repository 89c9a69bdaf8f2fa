"""Kill a training subprocess at random steps (SIGKILL: resume from the periodic `last.ckpt`; SIGTERM: fulgor saves at
the next safe point and exits with code 75), resume each time with `ckpt_path="last"`, and compare the final weights
with an uninterrupted run, bit for bit (shuffle, 2 workers, accumulation and mid-epoch validation on)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fulgor.checkpointing import read_extra
from fulgor.trainer.preemption import PREEMPTED_EXIT_CODE
from reliability.common import assert_identical, run, weights

TESTS = str(Path(__file__).parents[1])
SRC = str(Path(__file__).parents[2] / "src")


def _segment(tmp_path: Path, kill_step: int, sig: int, resume: bool) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, TESTS])}
    args = [sys.executable, "-m", "reliability.common", str(tmp_path / "final.pt"), str(tmp_path / "run"), "2",
            str(kill_step), str(int(sig))] + (["resume"] if resume else [])  # fmt: skip
    return subprocess.run(args, env=env, cwd=TESTS, capture_output=True, text=True, timeout=240)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_at_random_steps_then_resumed_is_bit_identical(tmp_path: Path, sig: int) -> None:
    reference = weights(run(tmp_path / "ref", workers=2))
    steps = sorted(random.Random(int(sig)).sample(range(2, 15), 3))  # 15 optimizer steps in all
    for i, step in enumerate(steps):
        done = _segment(tmp_path, step, sig, resume=i > 0)
        expected = -signal.SIGKILL if sig == signal.SIGKILL else PREEMPTED_EXIT_CODE
        assert done.returncode == expected, done.stderr[-3000:]
        last = tmp_path / "run" / "ckpt" / "last.ckpt"
        saved = torch.load(last, weights_only=True)
        if sig == signal.SIGTERM:  # saved at the safe point right after the batch during which the signal came
            assert saved["global_step"] == step
            assert f"saved {last} at global_step={step}" in done.stderr
            phase = read_extra(str(last))["fulgor_resume"]["phase"]  # type: ignore[index]
            assert phase in ("between_batches", "in_validation")  # the next safe point may be a validation batch
        else:  # killed inside on_train_batch_end of `step`, before that step's periodic save
            assert saved["global_step"] == step - 1
    done = _segment(tmp_path, 0, sig, resume=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_identical(reference, torch.load(tmp_path / "final.pt", weights_only=True))
