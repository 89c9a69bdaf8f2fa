"""End-to-end DDP on CPU with gloo and 2 processes: `ddp` (script re-launch), `ddp_spawn`/`ddp_fork`, torchrun and
two torchrun "nodes" on loopback train the same model as one process with the double batch; one copy of each file;
`sync_dist` reductions; a killed rank ends the job with a clear message instead of a hang."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).parent / "scripts" / "train.py"
RUN_TIMEOUT = 50  # seconds for one launched job; the pytest timeout of each test adds room for its other runs

# Two steps per epoch, two epochs: the weights every launch must reproduce (to 1e-6).
pytestmark = pytest.mark.timeout(150)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env


def _launch(prefix: list[str], args: list[str], cwd: Path) -> subprocess.Popen[str]:
    command = [sys.executable, *prefix, str(SCRIPT), *args]
    return subprocess.Popen(
        command, cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip


def _finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        output, _ = process.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"the job did not end within {RUN_TIMEOUT}s (a hang):\n{output[-3000:]}")
    return process.returncode, output


def _run(tmp: Path, name: str, *args: str, prefix: tuple[str, ...] = ()) -> tuple[dict[str, Any], str]:
    out = tmp / f"{name}.json"
    code, output = _finish(_launch(list(prefix), ["--root", str(tmp / name), "--out", str(out), *args], tmp))
    assert code == 0, output[-3000:]
    return json.loads(out.read_text()), output


class _Runs:
    """Each configuration runs once per test session; the tests compare them."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.cache: dict[str, tuple[dict[str, Any], str]] = {}

    def get(self, name: str, *args: str, prefix: tuple[str, ...] = ()) -> tuple[dict[str, Any], str]:
        if name not in self.cache:
            self.cache[name] = _run(self.tmp, name, *args, prefix=prefix)
        return self.cache[name]

    def single(self) -> dict[str, Any]:
        return self.get("single", "--devices", "1", "--strategy", "auto", "--batch_size", "32")[0]

    def ddp(self) -> tuple[dict[str, Any], str]:
        return self.get("ddp", "--validate_after")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> _Runs:
    return _Runs(tmp_path_factory.mktemp("ddp"))


def _assert_same_weights(a: dict[str, Any], b: dict[str, Any]) -> None:
    for key in ("weight", "bias"):
        flat_a = [v for row in a[key] for v in (row if isinstance(row, list) else [row])]
        flat_b = [v for row in b[key] for v in (row if isinstance(row, list) else [row])]
        assert flat_a == pytest.approx(flat_b, abs=1e-6), key


def test_ddp_two_by_16_equals_one_process_with_batch_32(runs: _Runs) -> None:
    single = runs.single()
    ddp, output = runs.ddp()
    _assert_same_weights(ddp, single)
    assert (ddp["global_step"], single["global_step"]) == (4, 4)
    assert (ddp["world_size"], single["world_size"]) == (2, 1)
    lines = output.splitlines()
    assert "Initializing distributed: GLOBAL_RANK: 0, MEMBER: 1/2" in lines
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in lines
    rule = "-" * 100
    start = lines.index("distributed_backend=gloo")
    assert lines[start - 1 : start + 3] == [
        rule, "distributed_backend=gloo", "All distributed processes registered. Starting with 2 processes", rule,
    ]  # fmt: skip
    # Rank 0 only, and once: `validate` after `fit` reuses the process group.
    assert output.count("All distributed processes registered") == 1


def test_validate_after_fit_reuses_the_ranks(runs: _Runs) -> None:
    ddp, _ = runs.ddp()
    assert ddp["validated"] == [{"val_loss": pytest.approx(ddp["metrics"]["val_loss"], abs=1e-6)}]


def test_one_copy_of_each_file(runs: _Runs) -> None:
    ddp, _ = runs.ddp()
    logs = runs.tmp / "ddp" / "lightning_logs"
    assert [p.name for p in logs.iterdir()] == ["version_0"]  # a second writer would have made version_1
    assert [p.name for p in (logs / "version_0" / "checkpoints").glob("*.ckpt")] == ["epoch=1-step=4.ckpt"]
    assert ddp["best_model_path"] == "lightning_logs/version_0/checkpoints/epoch=1-step=4.ckpt"
    rows = (logs / "version_0" / "metrics.csv").read_text().splitlines()
    assert rows[0] == "epoch,rank_max,rank_mean,rank_sum,step,train_loss,val_loss"
    # fit: val + train rows for 2 epochs; validate: one row. A second writer would duplicate rows.
    assert [row.split(",")[0] for row in rows[1:]] == ["0", "0", "1", "1", "2"]


