"""A `training_step` that returns None skips the step in one process, and is an error when several processes train
(the others would wait in the gradient all-reduce): checked against pytorch-lightning 2.6.6 (oracle) through the
single-device strategy's assignable `world_size`, and end to end with 2 CPU processes (gloo)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader

from helpers.boring import XYDataset

REPO = Path(__file__).resolve().parents[2]
MESSAGE = (
    "Skipping the `training_step` by returning None in distributed training is not supported. It is recommended that"
    " you rewrite your training logic to avoid having to skip the step in the first place."
)


def _model(lib: ModuleType) -> Any:
    class Skipping(lib.LightningModule):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 2)
            self.steps = 0

        def training_step(self, batch: Any, batch_idx: int) -> None:
            self.steps += 1  # returns None: skip this batch

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

        def train_dataloader(self) -> Any:
            return DataLoader(XYDataset(8), batch_size=4)

    return Skipping()


def _trainer(lib: ModuleType, tmp_path: Path) -> Any:
    return lib.Trainer(max_steps=2, barebones=True, accelerator="cpu", devices=1, default_root_dir=tmp_path)


def test_world_size_of_the_single_device_strategy_is_assignable(lib: ModuleType, tmp_path: Path) -> None:
    trainer = _trainer(lib, tmp_path)
    assert (trainer.strategy.world_size, trainer.world_size) == (1, 1)
    trainer.strategy.world_size = 2
    assert (trainer.strategy.world_size, trainer.world_size) == (2, 2)


def test_skipping_in_one_process_is_allowed(lib: ModuleType, tmp_path: Path) -> None:
    model = _model(lib)
    trainer = _trainer(lib, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model)
    assert (model.steps, trainer.global_step) == (2, 2)  # each batch ran (the optimizer steps without gradients)


def test_skipping_with_several_processes_raises(lib: ModuleType, tmp_path: Path) -> None:
    model = _model(lib)
    trainer = _trainer(lib, tmp_path)
    trainer.strategy.world_size = 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError) as info:
            trainer.fit(model)
    assert str(info.value) == MESSAGE
    assert model.steps == 1


SCRIPT = """
import torch
from torch.utils.data import DataLoader, TensorDataset
import fulgor as pl

class Skipping(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)

    def training_step(self, batch, batch_idx):
        return None

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=2)

if __name__ == "__main__":
    trainer = pl.Trainer(
        strategy="ddp", accelerator="cpu", devices=2, max_steps=2, barebones=True, default_root_dir={root!r}
    )
    trainer.fit(Skipping())
"""


@pytest.mark.timeout(120)
def test_ddp_two_processes_raise_instead_of_hanging(tmp_path: Path) -> None:
    script = tmp_path / "skip.py"
    script.write_text(textwrap.dedent(SCRIPT.format(root=str(tmp_path))))
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90, check=False
    )
    assert done.returncode != 0
    assert f"RuntimeError: {MESSAGE}" in done.stderr, done.stderr[-3000:]
