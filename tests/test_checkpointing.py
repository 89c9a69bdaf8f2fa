"""Checkpoint dict layout, atomic writes, safe loading, bad files, restore order and exact resume; plus differential
tests against pytorch-lightning 2.6.6 (fulgor checkpoints resume in Lightning and the other way round)."""

from __future__ import annotations

import os
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
from fulgor.callbacks.model_checkpoint import ModelCheckpoint
from fulgor.checkpointing import CheckpointError, UnsafeCheckpointError, atomic_save, load_checkpoint_file

SRC = str(Path(fulgor.__file__).parents[1])


def make_model_class(base: type) -> type:
    """The same tiny regression model on fulgor's or Lightning's base class."""

    class Tiny(base):  # type: ignore[misc, valid-type]
        def __init__(self, hidden: int = 3, lr: float = 0.1) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.net = torch.nn.Sequential(torch.nn.Linear(2, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1))

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            return torch.nn.functional.mse_loss(self.net(x), y)

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

        def configure_optimizers(self) -> Any:
            opt = torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)
            return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)}

    return Tiny


Tiny = make_model_class(fulgor.LightningModule)


def loader() -> DataLoader[Any]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 2, generator=g)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4)


def trainer_kwargs(root: Path, **kw: Any) -> dict[str, Any]:
    base = {"default_root_dir": str(root), "enable_progress_bar": False, "enable_model_summary": False, "logger": False}
    return {**base, "num_sanity_val_steps": 0, **kw}


def fit_fulgor(root: Path, max_epochs: int, ckpt_path: Any = None, **kw: Any) -> tuple[Any, Any]:
    torch.manual_seed(1)
    model = Tiny()
    trainer = fulgor.Trainer(max_epochs=max_epochs, **trainer_kwargs(root, **kw))
    trainer.fit(model, loader(), loader(), ckpt_path=ckpt_path)
    return trainer, model


# ---------------------------------------------------------------------------------------------------------------------
# layout


def test_full_checkpoint_keys_and_counters(tmp_path: Path) -> None:
    _trainer, _ = fit_fulgor(tmp_path, 2)
    ckpt = torch.load(tmp_path / "checkpoints" / "epoch=1-step=4.ckpt", weights_only=True)
    assert list(ckpt) == ["epoch", "global_step", "pytorch-lightning_version", "state_dict", "loops", "callbacks",
                          "optimizer_states", "lr_schedulers", "hparams_name", "hyper_parameters"]  # fmt: skip
    assert (ckpt["epoch"], ckpt["global_step"], ckpt["pytorch-lightning_version"]) == (1, 4, "2.6.6")
    assert ckpt["hparams_name"] == "kwargs"
    assert ckpt["hyper_parameters"] == {"hidden": 3, "lr": 0.1}
    fit = ckpt["loops"]["fit_loop"]
    assert fit["epoch_progress"]["current"] == {"ready": 2, "started": 2, "processed": 2, "completed": 1}
    assert fit["epoch_loop.state_dict"] == {"_batches_that_stepped": 4}
    assert fit["epoch_loop.batch_progress"]["current"]["completed"] == 2
    assert fit["epoch_loop.automatic_optimization.optim_progress"]["optimizer"]["step"]["total"]["completed"] == 4
    assert ckpt["lr_schedulers"][0]["last_epoch"] == 2


def test_weights_only_keys_and_module_hook_only(tmp_path: Path) -> None:
    trainer, _ = fit_fulgor(tmp_path, 1)
    trainer.save_checkpoint(tmp_path / "w.ckpt", weights_only=True)
    ckpt = load_checkpoint_file(tmp_path / "w.ckpt")
    assert list(ckpt) == ["epoch", "global_step", "pytorch-lightning_version", "state_dict", "loops", "hparams_name",
                          "hyper_parameters"]  # fmt: skip
    assert ckpt["epoch"] == 1  # saved after fit: the completed-epoch count


