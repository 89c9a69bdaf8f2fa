"""A catalogue of realistic misuses: for each, the exception type and the phrase that names the mistake, and a check
that an existing checkpoint was not damaged."""

from __future__ import annotations

import errno
import hashlib
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import fulgor
from fulgor.callbacks.model_checkpoint import ModelCheckpoint
from fulgor.checkpointing import CheckpointError, atomic_save
from fulgor.errors import MisconfigurationException
from fulgor.trainer.preemption import FaultTolerance, parse_signal

QUIET = {"enable_progress_bar": False, "enable_model_summary": False, "logger": False, "num_sanity_val_steps": 0}


class Tiny(fulgor.LightningModule):
    def __init__(self, out: Any = "loss") -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.out = out

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        loss = self.layer(batch[0]).pow(2).mean()
        return {"loss": loss, "string": "x"}["loss" if self.out == "loss" else "string"] if self.out in (
            "loss", "string") else {"not_loss": loss}  # fmt: skip

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Other(Tiny):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3, 1)


def data() -> DataLoader[Any]:
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    return DataLoader(TensorDataset(x), batch_size=4)


def fit(root: Path, model: Any = None, loaders: Any = "default", **kw: Any) -> None:
    trainer = fulgor.Trainer(default_root_dir=str(root), max_epochs=1, **{**QUIET, **kw})
    trainer.fit(model or Tiny(), data() if loaders == "default" else loaders, ckpt_path=kw.pop("ckpt", None))


def fit_ckpt(root: Path, ckpt: Any, model: Any = None, **kw: Any) -> None:
    trainer = fulgor.Trainer(default_root_dir=str(root), **{"max_epochs": 1, **QUIET, **kw})
    trainer.fit(model or Tiny(), data(), ckpt_path=ckpt)


def trainer(**kw: Any) -> Callable[[Path], Any]:
    return lambda root: fulgor.Trainer(default_root_dir=str(root), **kw)


def callback(cls: Any, **kw: Any) -> Callable[[Path], Any]:
    return lambda root: cls(**kw)


def write(root: Path, name: str, content: bytes) -> str:
    path = root / name
    path.write_bytes(content)
    return str(path)


def save_into(target: Callable[[Path], str]) -> Callable[[Path], Any]:
    return lambda root: atomic_save({"state_dict": {}}, target(root))


