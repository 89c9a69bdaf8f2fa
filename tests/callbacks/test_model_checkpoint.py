"""ModelCheckpoint: file names, top-k keep/delete (against Lightning 2.6.6), save_last, triggers, state and errors."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch.utils.data import DataLoader, TensorDataset

import fulgor
from fulgor.callbacks.model_checkpoint import ModelCheckpoint
from fulgor.errors import MisconfigurationException

SCORES = [0.5, 0.3, 0.4, 0.1, 0.2]


def scored_class(base: type) -> type:
    class Scored(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            return self.layer(batch[0]).sum()

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self.log("val_loss", torch.tensor(SCORES[self.current_epoch % 5]))

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    return Scored


def data() -> DataLoader[Any]:
    return DataLoader(TensorDataset(torch.ones(4, 2)), batch_size=2)


def run(lib: Any, root: Path, callbacks: list[Any], max_epochs: int = 5, **kw: Any) -> Any:
    kw = {"num_sanity_val_steps": 0, "enable_progress_bar": False, "enable_model_summary": False, "logger": False,
          **kw}  # fmt: skip
    trainer = lib.Trainer(default_root_dir=str(root), max_epochs=max_epochs, callbacks=callbacks, **kw)
    trainer.fit(scored_class(lib.LightningModule)(), data(), data())
    return trainer


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.ckpt"))


def summary(cb: Any, root: Path) -> dict[str, Any]:
    def rel(path: str) -> str:
        return os.path.relpath(path, root) if path else ""

    return {
        "best_model_path": rel(cb.best_model_path),
        "best_model_score": None if cb.best_model_score is None else round(float(cb.best_model_score), 6),
        "kth_best_model_path": rel(cb.kth_best_model_path),
        "kth_value": round(float(cb.kth_value), 6),
        "best_k_models": {rel(k): round(float(v), 6) for k, v in cb.best_k_models.items()},
        "last_model_path": rel(cb.last_model_path),
    }


CONFIGS = [
    {},
    {"save_top_k": -1},
    {"monitor": "val_loss", "save_top_k": 2},
    {"monitor": "val_loss", "save_top_k": 0},
    {"monitor": "val_loss", "save_top_k": 1, "mode": "max"},
    {"filename": "fixed", "save_top_k": -1},
    {"monitor": "val_loss", "filename": "{epoch}-{val_loss:.2f}", "save_top_k": 3},
]


@pytest.mark.oracle
@pytest.mark.parametrize("config", CONFIGS, ids=[str(c) for c in CONFIGS])
def test_top_k_table_matches_lightning(tmp_path: Path, config: dict[str, Any]) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    ours = ModelCheckpoint(dirpath=tmp_path / "fu", **config)
    theirs = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "pl", **config)
    run(fulgor, tmp_path / "fu", [ours])
    run(pl, tmp_path / "pl", [theirs], accelerator="cpu")
    assert files(tmp_path / "fu") == files(tmp_path / "pl")
    assert summary(ours, tmp_path / "fu") == summary(theirs, tmp_path / "pl")
    assert ours.state_key == theirs.state_key


def test_top_k_table_exact_values(tmp_path: Path) -> None:
    cb = ModelCheckpoint(dirpath=tmp_path, monitor="val_loss", save_top_k=2)
    run(fulgor, tmp_path, [cb])
    assert files(tmp_path) == ["epoch=3-step=8.ckpt", "epoch=4-step=10.ckpt"]
    assert summary(cb, tmp_path) == {
        "best_model_path": "epoch=3-step=8.ckpt", "best_model_score": 0.1,
        "kth_best_model_path": "epoch=4-step=10.ckpt", "kth_value": 0.2,
        "best_k_models": {"epoch=3-step=8.ckpt": 0.1, "epoch=4-step=10.ckpt": 0.2}, "last_model_path": "",
    }  # fmt: skip
    cb.to_yaml()
    assert yaml.safe_load((tmp_path / "best_k_models.yaml").read_text()) == {
        str(tmp_path / "epoch=3-step=8.ckpt"): pytest.approx(0.1),
        str(tmp_path / "epoch=4-step=10.ckpt"): pytest.approx(0.2),
    }


def test_save_last_is_the_latest_state(tmp_path: Path) -> None:
    cb = ModelCheckpoint(dirpath=tmp_path, monitor="val_loss", save_last=True)
    run(fulgor, tmp_path, [cb])
    last = torch.load(tmp_path / "last.ckpt", weights_only=True)
    # Lightning 2.6 leaves epoch 3 / step 8 here (the last top-k save); fulgor keeps the real latest state.
    assert (last["epoch"], last["global_step"]) == (4, 10)
    assert files(tmp_path) == ["epoch=3-step=8.ckpt", "last.ckpt"]


def test_save_last_link(tmp_path: Path) -> None:
    cb = ModelCheckpoint(dirpath=tmp_path, monitor="val_loss", save_last="link")
    run(fulgor, tmp_path, [cb])
    assert os.readlink(tmp_path / "last.ckpt") == "epoch=3-step=8.ckpt"


def test_default_dirs_and_names(tmp_path: Path) -> None:
    trainer = run(fulgor, tmp_path, [], max_epochs=2, logger=None)
    assert files(tmp_path) == ["lightning_logs/version_0/checkpoints/epoch=1-step=4.ckpt"]
    assert trainer.checkpoint_callback.best_model_path.endswith("version_0/checkpoints/epoch=1-step=4.ckpt")


def test_format_checkpoint_name(tmp_path: Path) -> None:
    def name(**kw: Any) -> str:
        filename = kw.pop("filename")
        metrics = kw.pop("metrics")
        return ModelCheckpoint(dirpath=tmp_path, filename=filename, **kw).format_checkpoint_name(metrics)[
            len(str(tmp_path)) + 1 :
        ]

    assert name(filename="{epoch}", metrics={"epoch": 0}) == "epoch=0.ckpt"
    assert name(filename="{epoch:03d}", metrics={"epoch": 5}) == "epoch=005.ckpt"
    assert (
        name(filename="{epoch}-{val_loss:.2f}", metrics={"epoch": 2, "val_loss": 0.123456})
        == "epoch=2-val_loss=0.12.ckpt"
    )
    assert name(filename="{missing:d}", metrics={}) == "missing=0.ckpt"
    assert (
        name(filename="{epoch}-{val/acc:.2f}", metrics={"epoch": 3, "val/acc": torch.tensor(0.9)})
        == "epoch=3-val/acc=0.90.ckpt"
    )
    assert name(filename="ep{epoch:02d}-acc{val/acc:.3f}", metrics={"epoch": 3, "val/acc": torch.tensor(0.9)},
                auto_insert_metric_name=False) == "ep03-acc0.900.ckpt"  # fmt: skip


def test_state_key_and_init_errors() -> None:
    assert ModelCheckpoint().state_key == (
        "ModelCheckpoint{'monitor': None, 'mode': 'min', 'every_n_train_steps': 0, 'every_n_epochs': 1,"
        " 'train_time_interval': None}"
    )
    with pytest.raises(MisconfigurationException, match=r"Invalid value for save_top_k=-2\. Must be >= -1"):
        ModelCheckpoint(save_top_k=-2)
    with pytest.raises(
        MisconfigurationException, match=r"ModelCheckpoint\(save_top_k=2, monitor=None\) is not a valid"
    ):
        ModelCheckpoint(save_top_k=2)
    with pytest.raises(MisconfigurationException, match="`mode` can be min, max but got avg"):
        ModelCheckpoint(mode="avg")
    with pytest.raises(MisconfigurationException, match="should be mutually exclusive"):
        ModelCheckpoint(every_n_train_steps=2, train_time_interval=timedelta(seconds=1))


def test_every_n_train_steps_and_fast_dev_run(tmp_path: Path) -> None:
    cb = ModelCheckpoint(dirpath=tmp_path / "a", every_n_train_steps=3, save_top_k=-1)
    run(fulgor, tmp_path, [cb], max_epochs=3)
    assert files(tmp_path / "a") == ["epoch=1-step=3.ckpt", "epoch=2-step=6.ckpt"]
    run(fulgor, tmp_path, [ModelCheckpoint(dirpath=tmp_path / "b")], fast_dev_run=True)
    assert not (tmp_path / "b").exists()


def test_missing_monitor_raises_after_validation(tmp_path: Path) -> None:
    with pytest.raises(
        MisconfigurationException, match=r"`ModelCheckpoint\(monitor='nope'\)` could not find the monitored key"
    ):
        run(fulgor, tmp_path, [ModelCheckpoint(dirpath=tmp_path, monitor="nope")], max_epochs=1)


def test_load_state_dict_dirpath_changed(tmp_path: Path) -> None:
    cb = ModelCheckpoint(dirpath=tmp_path / "a", monitor="val_loss", save_top_k=2)
    run(fulgor, tmp_path, [cb], max_epochs=2)
    other = ModelCheckpoint(dirpath=tmp_path / "b", monitor="val_loss")
    with pytest.warns(UserWarning, match="The dirpath has changed from"):
        other.load_state_dict(cb.state_dict())
    assert other.best_model_path == cb.best_model_path
    assert other.best_k_models == {}
    same = ModelCheckpoint(dirpath=tmp_path / "a", monitor="val_loss", save_top_k=2)
    same.load_state_dict(cb.state_dict())
    assert same.best_k_models == cb.best_k_models
    assert same.kth_best_model_path == cb.kth_best_model_path


def test_loggers_told_after_each_save(tmp_path: Path) -> None:
    from fulgor.loggers.csv_logs import CSVLogger

    seen: list[str] = []

    class Spy(CSVLogger):
        def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
            seen.append(os.path.basename(checkpoint_callback.best_model_path))

    run(fulgor, tmp_path, [ModelCheckpoint(dirpath=tmp_path / "c")], max_epochs=2, logger=Spy(str(tmp_path)))
    assert seen == ["epoch=0-step=2.ckpt", "epoch=1-step=4.ckpt"]