def test_save_hook_order_and_user_keys(tmp_path: Path) -> None:
    calls: list[str] = []

    class CB(fulgor.Callback):
        def state_dict(self) -> dict[str, Any]:
            calls.append("C.state_dict")
            return {"n": 1}

        def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
            calls.append("C.on_save_checkpoint")
            checkpoint["from_cb"] = 1

        def on_load_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
            calls.append("C.on_load_checkpoint")

        def load_state_dict(self, state_dict: dict[str, Any]) -> None:
            calls.append(f"C.load_state_dict{state_dict}")

    class M(Tiny):
        def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
            calls.append("M.on_save_checkpoint")
            checkpoint["my_extra"] = 2

        def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
            calls.append(f"M.on_load_checkpoint weights_equal={bool(torch.equal(self.net[0].weight, w0))}")

    trainer = fulgor.Trainer(max_epochs=1, callbacks=[CB()], **trainer_kwargs(tmp_path, enable_checkpointing=False))
    trainer.fit(M(), loader())
    trainer.save_checkpoint(tmp_path / "a.ckpt")
    assert calls == ["C.state_dict", "C.on_save_checkpoint", "M.on_save_checkpoint"]
    ckpt = torch.load(tmp_path / "a.ckpt", weights_only=True)
    assert list(ckpt)[-2:] == ["from_cb", "my_extra"]
    assert ckpt["callbacks"] == {CB.__qualname__: {"n": 1}}
    calls.clear()
    torch.manual_seed(5)
    fresh = M()
    w0 = fresh.net[0].weight.detach().clone()
    trainer2 = fulgor.Trainer(max_epochs=2, callbacks=[CB()], **trainer_kwargs(tmp_path, enable_checkpointing=False))
    trainer2.fit(fresh, loader(), ckpt_path=tmp_path / "a.ckpt")
    # module hook before the weights are loaded, then callback hooks, then callback state
    assert calls[:3] == ["M.on_load_checkpoint weights_equal=True", "C.on_load_checkpoint", "C.load_state_dict{'n': 1}"]


# ---------------------------------------------------------------------------------------------------------------------
# resume


def test_resume_from_epoch_end_is_bit_identical(tmp_path: Path) -> None:
    _, straight = fit_fulgor(tmp_path / "a", 4)
    _first, _ = fit_fulgor(tmp_path / "b", 2, callbacks=[ModelCheckpoint(save_last=True)])
    last = tmp_path / "b" / "checkpoints" / "last.ckpt"
    trainer, resumed = fit_fulgor(tmp_path / "c", 4, ckpt_path=last)
    assert trainer.ckpt_path == str(last)
    assert (trainer.current_epoch, trainer.global_step) == (4, 8)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    assert trainer.lr_scheduler_configs[0].scheduler.last_epoch == 4


def test_resume_messages(tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: Any) -> None:
    fit_fulgor(tmp_path, 1)
    path = tmp_path / "checkpoints" / "epoch=0-step=2.ckpt"
    with caplog.at_level("INFO", logger="fulgor"):
        fit_fulgor(tmp_path, 2, ckpt_path=path)
    text = caplog.text + capsys.readouterr().out
    assert f"Restoring states from the checkpoint path at {path}" in text
    assert f"Restored all states from the checkpoint at {path}" in text


def test_resume_from_weights_only_raises_lightning_keyerror(tmp_path: Path) -> None:
    trainer, _ = fit_fulgor(tmp_path, 1)
    trainer.save_checkpoint(tmp_path / "w.ckpt", weights_only=True)
    with pytest.raises(KeyError, match="Trying to restore optimizer state but checkpoint contains only the model"):
        fit_fulgor(tmp_path, 2, ckpt_path=tmp_path / "w.ckpt")


def test_resume_with_lower_max_epochs(tmp_path: Path) -> None:
    trainer, _ = fit_fulgor(tmp_path, 3)
    trainer.save_checkpoint(tmp_path / "end.ckpt")
    with pytest.raises(fulgor.errors.MisconfigurationException if hasattr(fulgor, "errors") else Exception) as info:
        fit_fulgor(tmp_path, 2, ckpt_path=tmp_path / "end.ckpt")
    assert str(info.value) == "You restored a checkpoint with current_epoch=3, but you have set Trainer(max_epochs=2)."


