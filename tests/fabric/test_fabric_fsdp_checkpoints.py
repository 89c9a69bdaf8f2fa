"""Fabric + FSDP checkpoints on 2 CPU processes (gloo): `fabric.save` writes Lightning's sharded folder (one shard file
per rank, `.metadata`, `meta.pt`) or a full file; `fabric.load` restores a fresh (or meta-device, `empty_init=True`)
sharded model and its optimizer exactly; the files read back with torch.distributed.checkpoint, with Lightning
Fabric (oracle) on one process, and through `fulgor fabric consolidate`; Lightning's `MixedPrecision` config sets
the dtype FSDP computes in."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

SCRIPT = Path(__file__).parent / "scripts" / "fabric_fsdp_ckpt.py"
REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(240)


def _run(folder: Path, mode: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK")}
    env.update(OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", PYTHONPATH=str(REPO / "src"))
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), mode, str(folder)], capture_output=True, text=True, timeout=200, env=env
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return torch.load(folder / "result.pt", weights_only=False)  # type: ignore[no-any-return]


class _Runs:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.cache: dict[str, dict[str, Any]] = {}

    def get(self, mode: str) -> dict[str, Any]:
        if mode not in self.cache:
            self.cache[mode] = _run(self.root / mode, mode)
        return self.cache[mode]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> _Runs:
    return _Runs(tmp_path_factory.mktemp("fabric_fsdp"))


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _assert_exact_restore(result: dict[str, Any]) -> None:
    trained, loaded = result["trained"], result["loaded"]
    assert list(trained["weights"]) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert _equal(loaded["weights"], trained["weights"])  # the fresh model (seed 2) now holds the trained weights
    assert _equal(loaded["exp_avg"], trained["exp_avg"])  # and the Adam moments
    assert result["lr"] == 0.1  # the saved param groups replaced the new optimizer's lr=0.5
    # one more step from the restored state matches the original run's next step exactly
    assert _equal(result["restored_next"]["weights"], result["original_next"]["weights"])
    assert not _equal(result["original_next"]["weights"], trained["weights"])
    assert (result["step"], result["rest"]) == (3, {"extra": {"note": "kept"}})


@pytest.mark.parametrize("mode", ["sharded", "full", "empty_init"])
def test_save_and_load_restore_model_and_optimizer_exactly(runs: _Runs, mode: str) -> None:
    result = runs.get(mode)
    _assert_exact_restore(result)
    if mode == "empty_init":
        assert result["was_meta"]  # `fabric.init_module(empty_init=True)` created it on the meta device


def test_sharded_folder_has_lightnings_layout(runs: _Runs) -> None:
    result = runs.get("sharded")
    folder = runs.root / "sharded" / "ckpt"
    assert sorted(os.listdir(folder)) == [".metadata", "__0_0.distcp", "__1_0.distcp", "meta.pt"]
    assert not [n for n in os.listdir(folder.parent) if n.endswith((".partial", ".old"))]  # staging swapped in
    assert torch.load(folder / "meta.pt", weights_only=True) == {"step": 3, "extra": {"note": "kept"}}
    # torch's own converter reads it as one state dict: the model's and the optimizer's entries under their keys
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    dcp_to_torch_save(folder, runs.root / "converted.pt")
    converted = torch.load(runs.root / "converted.pt", weights_only=False)
    assert sorted(converted) == ["model", "optimizer"]
    assert _equal(converted["model"], result["trained"]["weights"])
    moments = {k: v["exp_avg"] for k, v in converted["optimizer"]["state"].items()}
    assert _equal(moments, result["trained"]["exp_avg"])


def test_full_checkpoint_is_one_plain_file(runs: _Runs) -> None:
    result = runs.get("full")
    checkpoint = torch.load(runs.root / "full" / "model.ckpt", weights_only=True)
    assert sorted(checkpoint) == ["extra", "model", "optimizer", "step"]
    assert _equal(checkpoint["model"], result["trained"]["weights"])
    assert all(type(t) is torch.Tensor for t in checkpoint["model"].values())  # gathered, not DTensor shards
    assert checkpoint["optimizer"]["param_groups"][0]["params"] == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_fulgor_fabric_consolidate_makes_one_file(runs: _Runs) -> None:
    result = runs.get("sharded")
    output = runs.root / "consolidated.ckpt"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "fulgor", "fabric", "consolidate", str(runs.root / "sharded" / "ckpt")]
    proc = subprocess.run([*command, "--output_file", str(output)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    consolidated = torch.load(output, weights_only=False)
    assert sorted(consolidated) == ["extra", "model", "optimizer", "step"]
    assert _equal(consolidated["model"], result["trained"]["weights"])


def test_lightnings_mixed_precision_config_sets_fsdps_compute_dtype(runs: _Runs) -> None:
    result = runs.get("precision")  # FSDPStrategy(mixed_precision=MixedPrecision(bfloat16 params, float32 reduce))
    assert result["inner_dtype"] == torch.bfloat16  # the layers computed with bfloat16 parameters
    assert result["output_dtype"] == torch.float32  # Fabric hands back float32 outputs, as Lightning's FSDPPrecision
    assert (result["param_dtype"], result["grad_dtype"]) == (torch.float32, torch.float32)  # float32 shards and grads
    changes = [(result["after"][k] - result["before"][k]).abs().max().item() for k in result["before"]]
    assert all(0 < change < 0.1 for change in changes)  # one SGD step moved every tensor a little
    assert all(t.dtype == torch.float32 for t in result["after"].values())


# ------------------------------------------------------------------------------------------ oracle (Lightning Fabric)


def _plain_model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))


@pytest.mark.oracle
def test_lightning_fabric_loads_fulgors_full_checkpoint_on_one_process(runs: _Runs) -> None:
    lightning_fabric = pytest.importorskip("lightning_fabric")
    result = runs.get("full")
    model = _plain_model(5)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.5)
    state = {"model": model, "optimizer": optimizer, "step": 0}
    fabric = lightning_fabric.Fabric(accelerator="cpu", devices=1)
    rest = fabric.load(runs.root / "full" / "model.ckpt", state)
    assert (rest, state["step"], optimizer.param_groups[0]["lr"]) == ({"extra": {"note": "kept"}}, 3, 0.1)
    assert _equal(model.state_dict(), result["trained"]["weights"])
    first = model[0]  # type: ignore[index]
    assert torch.equal(optimizer.state[first.weight]["exp_avg"], result["trained"]["exp_avg"]["0.weight"])


@pytest.mark.oracle
def test_lightning_reads_fulgors_sharded_folder(runs: _Runs) -> None:
    load = pytest.importorskip("lightning_fabric.utilities.load")
    result = runs.get("sharded")
    checkpoint = load._load_distributed_checkpoint(runs.root / "sharded" / "ckpt")  # what `fabric consolidate` runs
    assert sorted(checkpoint) == ["extra", "model", "optimizer", "step"]
    assert _equal(checkpoint["model"], result["trained"]["weights"])
    assert checkpoint["optimizer"]["param_groups"][0]["params"] == ["0.weight", "0.bias", "2.weight", "2.bias"]
