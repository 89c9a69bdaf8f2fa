"""CheckpointIO plugins: TorchCheckpointIO's files, a user's CheckpointIO receiving every checkpoint the Trainer and
ModelCheckpoint write (compared with pytorch-lightning 2.6.6), and AsyncCheckpointIO (background writes, snapshots,
atomic files, ordered removals, errors that surface and are never lost)."""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

import fulgor
from fulgor.checkpoint_io import AsyncCheckpointIO, CheckpointIO, TorchCheckpointIO, resume_record
from fulgor.checkpointing import CheckpointError, read_extra
from helpers.boring import boring_classes

pytestmark = pytest.mark.timeout(120)


def _checkpoint(value: float = 1.0) -> dict[str, Any]:
    return {"state_dict": {"w": torch.full((3,), value)}, "epoch": 0}


# ------------------------------------------------------------------------------------------------ TorchCheckpointIO


def test_torch_checkpoint_io_round_trip(tmp_path: Path) -> None:
    io = TorchCheckpointIO()
    path = tmp_path / "sub" / "a.ckpt"
    with resume_record(_checkpoint(), {"ignored": 1}):  # a record for another dict is not written
        io.save_checkpoint(_checkpoint(2.0), path)
    loaded = io.load_checkpoint(path)
    assert torch.equal(loaded["state_dict"]["w"], torch.full((3,), 2.0))
    assert read_extra(str(path)) is None
    assert sorted(os.listdir(tmp_path / "sub")) == ["a.ckpt"]  # one file: no integrity sidecar beside it
    io.remove_checkpoint(path)
    assert sorted(os.listdir(tmp_path / "sub")) == []
    io.remove_checkpoint(path)  # already gone: nothing to do
    with pytest.raises(FileNotFoundError, match="Checkpoint file not found"):
        io.load_checkpoint(path)


def test_resume_record_is_written_beside_the_dict(tmp_path: Path) -> None:
    checkpoint = _checkpoint()
    with resume_record(checkpoint, {"fulgor_resume": {"step": 3}}):
        TorchCheckpointIO().save_checkpoint(checkpoint, tmp_path / "a.ckpt")
    assert read_extra(str(tmp_path / "a.ckpt")) == {"fulgor_resume": {"step": 3}}
    assert set(torch.load(tmp_path / "a.ckpt", weights_only=True)) == {"state_dict", "epoch"}


@pytest.mark.oracle
def test_oracle_storage_options_error(tmp_path: Path) -> None:
    pl_io = pytest.importorskip("lightning_fabric.plugins.io")
    errors = []
    for io in (TorchCheckpointIO(), pl_io.TorchCheckpointIO()):
        with pytest.raises(TypeError) as info:
            io.save_checkpoint(_checkpoint(), tmp_path / "x.ckpt", storage_options={"a": 1})
        errors.append(str(info.value))
    assert errors[0] == errors[1]


# ------------------------------------------------------------------------------------ a user's CheckpointIO


def recording_io(base: type) -> Any:
    """A CheckpointIO (subclass of `base`, Lightning's or fulgor's) that records its calls and writes nothing."""

    class Recording(base):  # type: ignore[misc,valid-type]
        def __init__(self) -> None:
            self.calls: list[tuple[Any, ...]] = []

        def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
            self.calls.append(("save", os.path.basename(path), sorted(checkpoint), storage_options))

        def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: Any = None) -> dict[str, Any]:
            raise AssertionError("not used here")

        def remove_checkpoint(self, path: Any) -> None:
            self.calls.append(("remove", os.path.basename(path)))

        def teardown(self) -> None:
            self.calls.append(("teardown",))

    return Recording()


