"""OnExceptionCheckpoint: a checkpoint written when fit raises, removed after a clean run, found by ckpt_path="last"."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import fulgor
from fulgor.callbacks.on_exception_checkpoint import OnExceptionCheckpoint


def model_class(lib: Any, fail_at_step: int | None) -> type:
    class Model(lib.LightningModule):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.layer = torch.nn.Linear(2, 1)
            self.start_epoch: int | None = None

        def on_train_start(self) -> None:
            self.start_epoch = self.current_epoch

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            if self.global_step == fail_at_step:
                raise RuntimeError("boom")
            return self.layer(batch[0]).pow(2).mean()

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Model


def loader() -> DataLoader[Any]:
    return DataLoader(TensorDataset(torch.randn(8, 2, generator=torch.Generator().manual_seed(0))), batch_size=2)


def fit(lib: Any, root: Path, callback: Any, fail_at_step: int | None, **kw: Any) -> Any:
    model = model_class(lib, fail_at_step)()
    # Checkpointing stays enabled: Lightning counts OnExceptionCheckpoint as a checkpoint callback and refuses it
    # with `enable_checkpointing=False`.
    trainer = lib.Trainer(default_root_dir=str(root), max_epochs=3, callbacks=[callback], logger=False,
                          enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(model, loader(), **kw)
    return model, trainer


def test_saves_on_exception_with_the_progress_made(tmp_path: Path) -> None:
    callback = OnExceptionCheckpoint(dirpath=tmp_path / "ckpts")
    with pytest.raises(RuntimeError, match="boom"):
        fit(fulgor, tmp_path, callback, fail_at_step=6)
    assert callback.ckpt_path == os.path.join(tmp_path / "ckpts", "on_exception.ckpt")
    checkpoint = torch.load(callback.ckpt_path, weights_only=True)
    assert (checkpoint["epoch"], checkpoint["global_step"]) == (1, 6)


def test_a_later_fit_resumes_from_it_and_removes_it_after_a_clean_run(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        fit(fulgor, tmp_path, OnExceptionCheckpoint(dirpath=tmp_path, filename="crash"), fail_at_step=6)
    assert os.path.exists(tmp_path / "crash.ckpt")
    # `ckpt_path=None` with an OnExceptionCheckpoint means "last" in fit, as in Lightning: the crash file is newest.
    with pytest.warns(UserWarning, match=r"The last model of the previous `fit` call will be used"):
        model, trainer = fit(fulgor, tmp_path, OnExceptionCheckpoint(dirpath=tmp_path, filename="crash"), None)
    assert (model.start_epoch, trainer.global_step) == (1, 12)
    assert not os.path.exists(tmp_path / "crash.ckpt")
    with pytest.raises(ValueError, match="The filename cannot be empty"):
        OnExceptionCheckpoint(dirpath=tmp_path, filename="")


def test_ckpt_path_last_resumes_from_it(tmp_path: Path) -> None:
    """Needs the core to consider OnExceptionCheckpoint files for ckpt_path="last" (as Lightning does)."""
    callback = OnExceptionCheckpoint(dirpath=tmp_path)
    with pytest.raises(RuntimeError):
        fit(fulgor, tmp_path, callback, fail_at_step=6)
    # The default ModelCheckpoint saved epoch=0 (step 4); the on-exception file (step 6) is newer and wins.
    model, trainer = fit(fulgor, tmp_path, OnExceptionCheckpoint(dirpath=tmp_path), None, ckpt_path="last")
    assert (model.start_epoch, trainer.global_step) == (1, 12)


@pytest.mark.oracle
@pytest.mark.parametrize("ckpt_path", ["last", None])
def test_ckpt_path_last_matches_lightning(tmp_path: Path, ckpt_path: str | None) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    results = []
    for lib, cls in ((pl, pl.callbacks.OnExceptionCheckpoint), (fulgor, OnExceptionCheckpoint)):
        root = tmp_path / lib.__name__
        with pytest.warns(UserWarning, match="ckpt_path") as first, pytest.raises(RuntimeError):
            fit(lib, root, cls(dirpath=root), fail_at_step=6, ckpt_path=ckpt_path)
        model, trainer = fit(lib, root, cls(dirpath=root), None, ckpt_path=ckpt_path)
        texts = [str(w.message) for w in first if "ckpt_path" in str(w.message)]
        results.append((model.start_epoch, trainer.global_step, texts))
    assert results[0] == results[1]
    assert results[0][:2] == (1, 12)
    expected = ['.fit(ckpt_path="last") is set, but there is no last checkpoint available.']  # nothing to resume yet
    if ckpt_path is None:
        expected.insert(0, "`.fit(ckpt_path=None)` was called without a model. The last model of the previous `fit`")
    assert [t[: len(e)] for t, e in zip(results[0][2], expected)] == expected


@pytest.mark.oracle
def test_matches_lightning(tmp_path: Path) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    results = []
    for lib, cls in ((pl, pl.callbacks.OnExceptionCheckpoint), (fulgor, OnExceptionCheckpoint)):
        root = tmp_path / lib.__name__
        with pytest.raises(RuntimeError):
            fit(lib, root, cls(dirpath=root), fail_at_step=6)
        saved = torch.load(root / "on_exception.ckpt", weights_only=False)
        model, trainer = fit(lib, root, cls(dirpath=root), None, ckpt_path=str(root / "on_exception.ckpt"))
        results.append((saved["epoch"], saved["global_step"], model.start_epoch, trainer.global_step,
                        os.path.exists(root / "on_exception.ckpt")))  # fmt: skip
    assert results[0] == results[1] == (1, 6, 1, 12, False)


@pytest.mark.parametrize("lib_name", ["fulgor", pytest.param("pytorch_lightning", marks=pytest.mark.oracle)])
def test_validate_without_a_model_uses_best_and_mentions_the_crash_file(tmp_path: Path, lib_name: str) -> None:
    lib = pytest.importorskip(lib_name)

    class Validated(model_class(lib, None)):  # type: ignore[misc]
        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self.log("val_loss", self.layer(batch[0]).pow(2).mean())

    model = Validated()
    trainer = lib.Trainer(
        default_root_dir=str(tmp_path), max_epochs=1, logger=False, enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[lib.callbacks.ModelCheckpoint(dirpath=tmp_path), lib.callbacks.OnExceptionCheckpoint(tmp_path)],
    )  # fmt: skip
    trainer.fit(model, loader(), loader())
    with pytest.warns(UserWarning, match=r"best model of the previous `fit` call will be used\. There is also an"):
        trainer.validate(dataloaders=loader(), verbose=False)
    assert trainer.ckpt_path == trainer.checkpoint_callback.best_model_path
