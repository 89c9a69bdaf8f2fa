"""SIGTERM to the whole process group (what SLURM and most schedulers send) while DataLoader workers run: the workers
do not take the signal, the checkpoint is saved at the next safe point, the process exits with the preemption code and
message, and the resumed run ends bit-identical to an uninterrupted one. A signal pending while an exception
propagates is not re-delivered (the exception is what the user sees)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import fulgor
from fulgor.trainer.preemption import PREEMPTED_EXIT_CODE
from reliability.common import assert_identical, run, weights

TESTS = str(Path(__file__).parents[1])
SRC = str(Path(__file__).parents[2] / "src")


def _segment(tmp_path: Path, kill_step: int, resume: bool) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, TESTS]), "RELIABILITY_FIRE": str(tmp_path / "fire")}
    args = [sys.executable, "-m", "reliability.common", str(tmp_path / "final.pt"), str(tmp_path / "run"), "2",
            str(kill_step), str(-int(signal.SIGTERM))] + (["resume"] if resume else [])  # fmt: skip
    # A session of its own: the group signal reaches the script and its workers, not pytest.
    return subprocess.run(args, env=env, cwd=TESTS, capture_output=True, text=True, timeout=240,
                          start_new_session=True)  # fmt: skip


@pytest.mark.timeout(600)
def test_sigterm_to_the_process_group_with_two_workers_saves_and_resumes_exactly(tmp_path: Path) -> None:
    reference = weights(run(tmp_path / "ref", workers=2))
    done = _segment(tmp_path, 5, resume=False)
    assert done.returncode == PREEMPTED_EXIT_CODE, done.stderr[-3000:]
    assert (tmp_path / "fire.fired").exists()  # a worker sent SIGTERM to the group
    last = tmp_path / "run" / "ckpt" / "last.ckpt"
    step = torch.load(last, weights_only=True)["global_step"]
    assert 5 <= step <= 7  # the workers prefetch: the signal comes one or two batches after it was armed
    assert f"Received SIGTERM: saved {last} at global_step={step}" in done.stderr
    assert "DataLoader worker" not in done.stderr  # no worker died of the signal
    done = _segment(tmp_path, 0, resume=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_identical(reference, torch.load(tmp_path / "final.pt", weights_only=True))


class SignalThenFail(fulgor.Callback):
    """SIGTERM during a batch, then an exception before the next safe point."""

    def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
        if trainer.global_step == 2:
            os.kill(os.getpid(), signal.SIGTERM)
            raise ValueError("user bug after the signal")


def test_signal_is_not_redelivered_while_an_exception_propagates(tmp_path: Path) -> None:
    from reliability.test_bad_input import QUIET, Tiny, data

    trainer = fulgor.Trainer(default_root_dir=str(tmp_path), max_epochs=2, callbacks=[SignalThenFail()], **QUIET)
    with pytest.raises(ValueError, match="user bug after the signal"):  # the process was not killed by SIGTERM
        trainer.fit(Tiny(), data())
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
