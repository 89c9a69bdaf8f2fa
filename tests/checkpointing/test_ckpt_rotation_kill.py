"""ModelCheckpoint's file operations are ordered so that every `.ckpt` name and the `last` link point at a complete,
loadable file at every instant: checked at each removal, and after SIGKILLs at random moments of a rotating run."""

from __future__ import annotations

import importlib.util
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import fulgor
from fulgor.checkpoint_io import AsyncCheckpointIO, TorchCheckpointIO
from fulgor.checkpointing import verify_integrity

SCRIPT = Path(__file__).with_name("ckpt_rotation_script.py")
QUIET: dict[str, Any] = {
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "logger": False,
    "num_sanity_val_steps": 0,
}


def assert_every_name_loads(folder: Path) -> list[str]:
    """Every `.ckpt` name of `folder` (links included) opens as a complete checkpoint; returns the names."""
    names = sorted(n for n in os.listdir(folder) if n.endswith(".ckpt"))
    for name in names:
        path = folder / name
        assert path.exists(), f"{name} points at a missing file ({os.readlink(path) if path.is_symlink() else ''})"
        verify_integrity(str(path))
        assert "state_dict" in torch.load(path, weights_only=True)
    return names


class WatchingIO(TorchCheckpointIO):
    """Checks, at the moment a file is about to be removed, that no name of the folder still points at it."""

    def __init__(self) -> None:
        self.removed: list[str] = []

    def remove_checkpoint(self, path: Any) -> None:
        folder = Path(path).parent
        for name in os.listdir(folder):
            link = folder / name
            if link.is_symlink():
                assert (folder / os.readlink(link)).resolve() != Path(path).resolve(), f"{name} still points at {path}"
        self.removed.append(os.path.basename(path))
        super().remove_checkpoint(path)
        assert_every_name_loads(folder)


class Rising(fulgor.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        self.log("score", float(self.global_step))
        return self.layer(batch[0]).pow(2).mean()

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize(
    ("save_last", "background", "top_k"), [("link", False, 1), ("link", False, 2), (True, False, 1), ("link", True, 1)]
)
def test_a_file_is_removed_only_once_no_name_points_at_it(
    tmp_path: Path, save_last: Any, background: bool, top_k: int
) -> None:
    # top_k=1: every new best replaces the file `last` links to, the case where a wrong order loses `last`.
    # With `background`, saves, link moves and removals run in AsyncCheckpointIO's thread, in order.
    io = WatchingIO()
    checkpoint = fulgor.callbacks.ModelCheckpoint(
        dirpath=str(tmp_path), monitor="score", mode="max", save_top_k=top_k, every_n_train_steps=1, save_last=save_last
    )
    plugin = AsyncCheckpointIO(io) if background else io
    trainer = fulgor.Trainer(max_steps=6, callbacks=[checkpoint], plugins=[plugin], **QUIET)
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    trainer.fit(Rising(), DataLoader(TensorDataset(x), batch_size=2))
    names = [f"epoch={s // 5}-step={s}.ckpt" for s in range(1, 7)]
    assert io.removed == names[: 6 - top_k]
    assert assert_every_name_loads(tmp_path) == [*names[6 - top_k :], "last.ckpt"]
    if save_last == "link":
        assert os.readlink(tmp_path / "last.ckpt") == "epoch=1-step=6.ckpt"
    assert sorted(os.listdir(tmp_path)) == [*names[6 - top_k :], "last.ckpt"]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("save_last", ["link", "file"])
def test_sigkill_at_random_moments_of_rotation_leaves_every_name_loadable(tmp_path: Path, save_last: str) -> None:
    rng = random.Random(1234)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    for attempt in range(6):
        folder = tmp_path / f"ck{attempt}"
        proc = subprocess.Popen([sys.executable, str(SCRIPT), str(folder), save_last], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env=env, text=True)  # fmt: skip
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        time.sleep(rng.uniform(0.0, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        names = assert_every_name_loads(folder)
        assert "last.ckpt" in names
        if save_last == "link":
            assert (folder / "last.ckpt").is_symlink()
        assert len(names) <= 3  # the top-1 file, `last`, and at most one not removed yet when killed
    # and the run resumes from `last` after the last kill
    spec = importlib.util.spec_from_file_location("ckpt_rotation_script", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    step = torch.load(folder / "last.ckpt", weights_only=True)["global_step"]
    trainer = fulgor.Trainer(max_steps=step + 1, logger=False, enable_progress_bar=False, enable_model_summary=False)
    x = torch.randn(32, 64, generator=torch.Generator().manual_seed(0))
    trainer.fit(script.Rotating(), DataLoader(TensorDataset(x), batch_size=4), ckpt_path=str(folder / "last.ckpt"))
    assert trainer.global_step == step + 1
