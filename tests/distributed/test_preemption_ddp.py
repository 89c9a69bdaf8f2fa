"""Preemption under DDP (CPU, gloo, 2 processes): SIGTERM reaching ONE rank makes both ranks agree at the next
`sync_every_n_batches` safe point, save one checkpoint (rank 0) at the same step, exit with code 75; resuming from it
reaches the weights of an uninterrupted run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from test_ddp import _finish
from test_fsdp import launch

from fulgor.strategies.environments import find_free_port

pytestmark = pytest.mark.timeout(200)

# 64 samples, batch 4 per rank: 8 steps per epoch, 16 in all. Rank 1 gets SIGTERM in the step with global_step 3;
# the ranks vote every 4 safe points, so both stop after their 5th batch (global_step 5), mid-epoch.
ARGS = ("--batch_size", "4", "--sync_every", "4")
SIGTERM = ("--sigterm_rank", "1", "--sigterm_step", "3")
STOP_LINE = "Received SIGTERM: saved {path} at global_step=5 in "


def _flat(result: dict[str, Any]) -> list[float]:
    return [v for row in result["weight"] for v in row] + list(result["bias"])


def _external_ranks(tmp: Path) -> list[tuple[int, str]]:
    """Both ranks started by the test itself (`LOCAL_RANK` set), so each exit code is seen."""
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(find_free_port())}
    jobs = [
        launch(["--root", str(tmp / "stopped"), "--out", str(tmp / "stopped.json"), *ARGS, *SIGTERM], tmp,
               {**env, "LOCAL_RANK": str(rank)})
        for rank in (0, 1)
    ]  # fmt: skip
    return [_finish(job) for job in jobs]


@pytest.fixture(scope="module")
def stopped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[int, str]]]:
    tmp = tmp_path_factory.mktemp("preempt")
    return tmp, _external_ranks(tmp)


def test_sigterm_on_one_rank_stops_both_at_the_same_step(stopped: tuple[Path, list[tuple[int, str]]]) -> None:
    tmp, results = stopped
    (code0, out0), (code1, out1) = results
    assert (code0, code1) == (75, 75), out0[-2000:] + out1[-2000:]
    assert "rank 0 stopped at global_step=5" in out0.splitlines()
    assert "rank 1 stopped at global_step=5" in out1.splitlines()
    path = Path("stopped") / "checkpoints" / "last.ckpt"
    # rank 0 writes and reports; rank 1 only follows the vote.
    assert STOP_LINE.format(path=tmp / path) in out0
    assert "Received SIGTERM" not in out1
    assert not (tmp / "stopped.json").exists()
    files = sorted(str(p.relative_to(tmp)) for p in (tmp / "stopped").rglob("*") if p.is_file())
    assert files == [str(path)]
    checkpoint = torch.load(tmp / path, weights_only=False)
    assert (checkpoint["global_step"], checkpoint["epoch"]) == (5, 0)


def test_resume_reaches_the_uninterrupted_weights(stopped: tuple[Path, list[tuple[int, str]]]) -> None:
    tmp, _ = stopped
    checkpoint = tmp / "stopped" / "checkpoints" / "last.ckpt"
    runs: dict[str, dict[str, Any]] = {}
    for name, extra in (("resumed", ("--ckpt_path", str(checkpoint))), ("uninterrupted", ())):
        root = "stopped" if name == "resumed" else name
        code, output = _finish(launch(["--root", str(tmp / root), "--out", str(tmp / f"{name}.json"), *ARGS,
                                       *extra], tmp))  # fmt: skip
        assert code == 0, output[-3000:]
        if name == "resumed":
            assert f"Restored all states from the checkpoint at {checkpoint}" in output
        runs[name] = json.loads((tmp / f"{name}.json").read_text())
    assert (runs["resumed"]["global_step"], runs["uninterrupted"]["global_step"]) == (16, 16)
    assert _flat(runs["resumed"]) == pytest.approx(_flat(runs["uninterrupted"]), abs=1e-7)


def test_ddp_launcher_job_exits_75_without_a_watchdog_error(tmp_path: Path) -> None:
    code, output = _finish(launch(["--root", str(tmp_path), "--out", str(tmp_path / "o.json"), *ARGS, *SIGTERM],
                                  tmp_path))  # fmt: skip
    assert code == 75, output[-3000:]
    assert "rank 1 stopped at global_step=5" in output.splitlines()
    assert "rank 0 stopped at global_step=5" in output.splitlines()
    assert "exited with code" not in output  # rank 1's exit 75 is not reported as a crash
    assert [p.name for p in tmp_path.rglob("*.ckpt")] == ["last.ckpt"]