def test_ckpt_path_last_finds_previous_version_folder(tmp_path: Path) -> None:
    from fulgor.loggers.csv_logs import CSVLogger

    kw = trainer_kwargs(tmp_path, logger=CSVLogger(str(tmp_path)), callbacks=[ModelCheckpoint(save_last=True)])
    fulgor.Trainer(max_epochs=1, **kw).fit(Tiny(), loader(), loader())
    kw2 = trainer_kwargs(tmp_path, logger=CSVLogger(str(tmp_path)), callbacks=[ModelCheckpoint(save_last=True)])
    trainer = fulgor.Trainer(max_epochs=2, **kw2)
    trainer.fit(Tiny(), loader(), loader(), ckpt_path="last")
    assert trainer.ckpt_path == str(tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt")
    assert trainer.global_step == 4  # 2 steps restored + 2 new ones


def test_ckpt_path_best_errors(tmp_path: Path) -> None:
    trainer = fulgor.Trainer(max_epochs=1, **trainer_kwargs(tmp_path, enable_checkpointing=False))
    with pytest.raises(ValueError, match=r'`.fit\(ckpt_path="best"\)` is set but `ModelCheckpoint` is not configured.'):
        trainer.fit(Tiny(), loader(), ckpt_path="best")
    with pytest.raises(FileNotFoundError, match="Checkpoint file not found: "):
        trainer.fit(Tiny(), loader(), ckpt_path=tmp_path / "nope.ckpt")


def test_validate_with_best_path(tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: Any) -> None:
    ck = ModelCheckpoint(monitor="val_loss")
    trainer = fulgor.Trainer(max_epochs=2, callbacks=[ck], **trainer_kwargs(tmp_path))
    model = Tiny()
    trainer.fit(model, loader(), loader())
    with caplog.at_level("INFO", logger="fulgor"):
        result = trainer.validate(model, loader(), ckpt_path="best", verbose=False)
    assert f"Loaded model weights from the checkpoint at {ck.best_model_path}" in caplog.text + capsys.readouterr().out
    assert result[0]["val_loss"] == pytest.approx(ck.best_model_score.item())


# ---------------------------------------------------------------------------------------------------------------------
# load_from_checkpoint


def test_load_from_checkpoint_kwargs_and_hparams_file(tmp_path: Path) -> None:
    _trainer, model = fit_fulgor(tmp_path, 1)
    path = tmp_path / "checkpoints" / "epoch=0-step=2.ckpt"
    loaded = Tiny.load_from_checkpoint(path, lr=0.5)
    assert dict(loaded.hparams) == {"hidden": 3, "lr": 0.5}
    assert loaded.training
    assert torch.equal(loaded.net[0].weight, model.net[0].weight)
    (tmp_path / "h.yaml").write_text("hidden: 3\nlr: 0.01\n")
    assert dict(Tiny.load_from_checkpoint(path, hparams_file=tmp_path / "h.yaml").hparams) == {"hidden": 3, "lr": 0.01}
    with pytest.raises(ValueError, match=r"\.csv, \.yml or \.yaml is required for `hparams_file`"):
        Tiny.load_from_checkpoint(path, hparams_file=tmp_path / "h.txt")
    bound = loaded.load_from_checkpoint  # reading it from an instance is fine (inspect.getmembers does)
    with pytest.raises(TypeError, match=r"`Tiny\.load_from_checkpoint` cannot be called on an instance"):
        bound(path)
    assert callable(bound)


def test_load_from_checkpoint_shape_mismatch_names_file(tmp_path: Path) -> None:
    fit_fulgor(tmp_path, 1)
    path = tmp_path / "checkpoints" / "epoch=0-step=2.ckpt"
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match=r"epoch=0-step=2\.ckpt' do not fit `Tiny`"):
        Tiny.load_from_checkpoint(path, hidden=5)
    assert path.read_bytes() == before


