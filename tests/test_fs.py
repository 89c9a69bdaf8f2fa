"""fulgor.fs: local paths and fsspec URLs (fsspec's in-memory file system) through the same helpers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fulgor import fs


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
