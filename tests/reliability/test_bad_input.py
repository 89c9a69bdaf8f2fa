"""A catalogue of realistic misuses: for each, the exception type, the phrase that names the mistake, the moment it is
raised (before the first training step, or at the first step for mistakes only a step can show), and a check that an
existing checkpoint was not damaged."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import fulgor
from fulgor.callbacks.early_stopping import EarlyStopping
from fulgor.callbacks.model_checkpoint import ModelCheckpoint
from fulgor.checkpointing import CheckpointError, atomic_save
from fulgor.errors import MisconfigurationException, PossibleUserWarning
from fulgor.loggers import CSVLogger
from fulgor.trainer import fit_loop
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
    trainer = fulgor.Trainer(**{"default_root_dir": str(root), "max_epochs": 1, **QUIET, **kw})
    trainer.fit(model or Tiny(), data() if loaders == "default" else loaders, ckpt_path=kw.pop("ckpt", None))


def fit_ckpt(root: Path, ckpt: Any, model: Any = None, **kw: Any) -> None:
    trainer = fulgor.Trainer(default_root_dir=str(root), **{"max_epochs": 1, **QUIET, **kw})
    trainer.fit(model or Tiny(), data(), ckpt_path=ckpt)


def trainer(**kw: Any) -> Callable[[Path], Any]:
    return lambda root: fulgor.Trainer(**{"default_root_dir": str(root), **kw})


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
        "`model` must be a `LightningModule` or `torch._dynamo.OptimizedModule`, got `Linear`",
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
        "is damaged",
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


def readonly_root(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_access = os.access
    # chmod does not stop root, so the read-only folder is simulated
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(root) else real_access(p, mode))
    fulgor.Trainer(default_root_dir=str(root / "new" / "logs"), **QUIET)


def fit_with(**trainer_kw: Any) -> Callable[[Path], Any]:
    """A full `fit` call with these flags: the error must come from the constructor, before any step."""
    return lambda root: fit(root, **trainer_kw)


EARLY_CASES: list[tuple[str, Callable[..., Any], type[BaseException], str]] = [
    # types and ranges of every Trainer flag, refused by the constructor (fulgor's checks; Lightning fails later)
    ("max_epochs='5'", fit_with(max_epochs="5"), TypeError, "`Trainer(max_epochs='5')` is invalid"),
    ("max_epochs='5' fix", trainer(max_epochs="5"), TypeError, "For example `Trainer(max_epochs=5)`"),
    ("max_epochs=2.5", trainer(max_epochs=2.5), TypeError, "`max_epochs` must be an int >= 0, -1 (no limit)"),
    ("max_epochs=True", trainer(max_epochs=True), TypeError, "`Trainer(max_epochs=True)` is invalid"),
    ("min_epochs=-1", trainer(min_epochs=-1), MisconfigurationException, "`min_epochs` must be an int >= 0"),
    ("min_epochs='2'", trainer(min_epochs="2"), TypeError, "`Trainer(min_epochs='2')`"),
    (
        "min_epochs>max_epochs",
        fit_with(min_epochs=5, max_epochs=2),
        MisconfigurationException,
        "`min_epochs` is greater than `max_epochs`",
    ),
    (
        "min_steps>max_steps",
        trainer(min_steps=10, max_steps=5),
        MisconfigurationException,
        "`Trainer(min_steps=10, max_steps=5)` is invalid",
    ),
    ("min_steps=-3", trainer(min_steps=-3), MisconfigurationException, "`min_steps` must be an int >= 0"),
    ("min_steps=1.5", trainer(min_steps=1.5), TypeError, "`Trainer(min_steps=1.5)`"),
    ("max_steps=2.0", trainer(max_steps=2.0), MisconfigurationException, "You passed in 2.0"),
    ("log_every=-1", fit_with(log_every_n_steps=-1), MisconfigurationException, "`Trainer(log_every_n_steps=-1)`"),
    ("log_every=2.5", trainer(log_every_n_steps=2.5), TypeError, "`log_every_n_steps` must be an int >= 0"),
    ("log_every='10'", trainer(log_every_n_steps="10"), TypeError, "For example `Trainer(log_every_n_steps=10)`"),
    ("sanity=-2", trainer(num_sanity_val_steps=-2), MisconfigurationException, "`Trainer(num_sanity_val_steps=-2)`"),
    ("sanity='2'", trainer(num_sanity_val_steps="2"), TypeError, "-1 (every batch) or None"),
    (
        "reload=-1",
        trainer(reload_dataloaders_every_n_epochs=-1),
        MisconfigurationException,
        "`reload_dataloaders_every_n_epochs` should be an int >= 0, got -1.",
    ),
    ("reload=0.5", trainer(reload_dataloaders_every_n_epochs=0.5), TypeError, "must be an int >= 0"),
    ("fast_dev_run='1'", trainer(fast_dev_run="1"), TypeError, "`fast_dev_run` must be a bool or an int >= 0"),
    ("fast_dev_run=0.5", trainer(fast_dev_run=0.5), TypeError, "`Trainer(fast_dev_run=0.5)`"),
    ("progress_bar='yes'", trainer(enable_progress_bar="yes"), TypeError, "must be True, False or None"),
    ("checkpointing='no'", trainer(enable_checkpointing="no"), TypeError, "`Trainer(enable_checkpointing='no')`"),
    ("model_summary=1", trainer(enable_model_summary=1), TypeError, "`Trainer(enable_model_summary=1)`"),
    ("inference_mode=None", trainer(inference_mode=None), TypeError, "`inference_mode` must be True or False"),
    ("detect_anomaly='x'", trainer(detect_anomaly="x"), TypeError, "`Trainer(detect_anomaly='x')`"),
    ("benchmark='x'", trainer(benchmark="x"), TypeError, "`Trainer(benchmark='x')`"),
    ("sync_batchnorm='x'", trainer(sync_batchnorm="x"), TypeError, "`Trainer(sync_batchnorm='x')`"),
    ("distributed_sampler=1", trainer(use_distributed_sampler=1), TypeError, "`use_distributed_sampler` must be"),
    ("autolog_hparams='x'", trainer(enable_autolog_hparams="x"), TypeError, "`enable_autolog_hparams` must be"),
    ("clip_val=-1", trainer(gradient_clip_val=-1.0), MisconfigurationException, "must be a number >= 0"),
    ("clip_val=nan", trainer(gradient_clip_val=float("nan")), MisconfigurationException, "gradient_clip_val=nan"),
    ("accumulate='2'", trainer(accumulate_grad_batches="2"), MisconfigurationException, "it can only be an int > 0"),
    ("check_val_every=1.5", trainer(check_val_every_n_epoch=1.5), MisconfigurationException, "got 1.5"),
    ("limit_val='1'", trainer(limit_val_batches="1"), MisconfigurationException, "invalid value '1' for limit_val"),
    ("max_time='abc'", trainer(max_time="abc"), MisconfigurationException, "is not a valid duration"),
    ("precision='17'", trainer(precision="17"), ValueError, "Precision '17' is invalid"),
    ("accelerator='tpu2'", trainer(accelerator="tpu2"), ValueError, "invalid accelerator name"),
    ("devices=0", trainer(devices=0), MisconfigurationException, "`Trainer(devices=0)`"),
    ("profiler=3", trainer(profiler=3), MisconfigurationException, "`Trainer(profiler=3)` is invalid"),
    ("non_finite='ignore'", trainer(non_finite="ignore"), ValueError, "`Trainer(non_finite='ignore')` is invalid"),
    # mistyped keyword arguments: Python's TypeError with the closest valid name
    ("Trainer(max_epoch=)", trainer(max_epoch=3), TypeError, "Did you mean `max_epochs`?"),
    ("Trainer(gradient_clip=)", trainer(gradient_clip=1.0), TypeError, "unexpected keyword argument 'gradient_clip'"),
    ("EarlyStopping(monitr=)", callback(EarlyStopping, monitr="x"), TypeError, "Did you mean `monitor`?"),
    ("ModelCheckpoint(dirpth=)", callback(ModelCheckpoint, dirpth="x"), TypeError, "Did you mean `dirpath`?"),
    # folders
    ("root_dir=3", trainer(default_root_dir=3), TypeError, "must be a folder path (str or os.PathLike)"),
    ("root_dir is a file", lambda root: fit(root / "good.ckpt"), MisconfigurationException, "is a file, not a folder"),
    (
        "root_dir under a file",
        lambda root: fit(root / "good.ckpt" / "logs"),
        MisconfigurationException,
        "cannot be created: ",
    ),
    ("root_dir read-only", readonly_root, MisconfigurationException, "is not writable"),
    # callbacks and loggers of the wrong kind
    ("callbacks=class", fit_with(callbacks=EarlyStopping), TypeError, "received the class `EarlyStopping` instead"),
    ("callbacks=[class]", trainer(callbacks=[ModelCheckpoint]), TypeError, "pass `callbacks=[ModelCheckpoint(...)]`"),
    ("callbacks='x'", trainer(callbacks="early_stopping"), TypeError, "which is not a `Callback`"),
    ("callbacks=[cb, 3]", trainer(callbacks=[ModelCheckpoint(), 3]), TypeError, "received int 3"),
    ("logger='csv'", fit_with(logger="csv"), TypeError, "`Trainer(logger=...)` received str 'csv'"),
    ("logger=class", trainer(logger=CSVLogger), TypeError, "received the class `CSVLogger`: pass"),
    ("logger=[ok, 'tb']", lambda root: trainer(logger=[CSVLogger(str(root)), "tb"])(root), TypeError, "str 'tb'"),
    ("logger=3", trainer(logger=3), TypeError, "a list of them, True (the default logger) or False"),
    (
        "logger save_dir is a file",
        lambda root: fit(root, logger=CSVLogger(str(root / "good.ckpt"))),
        MisconfigurationException,
        "`CSVLogger(save_dir='",
    ),
]

# Cases whose mistake can only show while a step runs (a hook's return value, a `self.log` call): at the first step.
AT_FIRST_STEP = {"training_step -> str", "dict without loss", "log a string"}
# Cases that train or load on purpose before the mistake (resume, a second fit).
AFTER_TRAINING = {"weights-only resume", "resume past max_epochs"}


def _plain_tensor(root: Path) -> str:
    torch.save(torch.zeros(2), root / "t.ckpt")
    return str(root / "t.ckpt")


ALL_CASES = CASES + EARLY_CASES


def test_catalogue_has_at_least_80_cases() -> None:
    assert len(ALL_CASES) >= 80
    assert len({name for name, *_ in ALL_CASES}) == len(ALL_CASES)


@pytest.mark.parametrize(("name", "action", "error", "phrase"), ALL_CASES, ids=[c[0] for c in ALL_CASES])
def test_misuse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, action: Any, error: Any, phrase: str
) -> None:
    good = tmp_path / "good.ckpt"
    t = fulgor.Trainer(default_root_dir=str(tmp_path / "setup"), max_epochs=1, **QUIET)
    t.fit(Tiny(), data())
    t.save_checkpoint(good)
    before = hashlib.sha256(good.read_bytes()).hexdigest()
    steps: list[int] = []  # training batches run while the mistake was being made
    real_train_batch = fit_loop.train_batch
    monkeypatch.setattr(fit_loop, "train_batch", lambda *a: (steps.append(1), real_train_batch(*a))[1])
    args = (tmp_path, monkeypatch) if action.__code__.co_argcount == 2 else (tmp_path,)
    with pytest.raises(error) as caught:
        action(*args)
    monkeypatch.undo()
    assert phrase in str(caught.value), str(caught.value)
    if name in AT_FIRST_STEP:
        assert len(steps) == 1, f"raised at training batch {len(steps)}, expected the first"
    elif name not in AFTER_TRAINING:
        assert not steps, f"raised after {len(steps)} training batches: expected before the first step"
    assert hashlib.sha256(good.read_bytes()).hexdigest() == before
    assert fulgor.checkpointing.load_checkpoint_file(good)["global_step"] == 2
    assert not list(tmp_path.rglob(".*.tmp")), "a temporary file was left behind"


class SkipsNoneBatches(Tiny):
    def training_step(self, batch: Any, batch_idx: int) -> Any:
        return None if batch is None else super().training_step(batch, batch_idx)


def test_a_loader_yielding_none_is_named_but_legitimate_skips_still_run(tmp_path: Path) -> None:
    loader = DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=4, collate_fn=lambda items: None)
    trainer = fulgor.Trainer(default_root_dir=str(tmp_path), max_epochs=1, **QUIET)
    with pytest.warns(PossibleUserWarning, match=r"train_dataloader yielded None.*In epoch 0.*collate_fn"):
        trainer.fit(SkipsNoneBatches(), loader)
    assert trainer.state.status == "finished"  # a warning, not an error: the module skips such batches


def test_an_empty_training_loader_warns_as_lightning(tmp_path: Path) -> None:
    trainer = fulgor.Trainer(default_root_dir=str(tmp_path), max_epochs=1, **QUIET)
    with pytest.warns(UserWarning, match=r"Total length of `DataLoader` across ranks is zero"):
        trainer.fit(Tiny(), DataLoader(TensorDataset(torch.zeros(0, 2)), batch_size=2))
    assert trainer.global_step == 0


def test_legitimate_situations_keep_lightnings_warnings(tmp_path: Path) -> None:
    class NoOptimizer(Tiny):
        def configure_optimizers(self) -> Any:
            return None

    trainer = fulgor.Trainer(default_root_dir=str(tmp_path), max_epochs=1, **QUIET)
    with pytest.warns(UserWarning, match="`LightningModule.configure_optimizers` returned `None`"):
        trainer.fit(NoOptimizer(), data())
    trainer = fulgor.Trainer(default_root_dir=str(tmp_path), max_epochs=1, **QUIET)
    with pytest.warns(UserWarning, match="you defined a `validation_step` but have no `val_dataloader`|"
                      "You passed in a `val_dataloader` but have no `validation_step`"):  # fmt: skip
        trainer.fit(Tiny(), data(), data())