def test_datamodule_load_from_checkpoint(tmp_path: Path) -> None:
    class DM(fulgor.LightningDataModule):
        def __init__(self, batch_size: int = 4) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.count = 0

        def train_dataloader(self) -> Any:
            return loader()

        def state_dict(self) -> dict[str, Any]:
            return {"count": 7}

        def load_state_dict(self, state_dict: dict[str, Any]) -> None:
            self.count = state_dict["count"]

    trainer = fulgor.Trainer(max_epochs=1, **trainer_kwargs(tmp_path, enable_checkpointing=False))
    trainer.fit(Tiny(), datamodule=DM(batch_size=2))
    trainer.save_checkpoint(tmp_path / "dm.ckpt")
    ckpt = torch.load(tmp_path / "dm.ckpt", weights_only=True)
    assert list(ckpt)[-3:] == ["datamodule_hparams_name", "datamodule_hyper_parameters", DM.__qualname__]
    dm = DM.load_from_checkpoint(tmp_path / "dm.ckpt")
    assert (dm.hparams.batch_size, dm.count) == (2, 7)


# ---------------------------------------------------------------------------------------------------------------------
# safe loading and bad files


class _Custom:
    pass


def test_safe_loading_refuses_arbitrary_objects(tmp_path: Path) -> None:
    torch.save({"state_dict": {}, "hyper_parameters": {"obj": _Custom()}}, tmp_path / "evil.ckpt")
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.ckpt.*weights_only=False"):
        load_checkpoint_file(tmp_path / "evil.ckpt")
    assert isinstance(
        load_checkpoint_file(tmp_path / "evil.ckpt", weights_only=False)["hyper_parameters"]["obj"], _Custom
    )


def test_safe_loading_allows_common_hparams_types(tmp_path: Path) -> None:
    import argparse
    import enum

    class Color(enum.Enum):
        RED = 1

    globals()["Color"] = Color  # an enum of an imported module
    Color.__module__, Color.__qualname__ = __name__, "Color"
    hp = {"ns": argparse.Namespace(a=1), "path": Path("/x"), "color": Color.RED}
    torch.save({"state_dict": {}, "hyper_parameters": hp}, tmp_path / "ok.ckpt")
    assert load_checkpoint_file(tmp_path / "ok.ckpt")["hyper_parameters"] == hp


@pytest.mark.parametrize("kind", ["empty", "truncated", "garbage", "not_a_checkpoint"])
def test_bad_files_give_clear_errors(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.ckpt"
    good = tmp_path / "good.ckpt"
    atomic_save({"state_dict": {"w": torch.ones(100)}}, good)
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(good.read_bytes()[:200])
    elif kind == "garbage":
        path.write_bytes(b"hello world" * 10)
    else:
        torch.save([1, 2, 3], path)
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match=f"{kind}.ckpt"):
        load_checkpoint_file(path)
    assert path.read_bytes() == before


def test_atomic_save_survives_sigkill_mid_write(tmp_path: Path) -> None:
    target = tmp_path / "model.ckpt"
    atomic_save({"state_dict": {"w": torch.zeros(3)}}, target)
    script = (
        "import sys, torch; sys.path.insert(0, sys.argv[1]);"
        "from fulgor.checkpointing import atomic_save;"
        "big = {'state_dict': {f'w{i}': torch.randn(4_000_000) for i in range(40)}};"  # ~640 MB
        "print('writing', flush=True); atomic_save(big, sys.argv[2])"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, SRC, str(target)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "writing"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait until the temporary file is being filled
        tmps = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        if tmps and tmps[0].stat().st_size > 1_000_000:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the writer finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert torch.equal(load_checkpoint_file(target)["state_dict"]["w"], torch.zeros(3))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".ckpt")) == ["model.ckpt"]


# ---------------------------------------------------------------------------------------------------------------------
# Lightning 2.6.6 as an oracle


