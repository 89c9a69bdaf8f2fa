"""The PyTorch profiler under DDP (2 CPU processes, gloo): each rank writes its own report and one chrome trace per
step kind, named with its local rank as Lightning names them (`fit-<filename>-<rank>[-<step action>...]`)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUN_TIMEOUT = 90  # seconds for the launched job

pytestmark = pytest.mark.timeout(150)

SCRIPT = textwrap.dedent(
    """
    import sys
    import warnings

    import fulgor
    from fulgor.demos.boring_classes import BoringModel
    from fulgor.profilers import PyTorchProfiler

    warnings.filterwarnings("ignore")
    out = sys.argv[1]
    trainer = fulgor.Trainer(
        default_root_dir=out, max_epochs=1, limit_train_batches=6, limit_val_batches=6, strategy="ddp",
        accelerator="cpu", devices=2, profiler=PyTorchProfiler(dirpath=out, filename="profiler"),
        enable_progress_bar=False, enable_model_summary=False, logger=False, enable_checkpointing=False,
    )
    trainer.fit(BoringModel())
    """
)


def test_each_rank_writes_its_report_and_traces(tmp_path: Path) -> None:
    script = tmp_path / "profile_ddp.py"
    script.write_text(SCRIPT)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    process = subprocess.Popen(
        [sys.executable, str(script), str(out)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = process.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"the job did not end within {RUN_TIMEOUT}s:\n{output[-3000:]}")
    assert process.returncode == 0, output[-3000:]
    files = sorted(re.sub(r"\.\d+\.pt\.trace", ".N.pt.trace", name) for name in os.listdir(out))
    assert files == [
        f"fit-profiler-{rank}{suffix}"
        for rank in (0, 1)
        for suffix in (
            "-[Strategy]DDPStrategy.training_step.N.pt.trace.json",
            "-[Strategy]DDPStrategy.validation_step.N.pt.trace.json",
            ".txt",
        )
    ]
    for rank in (0, 1):
        report = (out / f"fit-profiler-{rank}.txt").read_text()
        assert report.startswith(f"FIT Profiler Report{os.linesep}Profile stats for: records rank: {rank}")
