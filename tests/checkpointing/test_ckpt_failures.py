"""Checkpoint failures named clearly, before the first training step where possible, with the existing checkpoints
untouched: a full disk (simulated, and a real small tmpfs where one can be mounted), malicious records, a changed
optimizer class, ModelCheckpoint misconfiguration, unpicklable hyperparameters and a missing `ckpt_path`."""

from __future__ import annotations

import errno
import hashlib
import inspect
import io
import os
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import fulgor
from fulgor import checkpointing
from fulgor.checkpointing import CheckpointError, UnsafeCheckpointError
from fulgor.errors import MisconfigurationException

QUIET: dict[str, Any] = {
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "logger": False,
    "num_sanity_val_steps": 0,
}


class Tiny(fulgor.LightningModule):
    def __init__(self, optimizer: str = "adam", **hparams: Any) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(2, 1)
        self.optimizer_name = optimizer

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        return self.layer(batch[0]).pow(2).mean()

    def configure_optimizers(self) -> Any:
        if self.optimizer_name == "adam":
            return torch.optim.Adam(self.parameters(), lr=0.01)
        return torch.optim.SGD(self.parameters(), lr=0.01, momentum=0.9)


class CountSteps(fulgor.Callback):
    def __init__(self) -> None:
        self.steps = 0

    def on_train_batch_start(self, *args: Any) -> None:
        self.steps += 1


def data() -> DataLoader[Any]:
    return DataLoader(TensorDataset(torch.randn(8, 2, generator=torch.Generator().manual_seed(0))), batch_size=4)


def fit(root: Path, model: Any = None, ckpt_path: Any = None, **kw: Any) -> fulgor.Trainer:
    trainer = fulgor.Trainer(default_root_dir=str(root), max_epochs=kw.pop("max_epochs", 1), **QUIET, **kw)
    trainer.fit(model or Tiny(), data(), ckpt_path=ckpt_path)
    return trainer


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


# ------------------------------------------------------------------------------------------------------ full disk


class FullDisk:
    """A file whose writes fail with ENOSPC once `room` bytes are written (what a full disk does)."""

    def __init__(self, file: Any, room: int) -> None:
        self.file, self.room = file, room

    def write(self, data: Any) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return int(self.file.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.file, name)

    def __enter__(self) -> FullDisk:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.file.close()


def test_torch_writer_hides_enospc_behind_runtime_error(tmp_path: Path) -> None:
    """Why fulgor must look behind torch: its zip writer turns the OSError into an "unexpected pos" RuntimeError."""
    with open(tmp_path / "raw.ckpt", "wb") as raw, pytest.raises(RuntimeError, match="unexpected pos"):
        torch.save({"w": torch.zeros(10_000)}, FullDisk(raw, 2_000))