def readonly_dir(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(*args: Any, **kw: Any) -> None:  # chmod does not stop root, so the refusal is simulated
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(torch, "save", denied)
    atomic_save({"state_dict": {}}, str(root / "good.ckpt"))


def file_as_dir(root: Path) -> str:
    (root / "afile").write_text("x")
    return str(root / "afile" / "sub" / "a.ckpt")


def full_disk(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_space(*args: Any, **kw: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", no_space)
    atomic_save({"state_dict": {}}, str(root / "good.ckpt"))  # overwrite the existing good checkpoint


def resume_weights_only(root: Path) -> None:
    t = fulgor.Trainer(default_root_dir=str(root), max_epochs=1, **QUIET)
    t.fit(Tiny(), data())
    t.save_checkpoint(root / "w.ckpt", weights_only=True)
    fit_ckpt(root / "again", str(root / "w.ckpt"), max_epochs=2)


def resume_past_max_epochs(root: Path) -> None:
    t = fulgor.Trainer(default_root_dir=str(root), max_epochs=3, **QUIET)
    t.fit(Tiny(), data())
    t.save_checkpoint(root / "e3.ckpt")
    fit_ckpt(root / "again", str(root / "e3.ckpt"), max_epochs=1)


def truncated(root: Path) -> str:
    return write(root, "cut.ckpt", (root / "good.ckpt").read_bytes()[:300])


def log_string(root: Path) -> None:
    class Bad(Tiny):
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            self.log("name", "a string")
            return super().training_step(batch, batch_idx)

    fit(root, Bad())


def log_in_wrong_hook(root: Path) -> None:
    class Bad(Tiny):
        def on_train_start(self) -> None:
            self.log("x", 1.0, on_step=True)

    fit(root, Bad())


def no_optimizer_return(root: Path) -> None:
    class Bad(Tiny):
        def configure_optimizers(self) -> Any:
            return "adam"

    fit(root, Bad())


CASES: list[tuple[str, Callable[..., Any], type[BaseException], str]] = [
    # Trainer flags
    ("max_steps=-5", trainer(max_steps=-5), MisconfigurationException, "`max_steps` must be a non-negative integer"),
    ("max_epochs=-3", trainer(max_epochs=-3), MisconfigurationException, "`max_epochs` must be a non-negative"),
    ("accumulate=0", trainer(accumulate_grad_batches=0), MisconfigurationException, "accumulate_grad_batches=0"),
    ("accumulate=2.5", trainer(accumulate_grad_batches=2.5), MisconfigurationException, "it can only be an int > 0"),
    ("clip_val='1'", trainer(gradient_clip_val="1"), TypeError, "`gradient_clip_val` should be an int or a float"),
    (
        "clip_algorithm",
        trainer(gradient_clip_algorithm="l2"),
        MisconfigurationException,
        "`gradient_clip_algorithm` l2",
    ),
    ("check_val_every=0", trainer(check_val_every_n_epoch=0), MisconfigurationException, "check_val_every_n_epoch"),
    ("val_check_interval=-1", trainer(val_check_interval=-1), MisconfigurationException, "val_check_interval"),
    ("limit_train=1.5", trainer(limit_train_batches=1.5), MisconfigurationException, "limit_train_batches"),
    ("overfit=-1", trainer(overfit_batches=-1), MisconfigurationException, "overfit_batches"),
    ("num_nodes=0", trainer(num_nodes=0), ValueError, "`num_nodes` must be a positive integer"),
    ("strategy", trainer(strategy="dpp"), ValueError, "invalid strategy name"),
    ("deterministic", trainer(deterministic="yes"), ValueError, "deterministic='yes'"),
    ("fast_dev_run=-1", trainer(fast_dev_run=-1), MisconfigurationException, "fast_dev_run=-1"),
    (
        "interval w/o epochs",
        trainer(check_val_every_n_epoch=None, val_check_interval=0.5),
        MisconfigurationException,
        "should be an integer when `check_val_every_n_epoch=None`",
    ),
    # callbacks and their monitors
    ("save_top_k=-2", callback(ModelCheckpoint, save_top_k=-2), MisconfigurationException, "save_top_k=-2"),
    (
        "every_n_steps=-1",
        callback(ModelCheckpoint, every_n_train_steps=-1),
        MisconfigurationException,
        "every_n_train_steps=-1",
    ),
    ("every_n_epochs=-1", callback(ModelCheckpoint, every_n_epochs=-1), MisconfigurationException, "every_n_epochs=-1"),
    (
        "steps+time",
        callback(ModelCheckpoint, every_n_train_steps=2, train_time_interval=timedelta(1)),
        MisconfigurationException,
        "should be mutually exclusive",
    ),
    (
        "top_k without monitor",
        callback(ModelCheckpoint, save_top_k=3),
        MisconfigurationException,
        "No quantity for top_k to track",
    ),
    ("mode='mean'", callback(ModelCheckpoint, mode="mean"), MisconfigurationException, "`mode` can be min, max"),
    ("hpc without file", lambda root: fit_ckpt(root, "hpc"), ValueError, "no HPC checkpoint was found"),
    ("on_non_finite", callback(FaultTolerance, on_non_finite="ignore"), MisconfigurationException, "on_non_finite"),
    ("exit_code=300", callback(FaultTolerance, exit_code=300), MisconfigurationException, "exit_code=300"),
    (
        "sync_every=0",
        callback(FaultTolerance, sync_every_n_batches=0),
        MisconfigurationException,
        "sync_every_n_batches=0",
    ),
    ("SIGKILL", lambda root: parse_signal("SIGKILL"), MisconfigurationException, "cannot be caught"),
    ("signal name", lambda root: parse_signal("SIGNOPE"), MisconfigurationException, "'SIGNOPE' cannot request"),
    # hook return values and logging calls
    (
        "training_step -> str",
        lambda root: fit(root, Tiny("string")),
        MisconfigurationException,
        "must return a Tensor, a dict, or None",
    ),
    ("dict without loss", lambda root: fit(root, Tiny("dict")), MisconfigurationException, "'loss' key needs to be"),
    ("configure_optimizers -> str", no_optimizer_return, MisconfigurationException, "configure_optimizers"),
    ("log a string", log_string, ValueError, "`self.log(name, a string)` was called"),
    ("log on_step in on_train_start", log_in_wrong_hook, MisconfigurationException, "on_train_start"),
    # dataloaders and models
    ("loader is an int", lambda root: fit(root, loaders=3), TypeError, "it is not iterable"),
    (
        "fit(non-module)",
        lambda root: fulgor.Trainer(**QUIET).fit(torch.nn.Linear(1, 1)),
        TypeError,
        "requires a `LightningModule`",
    ),
    # checkpoints
    (
        "missing ckpt",
        lambda root: fit_ckpt(root, str(root / "nope.ckpt")),
        FileNotFoundError,
        "Checkpoint file not found",
    ),
    ("empty ckpt", lambda root: fit_ckpt(root, write(root, "e.ckpt", b"")), CheckpointError, "is empty (0 bytes)"),
    (
        "truncated ckpt",
        lambda root: fit_ckpt(root, truncated(root)),
        CheckpointError,
        "truncated, corrupt or not a PyTorch file",
    ),
    (
        "not a checkpoint",
        lambda root: fit_ckpt(root, _plain_tensor(root)),
        CheckpointError,
        "is not a Lightning checkpoint",
    ),
    (
        "another model",
        lambda root: fit_ckpt(root, str(root / "good.ckpt"), Other()),
        CheckpointError,
        "do not fit `Other`",
    ),
    (
        "best without callback",
        lambda root: fit_ckpt(root, "best", enable_checkpointing=False),
        ValueError,
        "`ModelCheckpoint` is not configured",
    ),
    ("weights-only resume", resume_weights_only, KeyError, "save_weights_only"),
    ("resume past max_epochs", resume_past_max_epochs, MisconfigurationException, "Trainer(max_epochs=1)"),
    # paths and disks
    ("read-only folder", readonly_dir, CheckpointError, "the folder is not writable"),
    ("file instead of folder", save_into(file_as_dir), CheckpointError, "is a file, not a directory"),
    ("full disk", full_disk, CheckpointError, "No space left on device while saving"),
]


def _plain_tensor(root: Path) -> str:
    torch.save(torch.zeros(2), root / "t.ckpt")
    return str(root / "t.ckpt")


def test_catalogue_has_at_least_40_cases() -> None:
    assert len(CASES) >= 40
    assert len({name for name, *_ in CASES}) == len(CASES)


@pytest.mark.parametrize(("name", "action", "error", "phrase"), CASES, ids=[c[0] for c in CASES])
def test_misuse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, action: Any, error: Any, phrase: str
) -> None:
    good = tmp_path / "good.ckpt"
    t = fulgor.Trainer(default_root_dir=str(tmp_path / "setup"), max_epochs=1, **QUIET)
    t.fit(Tiny(), data())
    t.save_checkpoint(good)
    before = hashlib.sha256(good.read_bytes()).hexdigest()
    args = (tmp_path, monkeypatch) if action.__code__.co_argcount == 2 else (tmp_path,)
    with pytest.raises(error) as caught:
        action(*args)
    monkeypatch.undo()
    assert phrase in str(caught.value), str(caught.value)
    assert hashlib.sha256(good.read_bytes()).hexdigest() == before
    assert fulgor.checkpointing.load_checkpoint_file(good)["global_step"] == 2
    assert not list(tmp_path.rglob(".*.tmp")), "a temporary file was left behind"
