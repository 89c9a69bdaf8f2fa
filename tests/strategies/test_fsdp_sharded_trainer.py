"""The Trainer with `FSDPStrategy(state_dict_type="sharded")` on 2 CPU processes (gloo): ModelCheckpoint writes each
checkpoint as a folder in Lightning's layout (top-k removal, `last.ckpt` and the swap-in of a finished folder work on
folders), a fit resumes exactly from one, and Lightning (oracle) reads the folders and fulgor's full files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

SCRIPT = Path(__file__).parent / "fsdp_sharded_train.py"
REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(300)


def _run(root: Path, *args: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK")}
    env.update(OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", PYTHONPATH=str(REPO / "src"))
    out = root.with_suffix(".json")
    command = [sys.executable, str(SCRIPT), str(root), str(out), *args]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env, start_new_session=True)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return json.loads(out.read_text())  # type: ignore[no-any-return]


class _Runs:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.cache: dict[str, dict[str, Any]] = {}

    def get(self, name: str, *args: str) -> dict[str, Any]:
        if name not in self.cache:
            self.cache[name] = _run(self.root / name, *args)
        return self.cache[name]

    def sharded(self) -> dict[str, Any]:
        return self.get("sharded")

    def folder(self, name: str) -> Path:
        return self.root / "sharded" / "checkpoints" / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> _Runs:
    return _Runs(tmp_path_factory.mktemp("fsdp_sharded"))


def _max_difference(a: dict[str, list[float]], b: dict[str, list[float]]) -> float:
    assert a.keys() == b.keys()
    return max(abs(x - y) for key in a for x, y in zip(a[key], b[key], strict=True))


def test_checkpoints_are_folders_in_lightnings_layout(runs: _Runs) -> None:
    result = runs.sharded()
    assert result["global_step"] == 6
    # save_top_k=2 removed epoch 0's folder; last.ckpt is a folder of its own; no staging folder is left behind
    assert result["checkpoints"] == ["epoch=1-step=4.ckpt", "epoch=2-step=6.ckpt", "last.ckpt"]
    assert sorted(os.listdir(runs.folder(""))) == result["checkpoints"]
    for name in result["checkpoints"]:
        assert sorted(os.listdir(runs.folder(name))) == [".metadata", "__0_0.distcp", "__1_0.distcp", "meta.pt"]
    meta = torch.load(runs.folder("last.ckpt") / "meta.pt", weights_only=True)
    assert (meta["epoch"], meta["global_step"]) == (2, 6)
    assert "state_dict" not in meta  # the weights and optimizer states are the shards
    assert "optimizer_states" not in meta


def test_sharded_checkpoints_do_not_change_training(runs: _Runs) -> None:
    full = runs.get("full", "--state_dict_type", "full")
    assert full["checkpoints"] == ["epoch=1-step=4.ckpt", "epoch=2-step=6.ckpt", "last.ckpt"]
    assert os.path.isfile(runs.root / "full" / "checkpoints" / "last.ckpt")
    assert _max_difference(full["weights"], runs.sharded()["weights"]) == 0.0


def test_fit_resumes_exactly_from_a_sharded_folder(runs: _Runs) -> None:
    sharded = runs.sharded()
    resumed = runs.get("resumed", "--ckpt_path", str(runs.folder("epoch=1-step=4.ckpt")))
    assert resumed["global_step"] == 6
    assert _max_difference(resumed["weights"], sharded["weights"]) < 1e-7  # weights and Adam state restored


def test_a_meta_device_model_is_materialised_and_trained(runs: _Runs) -> None:
    sharded = runs.sharded()
    empty = runs.get("empty_init", "--empty_init")
    assert empty["on_meta"]  # `trainer.init_module(empty_init=True)` created it without memory
    assert not sharded["on_meta"]
    assert empty["global_step"] == 6
    # setup materialised it with `reset_parameters()`, drawing from the same seeded generator on every rank as the
    # eager construction did: the same initial weights, so the same trained ones
    assert _max_difference(empty["weights"], sharded["weights"]) == 0.0


def test_a_meta_device_model_resumes_from_a_folder(runs: _Runs) -> None:
    folder = str(runs.folder("epoch=1-step=4.ckpt"))
    resumed = runs.get("empty_resumed", "--empty_init", "--ckpt_path", folder)
    assert resumed["on_meta"]
    assert _max_difference(resumed["weights"], runs.sharded()["weights"]) < 1e-7  # the folder's weights, not an init


def test_fulgor_reads_a_folder_whole_on_one_process(runs: _Runs) -> None:
    from fulgor.strategies.fsdp_checkpoint import read_sharded

    shards = read_sharded(runs.folder("last.ckpt"))
    assert sorted(shards) == ["model", "optimizer_0"]
    weights = {key: value.flatten().tolist() for key, value in shards["model"].items()}
    assert _max_difference(weights, runs.sharded()["weights"]) == 0.0
    assert shards["optimizer_0"]["param_groups"][0]["params"] == ["net.0.weight", "net.0.bias", "net.2.weight",
                                                                  "net.2.bias"]  # fmt: skip


# ------------------------------------------------------------------------------------------------ oracle (Lightning)


@pytest.mark.oracle
def test_lightning_reads_the_sharded_folder(runs: _Runs) -> None:
    load = pytest.importorskip("lightning_fabric.utilities.load")
    checkpoint = load._load_distributed_checkpoint(runs.folder("last.ckpt"))
    expected = ["callbacks", "epoch", "global_step", "loops", "lr_schedulers", "model", "optimizer_0"]
    assert sorted(checkpoint) == [*expected, "pytorch-lightning_version"]
    weights = {key: value.flatten().tolist() for key, value in checkpoint["model"].items()}
    assert _max_difference(weights, runs.sharded()["weights"]) == 0.0


@pytest.mark.oracle
def test_lightning_loads_the_full_checkpoint_into_a_plain_module(runs: _Runs) -> None:
    lightning = pytest.importorskip("pytorch_lightning")

    class Model(lightning.LightningModule):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))

    full = runs.get("full", "--state_dict_type", "full")
    path = runs.root / "full" / "checkpoints" / "last.ckpt"
    model = Model.load_from_checkpoint(path, map_location="cpu")
    weights = {key: value.flatten().tolist() for key, value in model.state_dict().items()}
    assert _max_difference(weights, full["weights"]) == 0.0
    # the optimizer state is in torch's layout (parameter indices): a plain Adam loads it
    optimizer = torch.optim.Adam(model.parameters(), lr=1.0)
    optimizer.load_state_dict(torch.load(path, weights_only=False)["optimizer_states"][0])
    assert optimizer.param_groups[0]["lr"] == 0.05
    assert optimizer.state[model.net[0].weight]["exp_avg"].shape == (8, 4)