def test_simulated_full_disk_names_the_file_and_keeps_previous_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fit(tmp_path, max_epochs=2)
    folder = tmp_path / "checkpoints"
    before = digests(folder)
    real_open = open

    def full_open(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        file = real_open(path, mode, *args, **kwargs)
        return FullDisk(file, 1_000) if "w" in mode else file

    monkeypatch.setattr(checkpointing, "open", full_open, raising=False)
    with pytest.raises(CheckpointError) as raised:
        fit(tmp_path, model=Tiny(), max_epochs=4, ckpt_path=str(folder / "epoch=1-step=4.ckpt"))
    message = str(raised.value)
    assert message.startswith("No space left on device while saving checkpoint ")
    assert str(folder / "epoch=2-step=6.ckpt") in message
    assert "The previous file at that path (if any) is unchanged" in message
    assert isinstance(raised.value.__cause__, OSError)
    assert digests(folder) == before  # no partial file, no temporary left, the old checkpoint intact


TMPFS_SCRIPT = """
import sys, torch
from fulgor.checkpointing import atomic_save, CheckpointError
path = sys.argv[1] + "/model.ckpt"
atomic_save({"w": torch.ones(1000)}, path)
try:
    atomic_save({"w": torch.zeros(400_000)}, path)
except CheckpointError as e:
    print("ERROR", e)
print("KEPT", float(torch.load(path, weights_only=True)["w"].sum()))
import os; print("FILES", sorted(os.listdir(sys.argv[1])))
"""


def test_full_tmpfs_names_the_file_and_keeps_the_previous_one(tmp_path: Path) -> None:
    unshare = shutil.which("unshare")
    mount = tmp_path / "small"
    mount.mkdir()
    command = f'mount -t tmpfs -o size=256k tmpfs "{mount}" && exec "{sys.executable}" -c "$0" "{mount}"'
    if unshare is None:
        pytest.skip("no `unshare` to mount a private tmpfs")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([unshare, "-rm", "sh", "-c", command, TMPFS_SCRIPT], capture_output=True, text=True,
                          env=env, timeout=120)  # fmt: skip
    if "mount" in done.stderr and done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert f"ERROR No space left on device while saving checkpoint '{mount}/model.ckpt'." in lines[0]
    assert lines[1] == "KEPT 1000.0"
    assert lines[2] == "FILES ['model.ckpt']"


# ------------------------------------------------------------------------------------------------ malicious files


class Evil:
    def __reduce__(self) -> Any:
        return (os.system, ("touch pwned",))


def test_malicious_checkpoint_is_refused_naming_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": Evil()}, path)
    for load in (lambda: fit(tmp_path / "run", ckpt_path=str(path)), lambda: Tiny.load_from_checkpoint(path)):
        with pytest.raises(UnsafeCheckpointError) as raised:
            load()
        assert f"Checkpoint {str(path)!r} was refused" in str(raised.value)
        assert "posix.system" in str(raised.value) or "os.system" in str(raised.value)
    assert not (tmp_path / "pwned").exists()


def test_malicious_record_inside_a_fulgor_archive_is_refused_naming_file_and_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    trainer = fit(tmp_path)
    path = Path(trainer.checkpoint_callback.best_model_path)  # type: ignore[union-attr]
    tampered = tmp_path / "tampered.ckpt"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(tampered, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith("/fulgor_resume.pt"):
                buffer = io.BytesIO()
                torch.save({"fulgor_resume": Evil()}, buffer)
                data = buffer.getvalue()
            target.writestr(info, data)
    assert torch.load(tampered, weights_only=True)["global_step"] == 2  # Lightning's view of it is unchanged
    with pytest.raises(UnsafeCheckpointError) as raised:
        fit(tmp_path / "run", max_epochs=2, ckpt_path=str(tampered))
    assert f"{str(tampered)!r} (its record " in str(raised.value)
    assert "fulgor_resume.pt" in str(raised.value)
    assert not (tmp_path / "pwned").exists()


# --------------------------------------------------------------------------------------- changed optimizer class


@pytest.mark.parametrize(("saved", "now"), [("adam", "sgd"), ("sgd", "adam")])
def test_resuming_with_another_optimizer_class_names_both(tmp_path: Path, saved: str, now: str) -> None:
    trainer = fit(tmp_path, model=Tiny(saved))
    path = trainer.checkpoint_callback.best_model_path  # type: ignore[union-attr]
    counter = CountSteps()
    with pytest.raises(CheckpointError) as raised:
        fit(tmp_path / "run", model=Tiny(now), max_epochs=2, ckpt_path=path, callbacks=[counter])
    names = {"adam": "Adam", "sgd": "SGD"}
    message = str(raised.value)
    assert f"was saved from {names[saved]}" in message
    assert f"`configure_optimizers` now returns {names[now]}" in message
    assert repr(path) in message
    assert counter.steps == 0


def test_same_optimizer_class_with_other_settings_resumes(tmp_path: Path) -> None:
    trainer = fit(tmp_path, model=Tiny("sgd"))
    resumed = fit(tmp_path / "run", model=Tiny("sgd"), max_epochs=2,
                  ckpt_path=trainer.checkpoint_callback.best_model_path)  # type: ignore[union-attr]  # fmt: skip
    assert resumed.global_step == 4


# -------------------------------------------------------------------------------- ModelCheckpoint, early checks


@pytest.mark.parametrize("filename", ["{epoch", "epoch}-{step}", "{epoch:.2q}", "{epoch}}{"])
def test_malformed_filename_is_refused_at_construction(filename: str) -> None:
    with pytest.raises(MisconfigurationException, match=r"is not a valid file name template"):
        fulgor.callbacks.ModelCheckpoint(filename=filename)


def test_filename_changed_after_construction_is_refused_before_the_first_step(tmp_path: Path) -> None:
    checkpoint = fulgor.callbacks.ModelCheckpoint(dirpath=str(tmp_path / "ck"))
    checkpoint.filename = "{epoch"
    counter = CountSteps()
    with pytest.raises(MisconfigurationException, match=r"filename='\{epoch'\)` is not a valid file name template"):
        fit(tmp_path, callbacks=[checkpoint, counter])
    assert counter.steps == 0


@pytest.mark.parametrize("value", ["yes", "last", 1, 0, "True"])
def test_invalid_save_last_is_refused(value: Any) -> None:
    with pytest.raises(MisconfigurationException, match=rf"`ModelCheckpoint\(save_last={value!r}\)` is not a valid"):
        fulgor.callbacks.ModelCheckpoint(save_last=value)


@pytest.mark.parametrize(("text", "value"), [("yes", True), ("false", False), ("link", "link"), ("True", True)])
def test_save_last_annotation_parses_under_jsonargparse(text: str, value: Any) -> None:
    jsonargparse = pytest.importorskip("jsonargparse")
    annotation = inspect.signature(fulgor.callbacks.ModelCheckpoint).parameters["save_last"].annotation
    assert not isinstance(annotation, str)
    parser = jsonargparse.ArgumentParser()
    parser.add_argument("--save_last", type=annotation)
    assert parser.parse_args(["--save_last", text]).save_last == value


def test_dirpath_that_is_a_file_is_refused_before_the_first_step(tmp_path: Path) -> None:
    (tmp_path / "ck").write_text("not a folder")
    counter = CountSteps()
    callbacks = [fulgor.callbacks.ModelCheckpoint(dirpath=str(tmp_path / "ck" / "sub")), counter]
    with pytest.raises(MisconfigurationException, match=r"is under '.*ck', which is a file, not a directory"):
        fit(tmp_path, callbacks=callbacks)
    assert counter.steps == 0
    assert (tmp_path / "ck").read_text() == "not a folder"


def test_default_root_dir_that_is_a_file_is_refused_before_the_first_step(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.write_text("x")
    counter = CountSteps()
    with pytest.raises(MisconfigurationException, match=r"default_root_dir=.*` is a file, not a folder"):
        fit(root, callbacks=[counter])
    assert counter.steps == 0


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_dirpath_is_refused_before_the_first_step(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    counter = CountSteps()
    try:
        with pytest.raises(MisconfigurationException, match=r"is not writable"):
            fit(tmp_path, callbacks=[fulgor.callbacks.ModelCheckpoint(dirpath=str(folder)), counter])
    finally:
        folder.chmod(0o755)
    assert counter.steps == 0


def test_read_only_dirpath_check_uses_access(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same check where the tests run as root (which may write anywhere): `os.access` says no."""
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: "locked_ck" not in str(path) and real_access(path, mode))
    counter = CountSteps()
    folder = tmp_path / "locked_ck"
    folder.mkdir()
    with pytest.raises(MisconfigurationException, match=r"ModelCheckpoint\(dirpath='.*locked_ck'\)` is not writable"):
        fit(tmp_path, callbacks=[fulgor.callbacks.ModelCheckpoint(dirpath=str(folder)), counter])
    assert counter.steps == 0


# ---------------------------------------------------------------------------------------- unpicklable hparams


def test_unpicklable_hyperparameter_is_dropped_with_lightnings_warning_when_the_run_starts(tmp_path: Path) -> None:
    model = Tiny(config={"size": 3, "scale": lambda x: 2 * x}, keep=1)
    with pytest.warns(UserWarning, match="Attribute 'config' removed from hparams because it cannot be pickled"):
        trainer = fit(tmp_path, model=model)
    saved = torch.load(trainer.checkpoint_callback.best_model_path, weights_only=False)  # type: ignore[union-attr]
    assert saved["hyper_parameters"] == {"optimizer": "adam", "keep": 1}


class LockedData(fulgor.LightningDataModule):
    def __init__(self, config: Any) -> None:
        super().__init__()
        self.save_hyperparameters()  # a datamodule's hparams are not cleaned at the run's start (as in Lightning)

    def train_dataloader(self) -> DataLoader[Any]:
        return data()


def test_unpicklable_datamodule_hyperparameter_is_named_before_the_first_step(tmp_path: Path) -> None:
    counter = CountSteps()
    trainer = fulgor.Trainer(default_root_dir=str(tmp_path), max_epochs=1, callbacks=[counter], **QUIET)
    with pytest.raises(MisconfigurationException) as raised:
        trainer.fit(Tiny(), datamodule=LockedData(config={"size": 3, "scale": lambda x: 2 * x}))
    message = str(raised.value)
    assert message.startswith("The hyperparameter \"config['scale']\" of `LockedData` cannot be saved in a checkpoint:")
    assert "save_hyperparameters(ignore=['config'])" in message
    assert counter.steps == 0


def test_picklable_hyperparameters_with_tensors_pass(tmp_path: Path) -> None:
    trainer = fit(tmp_path, model=Tiny(weights=torch.ones(3), fn=len))
    assert torch.equal(torch.load(trainer.checkpoint_callback.best_model_path,  # type: ignore[union-attr]
                                  weights_only=False)["hyper_parameters"]["weights"], torch.ones(3))  # fmt: skip
    assert pickle.dumps(len)


# ------------------------------------------------------------------------------------------ missing ckpt_path


def test_missing_ckpt_path_lists_the_checkpoints_nearby(tmp_path: Path) -> None:
    fit(tmp_path)
    missing = tmp_path / "checkpoints" / "epoch=9-step=99.ckpt"
    counter = CountSteps()
    with pytest.raises(FileNotFoundError) as raised:
        fit(tmp_path, max_epochs=2, ckpt_path=str(missing), callbacks=[counter])
    message = str(raised.value)
    assert message.startswith(f"Checkpoint file not found: {missing}.")
    assert f"Checkpoints that exist nearby, newest first: {tmp_path / 'checkpoints' / 'epoch=0-step=2.ckpt'}" in message
    assert 'ckpt_path="last"' in message
    assert counter.steps == 0


def test_missing_ckpt_path_in_an_empty_place_says_so(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"No checkpoint exists in its folder or in this Trainer's"):
        fit(tmp_path, ckpt_path=str(tmp_path / "nowhere" / "x.ckpt"))


# ------------------------------------------------------------------------ missing monitored key (Lightning's rule)


class WithValidation(Tiny):
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log("val_loss", self.layer(batch[0]).pow(2).mean())


def test_missing_monitor_after_only_the_sanity_check_warns(tmp_path: Path) -> None:
    checkpoint = fulgor.callbacks.ModelCheckpoint(monitor="global_step")
    trainer = fulgor.Trainer(default_root_dir=str(tmp_path), max_steps=1, callbacks=[checkpoint], logger=False,
                             enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    with pytest.warns(UserWarning, match=r"`ModelCheckpoint\(monitor='global_step'\)` could not find the monitored"):
        trainer.fit(WithValidation(), data(), data())  # the sanity check ran validation; no validation of the fit
    assert checkpoint.best_model_path == ""


def test_missing_monitor_after_a_validation_of_the_fit_raises(tmp_path: Path) -> None:
    checkpoint = fulgor.callbacks.ModelCheckpoint(monitor="global_step")
    trainer = fulgor.Trainer(default_root_dir=str(tmp_path), max_epochs=1, callbacks=[checkpoint], **QUIET)
    with pytest.raises(MisconfigurationException, match=r"could not find the monitored key in the returned metrics"):
        trainer.fit(WithValidation(), data(), data())
