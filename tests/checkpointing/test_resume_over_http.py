"""`trainer.fit(ckpt_path=URL)` from a plain web server (no range requests, as Python's `http.server`): the checkpoint
and fulgor's resume record are fetched whole, and the run continues exactly as from the local file."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import fulgor
from fulgor import fs
from fulgor.demos.boring_classes import BoringModel

QUIET = {"enable_progress_bar": False, "enable_model_summary": False, "logger": False, "limit_val_batches": 0}


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    handler = functools.partial(_Quiet, directory=str(tmp_path))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield f"http://127.0.0.1:{server.server_address[1]}"
        server.shutdown()


def _fit(root: Path, max_steps: int, ckpt_path: Any = None) -> BoringModel:
    torch.manual_seed(0)
    model = BoringModel()
    trainer = fulgor.Trainer(default_root_dir=root, max_steps=max_steps, enable_checkpointing=False, **QUIET)
    trainer.fit(model, ckpt_path=ckpt_path)
    if ckpt_path is None:
        trainer.save_checkpoint(root / "mid.ckpt")  # mid-epoch: the resume record says where
    return model


def test_resume_from_a_url_without_range_requests(tmp_path: Path, served: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real = fs.get_filesystem

    def plain_install(path: Any, **kwargs: Any) -> Any:  # fsspec's HTTP file system needs aiohttp
        if str(path).startswith("http"):
            raise ImportError('HTTPFileSystem requires "requests" and "aiohttp" to be installed')
        return real(path, **kwargs)

    monkeypatch.setattr(fs, "get_filesystem", plain_install)
    _fit(tmp_path, max_steps=3)
    local = _fit(tmp_path / "local", max_steps=6, ckpt_path=tmp_path / "mid.ckpt")
    remote = _fit(tmp_path / "remote", max_steps=6, ckpt_path=f"{served}/mid.ckpt")
    for key, value in local.state_dict().items():
        assert torch.equal(remote.state_dict()[key], value)
    assert fs.exists(f"{served}/mid.ckpt")
    assert not fs.exists(f"{served}/missing.ckpt")