def _fit_with_io(lib: ModuleType, base: type, root: Path) -> list[tuple[Any, ...]]:
    io = recording_io(base)
    classes = boring_classes(lib)
    checkpoint = lib.callbacks.ModelCheckpoint(dirpath=root / "ckpts", save_top_k=-1, every_n_train_steps=2)
    trainer = lib.Trainer(
        default_root_dir=root, max_epochs=1, limit_train_batches=4, limit_val_batches=1, plugins=[io],
        callbacks=[checkpoint], logger=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(classes.BoringModel())
        trainer.save_checkpoint(root / "manual.ckpt", weights_only=True)
    assert trainer.strategy.checkpoint_io is io
    return io.calls


@pytest.mark.oracle
def test_oracle_user_checkpoint_io_receives_every_save(tmp_path: Path) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    from lightning_fabric.plugins.io import CheckpointIO as LightningCheckpointIO

    expected = _fit_with_io(pl, LightningCheckpointIO, tmp_path / "lightning")
    actual = _fit_with_io(fulgor, CheckpointIO, tmp_path / "fulgor")
    assert [c for c in actual if c[0] == "save"] == [c for c in expected if c[0] == "save"]
    assert [c[1] for c in actual if c[0] == "save"] == ["epoch=0-step=2.ckpt", "epoch=0-step=4.ckpt", "manual.ckpt"]
    assert actual.count(("teardown",)) == expected.count(("teardown",)) == 1
    assert not (tmp_path / "fulgor" / "ckpts").exists()  # the plugin decides what is written, and it writes nothing


# ------------------------------------------------------------------------------------------------ AsyncCheckpointIO


class GatedIO(TorchCheckpointIO):
    """Waits for `gate` before each save; fails the saves whose file name contains "fail"."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()
        self.order: list[str] = []

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        self.started.set()
        assert self.gate.wait(30)
        if "fail" in os.fspath(path):
            raise OSError(f"disk full while writing {os.path.basename(path)}")
        super().save_checkpoint(checkpoint, path, storage_options)
        self.order.append(f"save {os.path.basename(path)}")

    def remove_checkpoint(self, path: Any) -> None:
        super().remove_checkpoint(path)
        self.order.append(f"remove {os.path.basename(path)}")


def test_async_saves_in_the_background_from_a_snapshot(tmp_path: Path) -> None:
    gated = GatedIO()
    io = AsyncCheckpointIO(gated)
    checkpoint = _checkpoint(1.0)
    io.save_checkpoint(checkpoint, tmp_path / "a.ckpt")  # returns while the write waits
    assert gated.started.wait(30)
    checkpoint["state_dict"]["w"].fill_(5.0)  # training goes on changing the weights in place
    assert not (tmp_path / "a.ckpt").exists()  # nothing half-written is visible under the final name
    gated.gate.set()
    io.teardown()  # waits for the save
    assert torch.equal(torch.load(tmp_path / "a.ckpt", weights_only=True)["state_dict"]["w"], torch.full((3,), 1.0))
    assert [n for n in os.listdir(tmp_path) if n.endswith(".tmp")] == []


def test_async_removal_waits_for_the_saves_before_it(tmp_path: Path) -> None:
    gated = GatedIO()
    io = AsyncCheckpointIO(gated)
    TorchCheckpointIO().save_checkpoint(_checkpoint(), tmp_path / "old.ckpt")
    io.save_checkpoint(_checkpoint(), tmp_path / "new.ckpt")
    io.remove_checkpoint(tmp_path / "old.ckpt")
    assert (tmp_path / "old.ckpt").exists()  # the new file is not committed yet
    gated.gate.set()
    io.teardown()
    assert gated.order == ["save new.ckpt", "remove old.ckpt"]
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["new.ckpt"]


def test_async_errors_surface_at_the_next_save_and_are_not_lost(tmp_path: Path) -> None:
    gated = GatedIO()
    io = AsyncCheckpointIO(gated)
    TorchCheckpointIO().save_checkpoint(_checkpoint(), tmp_path / "old.ckpt")
    io.save_checkpoint(_checkpoint(), tmp_path / "fail.ckpt")
    io.remove_checkpoint(tmp_path / "old.ckpt")  # queued behind the failing save: must not run
    gated.gate.set()
    io._wait()
    with pytest.raises(OSError, match=r"disk full while writing fail\.ckpt"):
        io.save_checkpoint(_checkpoint(), tmp_path / "next.ckpt")
    assert (tmp_path / "old.ckpt").exists()  # the last good checkpoint survived
    io.save_checkpoint(_checkpoint(), tmp_path / "next.ckpt")  # reported once; saving works again
    io.teardown()
    assert (tmp_path / "next.ckpt").exists()
    io.save_checkpoint(_checkpoint(), tmp_path / "fail2.ckpt")  # a new thread after teardown
    with pytest.raises(OSError, match=r"disk full while writing fail2\.ckpt"):
        io.teardown()  # the last save's error surfaces at the end of the run
    io.teardown()  # and only once


class SlowTorchIO(TorchCheckpointIO):
    def __init__(self) -> None:
        self.threads: set[str] = set()

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        self.threads.add(threading.current_thread().name)
        super().save_checkpoint(checkpoint, path, storage_options)


def test_async_checkpoint_io_in_a_fit_resumes_exactly(tmp_path: Path) -> None:
    classes, callbacks = boring_classes(fulgor), fulgor.callbacks
    slow = SlowTorchIO()

    def trainer(max_steps: int, plugins: Any = None, folder: str = "ckpts") -> Any:
        return fulgor.Trainer(
            default_root_dir=tmp_path, max_steps=max_steps, limit_val_batches=1, logger=False,
            enable_progress_bar=False, enable_model_summary=False, plugins=plugins, val_check_interval=2,
            callbacks=[callbacks.ModelCheckpoint(dirpath=tmp_path / folder, save_top_k=-1, every_n_train_steps=2)],
        )  # fmt: skip

    torch.manual_seed(0)
    first = trainer(4, [AsyncCheckpointIO(slow)])
    first.fit(classes.BoringModel())
    assert slow.threads
    assert all(name.startswith("fulgor-async-checkpoint") for name in slow.threads)
    files = sorted(p.name for p in (tmp_path / "ckpts").iterdir() if not p.name.startswith("."))
    assert files == ["epoch=0-step=2.ckpt", "epoch=0-step=4.ckpt"]
    record = read_extra(str(tmp_path / "ckpts" / "epoch=0-step=2.ckpt"))
    assert record is not None
    assert "fulgor_resume" in record  # the exact-resume record travels with async saves
    torch.manual_seed(0)
    reference = classes.BoringModel()
    trainer(6, folder="reference").fit(reference)
    torch.manual_seed(0)
    resumed = classes.BoringModel()
    trainer(6, folder="resumed").fit(resumed, ckpt_path=tmp_path / "ckpts" / "epoch=0-step=2.ckpt")
    for key, value in reference.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_async_error_in_a_fit_is_raised(tmp_path: Path) -> None:
    class Failing(TorchCheckpointIO):
        def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
            raise CheckpointError(f"cannot write {os.path.basename(path)}")

    trainer = fulgor.Trainer(
        default_root_dir=tmp_path, max_steps=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
        plugins=[AsyncCheckpointIO(Failing())],
    )  # fmt: skip
    with pytest.raises(CheckpointError, match=r"cannot write epoch=0-step=1\.ckpt"):
        trainer.fit(boring_classes(fulgor).BoringModel())


def test_async_checkpoint_io_pickles_without_its_thread(tmp_path: Path) -> None:
    import pickle

    io = AsyncCheckpointIO(TorchCheckpointIO())
    io.save_checkpoint(_checkpoint(), tmp_path / "a.ckpt")  # a thread and a lock now exist
    copy = pickle.loads(pickle.dumps(io))  # what `ddp_spawn` does with the Trainer
    assert isinstance(copy.checkpoint_io, TorchCheckpointIO)
    copy.save_checkpoint(_checkpoint(3.0), tmp_path / "b.ckpt")
    copy.teardown()
    io.teardown()
    assert torch.load(tmp_path / "b.ckpt", weights_only=True)["state_dict"]["w"][0] == 3.0