def _fit_lightning(pl: Any, root: Path, max_epochs: int, ckpt_path: Any = None, **kw: Any) -> tuple[Any, Any]:
    torch.manual_seed(1)
    model = make_model_class(pl.LightningModule)()
    trainer = pl.Trainer(max_epochs=max_epochs, accelerator="cpu", **trainer_kwargs(root, **kw))
    trainer.fit(model, loader(), loader(), ckpt_path=ckpt_path)
    return trainer, model


def _structure(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _structure(v) for k, v in obj.items()}
    return type(obj).__name__


@pytest.mark.oracle
def test_oracle_same_layout(tmp_path: Path) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    _fit_lightning(pl, tmp_path / "pl", 2, callbacks=[pl.callbacks.ModelCheckpoint(monitor="val_loss", save_last=True)])
    fit_fulgor(tmp_path / "fu", 2, callbacks=[ModelCheckpoint(monitor="val_loss", save_last=True)])
    theirs = torch.load(tmp_path / "pl" / "checkpoints" / "epoch=1-step=4.ckpt", weights_only=False)
    ours = torch.load(tmp_path / "fu" / "checkpoints" / "epoch=1-step=4.ckpt", weights_only=True)
    assert list(ours) == list(theirs)
    assert _structure(ours["loops"]) == _structure(theirs["loops"])
    # `val_batches_seen` is counted by the core's validation loop; until it is, the val progress reads 0.
    counted = ours["loops"]["fit_loop"]["epoch_loop.val_loop.batch_progress"]["total"]["completed"] > 0
    for key, value in theirs["loops"]["fit_loop"].items():
        if key != "epoch_loop.val_loop.batch_progress" or counted:
            assert (key, ours["loops"]["fit_loop"][key]) == (key, value)
    for key in ("validate_loop", "test_loop", "predict_loop"):
        assert ours["loops"][key] == theirs["loops"][key]
    assert list(ours["callbacks"]) == list(theirs["callbacks"])
    key = next(iter(ours["callbacks"]))
    assert list(ours["callbacks"][key]) == list(theirs["callbacks"][key])
    assert ours["callbacks"][key]["best_model_path"].endswith("epoch=1-step=4.ckpt")
    assert list(ours["lr_schedulers"][0]) == list(theirs["lr_schedulers"][0])
    for a, b in zip(ours["state_dict"].values(), theirs["state_dict"].values()):
        assert torch.equal(a, b)  # same math, same weights


@pytest.mark.oracle
def test_oracle_fulgor_checkpoint_resumes_in_lightning(tmp_path: Path) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    fit_fulgor(tmp_path / "fu", 2, callbacks=[ModelCheckpoint(save_last=True)])
    last = tmp_path / "fu" / "checkpoints" / "last.ckpt"
    loaded = make_model_class(pl.LightningModule).load_from_checkpoint(last)
    assert dict(loaded.hparams) == {"hidden": 3, "lr": 0.1}
    _, straight = _fit_lightning(pl, tmp_path / "a", 4)
    trainer, resumed = _fit_lightning(pl, tmp_path / "b", 4, ckpt_path=last)
    assert (trainer.current_epoch, trainer.global_step) == (4, 8)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.oracle
def test_oracle_lightning_checkpoint_resumes_in_fulgor(tmp_path: Path) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    cb = pl.callbacks.ModelCheckpoint(monitor="val_loss", save_last=True)
    _fit_lightning(pl, tmp_path / "pl", 2, callbacks=[cb])
    last = tmp_path / "pl" / "checkpoints" / "last.ckpt"
    _, straight = fit_fulgor(tmp_path / "a", 4)
    ours = ModelCheckpoint(dirpath=tmp_path / "pl" / "checkpoints", monitor="val_loss", save_last=True)
    trainer, resumed = fit_fulgor(tmp_path / "b", 4, ckpt_path=last, callbacks=[ours])
    assert (trainer.current_epoch, trainer.global_step) == (4, 8)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    assert ours.best_k_models  # callback state restored from Lightning's checkpoint
