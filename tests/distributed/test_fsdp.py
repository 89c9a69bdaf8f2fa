"""FSDP (torch's FSDP2 `fully_shard`) on CPU with gloo and 2 processes: the same weights as DDP for every sharding
strategy, CPU offload and auto-wrap; its full-state-dict checkpoints load into a plain single-process module and
resume an FSDP run exactly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from test_ddp import _env, _finish

SCRIPT = Path(__file__).parent / "scripts" / "train_ext.py"
pytestmark = pytest.mark.timeout(150)


def launch(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start train_ext.py (its own session, so that a hang can be killed whole), output captured."""
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *args], cwd=cwd, env={**_env(), **(env or {})}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def _run(tmp: Path, name: str, *args: str) -> dict[str, Any]:
    out = tmp / f"{name}.json"
    code, output = _finish(launch(["--root", str(tmp / name), "--out", str(out), *args], tmp))
    assert code == 0, output[-3000:]
    return json.loads(out.read_text())  # type: ignore[no-any-return]


class _Runs:
    """Each configuration runs once per module; the tests compare them."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.cache: dict[str, dict[str, Any]] = {}

    def get(self, name: str, *args: str) -> dict[str, Any]:
        if name not in self.cache:
            self.cache[name] = _run(self.tmp, name, *args)
        return self.cache[name]

    def ddp(self) -> dict[str, Any]:
        return self.get("ddp", "--strategy", "ddp")

    def fsdp(self) -> dict[str, Any]:
        return self.get("fsdp", "--strategy", "fsdp", "--every_epoch")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> _Runs:
    return _Runs(tmp_path_factory.mktemp("fsdp"))


def _flat(result: dict[str, Any]) -> list[float]:
    return [v for row in result["weight"] for v in row] + list(result["bias"])


def test_fsdp_trains_the_same_weights_as_ddp(runs: _Runs) -> None:
    ddp, fsdp = runs.ddp(), runs.fsdp()
    assert (ddp["strategy"], fsdp["strategy"]) == ("DDPStrategy", "FSDPStrategy")
    assert (ddp["global_step"], fsdp["global_step"]) == (4, 4)
    assert _flat(fsdp) == pytest.approx(_flat(ddp), abs=1e-5)
    assert fsdp["checkpoints"] == ["checkpoints/epoch=0-step=2.ckpt", "checkpoints/epoch=1-step=4.ckpt"]


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("cpu_offload", ("--strategy", "fsdp_cpu_offload")),
        ("shard_grad_op_wrapped", ("--sharding", "SHARD_GRAD_OP", "--wrap_linear")),
        ("no_shard", ("--sharding", "NO_SHARD")),
    ],
)
def test_fsdp_options_train_the_same_weights(runs: _Runs, name: str, args: tuple[str, ...]) -> None:
    assert _flat(runs.get(name, *args)) == pytest.approx(_flat(runs.ddp()), abs=1e-5)


def test_fsdp_checkpoint_loads_into_a_plain_module(runs: _Runs) -> None:
    fsdp = runs.fsdp()
    path = runs.tmp / "fsdp" / "checkpoints" / "epoch=1-step=4.ckpt"
    checkpoint = torch.load(path, weights_only=False)
    assert list(checkpoint["state_dict"]) == ["layer.weight", "layer.bias"]
    assert all(type(t) is torch.Tensor and t.device.type == "cpu" for t in checkpoint["state_dict"].values())
    assert checkpoint["state_dict"]["layer.weight"].shape == (2, 4)  # gathered, not rank 0's shard
    # torch's layout (parameter indices), as Lightning writes it: it loads into a plain optimizer
    assert checkpoint["optimizer_states"][0]["param_groups"][0]["params"] == [0, 1]
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        from train import Model
    finally:
        sys.path.remove(str(SCRIPT.parent))
    model = Model.load_from_checkpoint(path)  # one process, no process group
    weights = model.layer.weight.detach().flatten().tolist() + model.layer.bias.detach().tolist()
    assert weights == pytest.approx(_flat(fsdp), abs=1e-7)


def test_fsdp_resumes_from_its_checkpoint(runs: _Runs) -> None:
    fsdp = runs.fsdp()
    first_epoch = runs.tmp / "fsdp" / "checkpoints" / "epoch=0-step=2.ckpt"
    resumed = runs.get("resumed", "--strategy", "fsdp", "--ckpt_path", str(first_epoch))
    assert resumed["global_step"] == 4
    assert _flat(resumed) == pytest.approx(_flat(fsdp), abs=1e-7)
