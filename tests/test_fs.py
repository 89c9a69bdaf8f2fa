"""fulgor.fs: local paths and fsspec URLs (fsspec's in-memory file system) through the same helpers."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from fulgor import LightningModule, Trainer, fs
from fulgor.callbacks import ModelCheckpoint
from fulgor.loggers import CSVLogger


def test_protocols() -> None:
    assert [fs.protocol_of(p) for p in ("s3://b/k", "memory://x", "file:///tmp/a", "/tmp/a", "C:\\dir", "rel")] == [
        "s3",
        "memory",
        "file",
        "file",
        "file",
        "file",
    ]
    assert fs.is_remote("gs://bucket/run")
    assert not fs.is_remote("file:///tmp")
    assert not fs.is_remote(Path("x"))


def test_local_paths(tmp_path: Path) -> None:
    target = fs.join(str(tmp_path), "a", "b")
    fs.makedirs(target)
    with fs.open(fs.join(target, "f.txt"), "w") as file:
        file.write("hi")
    assert fs.isdir(target)
    assert fs.exists(fs.join(target, "f.txt"))
    assert fs.listdir(target) == ["f.txt"]
    assert fs.listdir(tmp_path / "missing") == []
    with fs.open(f"file://{target}/f.txt", "r") as file:
        assert file.read() == "hi"


def test_memory_filesystem_round_trip() -> None:
    pytest.importorskip("fsspec")
    import torch

    root = "memory://fulgor-test/runs"
    fs.makedirs(fs.join(root, "version_0", "checkpoints"))
    fs.makedirs(fs.join(root, "version_3"))
    assert fs.join(root, "/version_0/", "x.ckpt") == "memory://fulgor-test/runs/version_0/x.ckpt"
    with fs.open(fs.join(root, "version_0", "checkpoints", "last.ckpt"), "wb") as file:
        torch.save({"step": 7, "w": torch.arange(3)}, file)
    assert fs.listdir(root) == ["version_0", "version_3"]
    assert fs.isdir(fs.join(root, "version_3"))
    assert not fs.exists(fs.join(root, "nope"))
    with fs.open(fs.join(root, "version_0", "checkpoints", "last.ckpt"), "rb") as file:
        loaded = torch.load(file)
    assert loaded["step"] == 7
    assert loaded["w"].tolist() == [0, 1, 2]
    assert fs.listdir("memory://fulgor-test/absent") == []
    fs.get_filesystem(root).rm("memory://fulgor-test", recursive=True)


def test_tensorboard_logger_versions_from_memory_filesystem() -> None:
    pytest.importorskip("fsspec")
    pytest.importorskip("tensorboard")
    from fulgor.loggers import TensorBoardLogger

    fs.makedirs("memory://tb-test/lightning_logs/version_4")
    logger = TensorBoardLogger("memory://tb-test")
    assert logger.version == 5
    assert logger.log_dir == "memory://tb-test/lightning_logs/version_5"
    fs.get_filesystem("memory://").rm("memory://tb-test", recursive=True)


def test_missing_fsspec_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fsspec", None)
    with pytest.raises(ModuleNotFoundError, match=r"'s3://b/k' needs fsspec.*pip install fsspec.*s3fs"):
        fs.get_filesystem("s3://b/k")


# ---------------------------------------------------------------------------------------------------------------------
# end to end: a run whose every file lives in fsspec's memory file system


class _TinyRegression(LightningModule):
    """Linear(2, 1) trained by SGD on 4 fixed samples (2 batches per epoch), logging the loss every step."""

    def __init__(self, lr: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()
        torch.manual_seed(0)
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    def train_dataloader(self) -> DataLoader[tuple[torch.Tensor, ...]]:
        x = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [2.0, 1.0]])
        return DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=2)


_MEMORY_ROOTS = ("memory://run", "memory://logs", "memory://ckpts")


@pytest.fixture
def memory_roots() -> Iterator[None]:
    pytest.importorskip("fsspec")
    memory = fs.get_filesystem("memory://")

    def clear() -> None:
        for root in _MEMORY_ROOTS:
            if memory.exists(root):
                memory.rm(root, recursive=True)

    clear()
    yield
    clear()


def _fit(root: str, max_epochs: int, ckpt_path: str | None = None) -> tuple[Trainer, _TinyRegression, CSVLogger]:
    logger = CSVLogger(save_dir=f"{root}/logs" if not fs.is_remote(root) else "memory://logs")
    dirpath = f"{root}/ckpts" if not fs.is_remote(root) else "memory://ckpts"
    trainer = Trainer(
        default_root_dir=f"{root}/run" if not fs.is_remote(root) else "memory://run",
        logger=logger,
        callbacks=[ModelCheckpoint(dirpath=dirpath, save_last=True)],
        max_epochs=max_epochs,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    model = _TinyRegression()
    trainer.fit(model, ckpt_path=ckpt_path)
    return trainer, model, logger


def _read(path: str) -> str:
    with fs.open(path, "r", newline="") as file:  # keep the csv module's "\r\n" line ends
        text: str = file.read()
    return text


def test_fit_resume_and_load_through_memory_filesystem(memory_roots: None, tmp_path: Path) -> None:
    trainer, model, logger = _fit("memory://", max_epochs=2)

    assert trainer.default_root_dir == "memory://run"
    assert fs.listdir("memory://ckpts") == ["epoch=1-step=4.ckpt", "last.ckpt"]  # top-1 kept, no sidecars
    checkpoint = trainer.checkpoint_callback
    assert isinstance(checkpoint, ModelCheckpoint)
    assert checkpoint.best_model_path == "memory://ckpts/epoch=1-step=4.ckpt"
    assert checkpoint.last_model_path == "memory://ckpts/last.ckpt"
    assert logger.log_dir == "memory://logs/lightning_logs/version_0"
    assert fs.listdir(logger.log_dir) == ["hparams.yaml", "metrics.csv"]
    assert _read("memory://logs/lightning_logs/version_0/hparams.yaml") == "lr: 0.1\n"
    metrics = _read("memory://logs/lightning_logs/version_0/metrics.csv")
    assert metrics.splitlines()[0] == "epoch,loss,step"
    assert [line.split(",")[::2] for line in metrics.splitlines()[1:]] == [
        ["0", "0"],
        ["0", "1"],
        ["1", "2"],
        ["1", "3"],
    ]
    # The same run on local disk writes the same bytes.
    _, local_model, local_logger = _fit(str(tmp_path), max_epochs=2)
    with open(os.path.join(local_logger.log_dir, "metrics.csv"), newline="") as file:
        assert metrics == file.read()
    assert torch.equal(local_model.layer.weight, model.layer.weight)

    with pytest.warns(UserWarning, match="Checkpoint directory memory://ckpts exists and is not empty"):
        resumed, _, resumed_logger = _fit("memory://", max_epochs=3, ckpt_path="memory://ckpts/last.ckpt")
    assert resumed.ckpt_path == "memory://ckpts/last.ckpt"
    assert resumed.global_step == 6
    assert resumed_logger.version == 1  # the next version after the one found in memory://logs
    steps = [line.rsplit(",", 1)[1] for line in _read(fs.join(resumed_logger.log_dir, "metrics.csv")).splitlines()]
    assert steps == ["step", "4", "5"]
    assert fs.listdir("memory://ckpts") == ["epoch=2-step=6.ckpt", "last.ckpt"]

    loaded = _TinyRegression.load_from_checkpoint("memory://ckpts/epoch=2-step=6.ckpt")
    assert loaded.hparams.lr == 0.1
    final = resumed.lightning_module.state_dict()
    assert all(torch.equal(value, final[key]) for key, value in loaded.state_dict().items())
    assert not torch.equal(loaded.layer.weight, model.layer.weight)  # it trained a third epoch


def test_save_last_link_refuses_remote_dirpath(memory_roots: None) -> None:
    trainer = Trainer(
        default_root_dir="memory://run",
        logger=False,
        callbacks=[ModelCheckpoint(dirpath="memory://ckpts", save_last="link")],
        max_epochs=1,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with pytest.raises(ValueError, match=r"save_last='link'\)` is only supported for local file paths.*memory://ckpts"):
        trainer.fit(_TinyRegression())
