"""Checkpoint files outside a run, compared with pytorch-lightning 2.6.6: `trainer.save_checkpoint` for a model only
connected to the strategy, `load_from_checkpoint` from an HTTP URL (strict and not), and the `upgrade_checkpoint`
command (safe load first, `--map-to-cpu`, every matching file of a folder)."""

from __future__ import annotations

import functools
import http.server
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

import fulgor
from fulgor import checkpoint_upgrade, fs
from helpers.boring import boring_classes

pl = pytest.importorskip("pytorch_lightning")

pytestmark = pytest.mark.oracle

QUIET: dict[str, Any] = {"enable_progress_bar": False, "enable_model_summary": False, "logger": False}


def _connected_save(lib: ModuleType, root: Path) -> dict[str, Any]:
    """A Trainer that never ran, the model given to `strategy.connect`, saved through `ModelCheckpoint`'s last-file
    path; returns the checkpoint as written."""
    torch.manual_seed(0)
    checkpoint = lib.callbacks.ModelCheckpoint(dirpath=root, save_last=True)
    trainer = lib.Trainer(callbacks=[checkpoint], default_root_dir=root, **QUIET)
    trainer.strategy.connect(boring_classes(lib).BoringModel())
    trainer.save_checkpoint(root / "connected.ckpt")
    loaded: dict[str, Any] = torch.load(root / "connected.ckpt", weights_only=True)
    return loaded


def test_save_checkpoint_of_a_connected_model_before_any_run_matches_lightning(tmp_path: Path) -> None:
    ours = _connected_save(fulgor, tmp_path / "fulgor")
    theirs = _connected_save(pl, tmp_path / "pl")
    assert list(ours) == list(theirs)
    assert (ours["epoch"], ours["global_step"]) == (theirs["epoch"], theirs["global_step"]) == (0, 0)
    assert ours["loops"] == theirs["loops"]
    assert ours["optimizer_states"] == theirs["optimizer_states"] == []
    assert ours["lr_schedulers"] == theirs["lr_schedulers"] == []
    for key, value in theirs["state_dict"].items():
        torch.testing.assert_close(ours["state_dict"][key], value)
    [(ours_key, ours_state)] = ours["callbacks"].items()
    [(theirs_key, theirs_state)] = theirs["callbacks"].items()
    assert ours_key == theirs_key
    assert ours_state["last_model_path"] == theirs_state["last_model_path"] == ""


def test_save_checkpoint_without_any_model_is_refused_as_in_lightning(tmp_path: Path) -> None:
    for lib in (fulgor, pl):
        with pytest.raises(AttributeError, match="Saving a checkpoint is only possible if a model is attached"):
            lib.Trainer(default_root_dir=tmp_path, **QUIET).save_checkpoint(tmp_path / "none.ckpt")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """`tmp_path` served over HTTP on localhost: (folder, base URL)."""
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
        server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_load_from_checkpoint_over_http_needs_no_fsspec_http_backend(
    served: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, base = served
    classes = boring_classes(fulgor)
    model = classes.BoringModel()
    model.extra = torch.nn.Linear(3, 4)  # a layer the loading class does not have
    trainer = fulgor.Trainer(default_root_dir=folder, max_steps=1, limit_val_batches=0, **QUIET)
    trainer.fit(model)
    trainer.save_checkpoint(folder / "extra.ckpt")

    def no_fsspec(path: Any, **kwargs: Any) -> Any:  # a plain install: fsspec's HTTP file system lacks aiohttp
        raise ImportError('HTTPFileSystem requires "requests" and "aiohttp" to be installed')

    monkeypatch.setattr(fs, "get_filesystem", no_fsspec)
    url = f"{base}/extra.ckpt"
    with pytest.raises(Exception, match=r"extra\.weight"):
        classes.BoringModel.load_from_checkpoint(url)
    loaded = classes.BoringModel.load_from_checkpoint(url, strict=False)
    torch.testing.assert_close(loaded.layer.weight, model.layer.weight)
    with pytest.raises(FileNotFoundError, match=r"missing\.ckpt"):
        classes.BoringModel.load_from_checkpoint(f"{base}/missing.ckpt")


def _old_checkpoint(path: Path) -> None:
    """A Lightning 1.6-layout checkpoint of tensors and plain values only: a 2.6.6 one given the older version and
    without what 1.6 did not save."""
    torch.manual_seed(0)
    trainer = pl.Trainer(
        default_root_dir=path.parent, max_steps=2, limit_val_batches=0, enable_checkpointing=False, **QUIET
    )
    trainer.fit(boring_classes(pl).BoringModel())
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["pytorch-lightning_version"] = "1.6.0"
    del checkpoint["loops"]["fit_loop"]["epoch_loop.state_dict"]["_batches_that_stepped"]
    torch.save(checkpoint, path)


def _upgrade_with(main: Any, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["upgrade_checkpoint", *argv])
    main()


def test_upgrade_command_gives_lightnings_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytorch_lightning.utilities.upgrade_checkpoint import main as lightning_main

    results = {}
    for name, main in (("fulgor", checkpoint_upgrade.main), ("pl", lightning_main)):
        folder = tmp_path / name
        (folder / "nested").mkdir(parents=True)
        for file in (folder / "a.ckpt", folder / "nested" / "b.ckpt"):
            _old_checkpoint(file)
        (folder / "nested" / "c.other").write_bytes(b"not a checkpoint")
        _upgrade_with(main, [str(folder)], monkeypatch)
        results[name] = {
            str(file.relative_to(folder)): torch.load(file, weights_only=True)
            for file in sorted(folder.rglob("*.ckpt"))
        }
        assert sorted(p.name for p in folder.rglob("*.bak")) == ["a.bak", "b.bak"]  # originals kept
    ours, theirs = results["fulgor"], results["pl"]
    assert ours.keys() == theirs.keys() == {"a.ckpt", os.path.join("nested", "b.ckpt")}
    for key in ours:
        assert sorted(ours[key]) == sorted(theirs[key])
        assert ours[key]["loops"] == theirs[key]["loops"]
        assert ours[key]["legacy_pytorch-lightning_version"] == "1.6.0"


def test_upgrade_command_loads_safely_first_and_maps_to_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "old.ckpt"
    _old_checkpoint(file)
    calls: list[dict[str, Any]] = []
    real_load = torch.load

    def recording_load(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    _upgrade_with(checkpoint_upgrade.main, [str(file)], monkeypatch)
    _upgrade_with(checkpoint_upgrade.main, [str(file), "--map-to-cpu"], monkeypatch)
    assert calls == [{"map_location": None}, {"map_location": torch.device("cpu")}]  # never full unpickling here


def test_upgrade_command_still_reads_checkpoints_that_pickled_objects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import argparse

    file = tmp_path / "hparams.ckpt"
    torch.save({"pytorch-lightning_version": "1.5.0", "state_dict": {}, "hparams": argparse.Namespace(lr=0.1),
                "epoch": 0, "global_step": 0}, file)  # fmt: skip
    _upgrade_with(checkpoint_upgrade.main, [str(file)], monkeypatch)
    upgraded = torch.load(file, weights_only=False)
    assert upgraded["legacy_pytorch-lightning_version"] == "1.5.0"
    assert upgraded["hparams"].lr == 0.1
