"""Every checkpoint fulgor writes, in every configuration, is one plain file that `torch.load(weights_only=True)`
reads (no sidecar or other file beside it), and the files after a run are exactly Lightning's."""

from __future__ import annotations

import argparse
import enum
import os
import pathlib
import pickle
import signal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import fulgor
from fulgor.checkpointing import read_extra, verify_integrity
from fulgor.trainer import preemption

QUIET: dict[str, Any] = {"enable_progress_bar": False, "enable_model_summary": False, "num_sanity_val_steps": 0}


def model_class(pl: ModuleType, manual: bool = False, scheduler: bool = False) -> type:
    class Model(pl.LightningModule):  # type: ignore[misc,name-defined]
        def __init__(self, lr: float = 0.1, layers: Any = (2, 1), options: Any = None, name: str = "m") -> None:
            super().__init__()
            self.save_hyperparameters()
            self.layer = torch.nn.Linear(2, 1)
            self.automatic_optimization = not manual

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            loss = self.layer(batch[0]).pow(2).mean()
            self.log("train_loss", loss)
            if manual:
                opt = self.optimizers()
                opt.zero_grad()
                self.manual_backward(loss)
                opt.step()
                return None
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self.log("val_loss", self.layer(batch[0]).pow(2).mean())

        def configure_optimizers(self) -> Any:
            opt = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
            if not scheduler:
                return opt
            return [opt], [torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)]

    return Model


def loader(n: int = 16) -> DataLoader[Any]:
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(0))
    return DataLoader(TensorDataset(x), batch_size=4)


class Counter(fulgor.Callback):
    """A stateful callback: its state goes into every checkpoint."""

    def __init__(self) -> None:
        self.batches = 0

    def on_train_batch_end(self, *args: Any) -> None:
        self.batches += 1

    def state_dict(self) -> dict[str, Any]:
        return {"batches": self.batches}


class StopAtStep3(fulgor.Callback):
    def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
        if trainer.global_step == 3:
            os.kill(os.getpid(), signal.SIGTERM)


def _configs() -> dict[str, dict[str, Any]]:
    top_k: dict[str, Any] = {"monitor": "val_loss", "save_top_k": 2, "every_n_train_steps": 2}
    return {
        "default": {},
        "callbacks": {
            "callbacks": lambda: [
                fulgor.callbacks.ModelCheckpoint(**top_k, save_last=True),
                fulgor.callbacks.EarlyStopping("val_loss", patience=5),
                fulgor.callbacks.LearningRateMonitor(),
                fulgor.callbacks.Timer(),
                Counter(),
            ],
            "scheduler": True,
        },
        "link": {"callbacks": lambda: [fulgor.callbacks.ModelCheckpoint(**top_k, save_last="link")]},
        "weights_only": {
            "callbacks": lambda: [fulgor.callbacks.ModelCheckpoint(save_weights_only=True, save_last=True)]
        },
        "bf16": {"precision": "bf16-mixed"},
        "fp16": {"precision": "16-mixed"},
        "manual": {"manual": True, "accumulate_grad_batches": 1},
        "mid_epoch_val": {"val_check_interval": 2, "accumulate_grad_batches": 2, "gradient_clip_val": 0.5},
        "hparams": {"hparams": {"lr": 0.05, "layers": [2, [3, 4]], "options": {"a": None, "b": (1.5, "x")}}},
        "on_exception": {"callbacks": lambda: [fulgor.callbacks.OnExceptionCheckpoint(dirpath=".", filename="crash")]},
    }


CONFIGS = _configs()


def _fit(root: Path, config: dict[str, Any]) -> fulgor.Trainer:
    config = dict(config)
    model = model_class(fulgor, config.pop("manual", False), config.pop("scheduler", False))(
        **config.pop("hparams", {})
    )
    callbacks = config.pop("callbacks", list)()
    for callback in callbacks:
        if isinstance(callback, fulgor.callbacks.OnExceptionCheckpoint):
            callback.dirpath = str(root / "crash")
    trainer = fulgor.Trainer(default_root_dir=str(root), max_epochs=2, callbacks=callbacks, **QUIET, **config)
    trainer.fit(model, loader(), loader(8))
    trainer.save_checkpoint(root / "manual.ckpt")
    return trainer


def _every_file(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink())


def _assert_plain_files(root: Path) -> None:
    checkpoints = [p for p in _every_file(root) if p.suffix == ".ckpt"]
    assert checkpoints
    for folder in {p.parent for p in checkpoints}:
        for name in os.listdir(folder):  # what a user script does: load every file of the folder
            assert not name.startswith("."), f"hidden file {name} beside the checkpoints"
            if os.path.isfile(folder / name) and name.endswith(".ckpt"):
                checkpoint = torch.load(folder / name, weights_only=True)
                assert "state_dict" in checkpoint
                verify_integrity(str(folder / name))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_checkpoint_loads_with_plain_weights_only_torch_load(tmp_path: Path, name: str) -> None:
    config = CONFIGS[name]
    if config.get("precision") == "16-mixed" and not hasattr(torch.amp, "GradScaler"):
        pytest.skip("no CPU GradScaler in this torch")
    _fit(tmp_path, config)
    _assert_plain_files(tmp_path)
    names = [p.name for p in _every_file(tmp_path)]
    assert not [n for n in names if n.endswith((".sha256", ".tmp", ".corrupt"))]


