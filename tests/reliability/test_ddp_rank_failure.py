"""A rank of a self-launched 2-process DDP job (gloo, CPU) raises: the other rank stops within seconds, and the job's
error names the failed rank, its exit code and the last line of its exception (not only gloo's "Connection closed")."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "scripts" / "ddp_rank_raises.py"
SRC = str(Path(__file__).parents[2] / "src")
TIMEOUT = 90


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.timeout(TIMEOUT + 30)
def test_a_rank_that_raises_is_named_with_its_exit_code_and_exception(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK")}
    env.update(PYTHONPATH=SRC, OMP_NUM_THREADS="1")
    process = subprocess.Popen([sys.executable, str(SCRIPT), str(tmp_path), "1", "3"], env=env, cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)  # fmt: skip
    try:
        output, _ = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"the job hung:\n{process.communicate()[0][-3000:]}")
    ended = time.time()
    assert ended - float((tmp_path / "raised_at").read_text()) < 10  # the job ended within seconds of the failure
    assert process.returncode != 0
    assert "fulgor: the process of global rank 1 (local rank 1, pid " in output, output[-3000:]
    assert "exited with code 1 after raising `ValueError: rank 1 broke at step 3`" in output, output[-3000:]
    stopped_at = time.monotonic()
    while _alive(process.pid) and time.monotonic() < stopped_at + 10:
        time.sleep(0.2)
    assert not _alive(process.pid), "a rank outlived the failed job"