def test_sync_dist_max_and_sum_are_cross_rank_reductions(runs: _Runs) -> None:
    metrics = runs.ddp()[0]["metrics"]
    # Each rank logs its rank twice per epoch (2 batches): max over ranks 1, sum over steps and ranks 0+0+1+1 = 2.
    assert metrics["rank_max"] == 1.0
    assert metrics["rank_sum"] == 2.0


def test_sync_dist_mean_is_the_cross_rank_mean(runs: _Runs) -> None:
    assert runs.ddp()[0]["metrics"]["rank_mean"] == 0.5


def test_torchrun_and_multiprocessing_launches_agree_with_ddp(runs: _Runs) -> None:
    ddp, _ = runs.ddp()
    torchrun, _ = runs.get("torchrun", prefix=("-m", "torch.distributed.run", "--nproc_per_node", "2"))
    spawn, _ = runs.get("spawn", "--strategy", "ddp_spawn", "--launcher_api")
    fork, _ = runs.get("fork", "--strategy", "ddp_fork", "--launcher_api")
    for other in (torchrun, spawn, fork):
        _assert_same_weights(other, ddp)
        assert other["metrics"] == pytest.approx(ddp["metrics"], abs=1e-6)
        assert other["best_model_path"] == ddp["best_model_path"]


def test_ddp_spawn_through_trainer_fit(runs: _Runs) -> None:
    tmp = runs.tmp
    process = _launch([], ["--root", str(tmp / "fit_spawn"), "--out", str(tmp / "fit_spawn.json"),
                           "--strategy", "ddp_spawn"], tmp)  # fmt: skip
    code, output = _finish(process)
    assert code == 0, output[-3000:]
    _assert_same_weights(json.loads((tmp / "fit_spawn.json").read_text()), runs.ddp()[0])


def test_two_torchrun_nodes_on_loopback_train_one_model(runs: _Runs) -> None:
    from fulgor.strategies.environments import find_free_port

    tmp, port = runs.tmp, find_free_port()
    jobs = [
        _launch(
            [
                "-m",
                "torch.distributed.run",
                "--nnodes",
                "2",
                "--nproc_per_node",
                "1",
                "--node_rank",
                str(node),
                "--master_addr",
                "127.0.0.1",
                "--master_port",
                str(port),
            ],
            [
                "--root",
                str(tmp / "nodes"),
                "--out",
                str(tmp / f"node{node}.json"),
                "--devices",
                "1",
                "--num_nodes",
                "2",
            ],
            tmp,
        )
        for node in (0, 1)
    ]
    results = [_finish(job) for job in jobs]
    assert [code for code, _ in results] == [0, 0], results[0][1][-2000:] + results[1][1][-2000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in results[1][1]
    assert not (tmp / "node1.json").exists()  # only global rank 0 reports
    _assert_same_weights(json.loads((tmp / "node0.json").read_text()), runs.ddp()[0])
    logs = tmp / "nodes" / "lightning_logs"
    assert [p.name for p in logs.iterdir()] == ["version_0"]
    assert [p.name for p in (logs / "version_0" / "checkpoints").glob("*.ckpt")] == ["epoch=1-step=4.ckpt"]


def _session_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_killed_rank_ends_the_job_with_a_clear_error(tmp_path: Path) -> None:
    process = _launch([], ["--root", str(tmp_path), "--out", str(tmp_path / "o.json"), "--kill_rank", "1",
                           "--kill_step", "2"], tmp_path)  # fmt: skip
    code, output = _finish(process)
    assert code != 0
    assert "fulgor: the process of global rank 1 (local rank 1, pid " in output
    assert "exited with code -9. Stopping every process of this job so that none waits forever for it." in output
    assert not (tmp_path / "o.json").exists()
    deadline = time.monotonic() + 10
    while _session_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _session_alive(process.pid), "a rank outlived the failed job"


def test_killed_rank_zero_stops_the_other_rank(tmp_path: Path) -> None:
    process = _launch([], ["--root", str(tmp_path), "--out", str(tmp_path / "o.json"), "--kill_rank", "0",
                           "--kill_step", "2"], tmp_path)  # fmt: skip
    code, _ = _finish(process)
    assert code == -signal.SIGKILL
    deadline = time.monotonic() + 20
    while _session_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _session_alive(process.pid), "rank 1 kept running after rank 0 died"