def test_resume_and_preemption_records_load_with_plain_torch_load(tmp_path: Path) -> None:
    trainer = fulgor.Trainer(default_root_dir=str(tmp_path), max_epochs=3, callbacks=[StopAtStep3()], **QUIET)
    with pytest.raises(preemption.Preempted) as stopped:
        trainer.fit(model_class(fulgor)(), loader(), loader(8))
    assert stopped.value.checkpoint == str(tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt")
    path = Path(stopped.value.checkpoint)
    assert read_extra(str(path)) is not None  # fulgor's resume record rides inside the archive
    assert torch.load(path, weights_only=True)["global_step"] == 3
    resumed = fulgor.Trainer(default_root_dir=str(tmp_path), max_epochs=3, **QUIET)
    resumed.fit(model_class(fulgor)(), loader(), loader(8), ckpt_path=str(path))
    assert resumed.global_step == 12
    _assert_plain_files(tmp_path)


# ------------------------------------------------------------------------------------------- oracle: same files


def _run_layout(pl: ModuleType, root: Path, save_last: Any, logger: str) -> list[str]:
    torch.manual_seed(0)
    model = model_class(pl)()
    callbacks = [
        pl.callbacks.ModelCheckpoint(monitor="val_loss", save_top_k=2, save_last=save_last, every_n_train_steps=2),
        pl.callbacks.EarlyStopping("val_loss"),
    ]
    loggers = {"csv": pl.loggers.CSVLogger(str(root)), "none": False, "default": True}
    trainer = pl.Trainer(default_root_dir=str(root), max_epochs=3, callbacks=callbacks, logger=loggers[logger],
                         **QUIET)  # fmt: skip
    trainer.fit(model, loader(), loader(8))
    files = []
    for path in _every_file(root):
        shown = str(path.relative_to(root))
        if path.name.startswith("events.out.tfevents."):
            shown = str(path.parent.relative_to(root) / "events.out.tfevents")  # host, pid and time in the name
        files.append(shown + (f" -> {os.readlink(path)}" if path.is_symlink() else ""))
    return files


@pytest.mark.oracle
@pytest.mark.parametrize(("save_last", "logger"), [(True, "csv"), ("link", "default"), (False, "none")])
def test_files_after_a_run_are_exactly_lightnings(tmp_path: Path, save_last: Any, logger: str) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    ours = _run_layout(fulgor, tmp_path / "f", save_last, logger)
    theirs = _run_layout(pl, tmp_path / "l", save_last, logger)
    assert ours == theirs
    checkpoints = [f for f in ours if ".ckpt" in f]
    assert len(checkpoints) == 2 + (save_last is not False)


Picklable = model_class(fulgor)  # a module-level class: pickle finds it by name
Picklable.__qualname__ = "Picklable"


def test_trainer_and_model_pickle_with_torch_save(tmp_path: Path) -> None:
    trainer = fulgor.Trainer(default_root_dir=str(tmp_path), max_epochs=1, logger=False, **QUIET)
    trainer.fit(Picklable(), loader(), loader(8))
    torch.save(trainer.model, tmp_path / "model.pt")
    torch.save(trainer, tmp_path / "trainer.pt")  # holds the model's LightningAdam wrapper (a per-instance class)
    loaded = torch.load(tmp_path / "trainer.pt", weights_only=False)
    assert isinstance(loaded.optimizers[0], torch.optim.Adam)
    assert loaded.optimizers[0].param_groups[0]["lr"] == 0.1


class Color(enum.Enum):
    RED = 1


HPARAMS: dict[str, Any] = {
    "namespace": argparse.Namespace(lr=0.1, depth=3),
    "nested": {"a": [1, (2.5, "x")], "b": None, "c": {1, 2}},
    "tensor": {"w": torch.ones(2)},
    "path": {"p": pathlib.Path("/x")},  # torch's safe loader refuses these two, in Lightning's files too
    "enum": {"c": Color.RED},
}


def _plain_load_outcome(pl: ModuleType, root: Path, hparams: Any) -> str:
    class Saving(model_class(pl)):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.save_hyperparameters(hparams)

    trainer = pl.Trainer(default_root_dir=str(root), max_epochs=1, logger=False, **QUIET)
    trainer.fit(Saving(), loader())
    try:
        checkpoint = torch.load(trainer.checkpoint_callback.best_model_path, weights_only=True)
    except pickle.UnpicklingError:
        return "refused"
    return f"loaded {sorted(checkpoint['hyper_parameters'])}"


@pytest.mark.oracle
@pytest.mark.parametrize("name", sorted(HPARAMS))
def test_plain_load_of_hyperparameters_succeeds_exactly_where_lightnings_does(tmp_path: Path, name: str) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    ours = _plain_load_outcome(fulgor, tmp_path / "f", HPARAMS[name])
    assert ours == _plain_load_outcome(pl, tmp_path / "l", HPARAMS[name])
    assert ours.startswith("refused" if name in ("path", "enum") else "loaded")
