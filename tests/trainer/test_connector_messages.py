"""Messages of the Trainer's flag and data checks against the real Lightning: `devices=0`-like values with a named
accelerator, a custom LayerSync with `sync_batchnorm=True`, and a stage whose dataloader method is missing or None."""

from __future__ import annotations

import warnings
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest.mock import Mock

import pytest

import fulgor
from fulgor.demos.boring_classes import BoringDataModule, BoringModel
from fulgor.errors import MisconfigurationException
from fulgor.layer_sync import LayerSync


def _lightning() -> ModuleType:
    return pytest.importorskip("pytorch_lightning")


def _error(make: Any) -> tuple[str, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            make()
        except Exception as error:
            return type(error).__name__, str(error)
    return "", ""


@pytest.mark.parametrize("accelerator", ["cpu", "cuda", "mps", "tpu"])
@pytest.mark.parametrize("devices", ["0", 0, []])
def test_zero_devices_are_refused_before_the_accelerator_is_checked(accelerator: str, devices: Any) -> None:
    with pytest.raises(MisconfigurationException) as error:
        fulgor.Trainer(accelerator=accelerator, devices=devices, logger=False)
    assert str(error.value) == (
        f"`Trainer(devices={devices!r})` value is not a valid input using {accelerator} accelerator."
    )


@pytest.mark.oracle
@pytest.mark.parametrize("accelerator", ["cpu", "cuda", "mps", "tpu", "gpu", "auto"])
@pytest.mark.parametrize("devices", ["0", 0, []])
def test_zero_devices_match_lightning(accelerator: str, devices: Any) -> None:
    pl = _lightning()
    ours = _error(lambda: fulgor.Trainer(accelerator=accelerator, devices=devices, logger=False))
    theirs = _error(lambda: pl.Trainer(accelerator=accelerator, devices=devices, logger=False))
    if accelerator == "gpu":  # fulgor's "no gpu" message adds the fix after Lightning's sentence
        assert ours[0] == theirs[0]
        assert ours[1].startswith(theirs[1])
    else:
        assert ours == theirs


@pytest.mark.oracle
def test_a_custom_layer_sync_with_sync_batchnorm_names_its_class_as_lightning() -> None:
    pl = _lightning()
    from pytorch_lightning.plugins import LayerSync as PLLayerSync

    class MySync(LayerSync):
        def apply(self, model: Any) -> Any:
            return model

        def revert(self, model: Any) -> Any:
            return model

    class PLMySync(PLLayerSync):
        def apply(self, model: Any) -> Any:
            return model

        def revert(self, model: Any) -> Any:
            return model

    PLMySync.__name__ = "MySync"  # the same class name on both sides

    ours = _error(lambda: fulgor.Trainer(sync_batchnorm=True, plugins=[Mock(spec=LayerSync)]))
    theirs = _error(lambda: pl.Trainer(sync_batchnorm=True, plugins=[Mock(spec=PLLayerSync)]))
    assert ours == theirs
    assert "provided a `LayerSync` plugin" in ours[1]
    ours = _error(lambda: fulgor.Trainer(sync_batchnorm=True, plugins=[MySync()]))
    theirs = _error(lambda: pl.Trainer(sync_batchnorm=True, plugins=[PLMySync()]))
    assert ours == theirs
    assert "provided a `MySync` plugin" in ours[1]


ENTRY_POINTS = [("fit", "train_dataloaders"), ("validate", "dataloaders"), ("test", "dataloaders"),
                ("predict", "dataloaders")]  # fmt: skip


def _without_loader_methods(lib: ModuleType, with_datamodule: bool) -> tuple[Any, Any]:
    demos = pytest.importorskip(f"{lib.__name__}.demos.boring_classes")
    model, datamodule = demos.BoringModel(), demos.BoringDataModule()
    for owner in (model, datamodule):
        for stage in ("train", "val", "test", "predict"):
            setattr(owner, f"{stage}_dataloader", None)
    return model, datamodule if with_datamodule else None


def _run(lib: ModuleType, root: Path, fn: str, argument: str, with_datamodule: bool) -> tuple[str, str]:
    model, datamodule = _without_loader_methods(lib, with_datamodule)
    trainer = lib.Trainer(default_root_dir=str(root), fast_dev_run=True, logger=False, enable_progress_bar=False)
    return _error(lambda: getattr(trainer, fn)(model, **{argument: None}, datamodule=datamodule))


@pytest.mark.parametrize(("fn", "argument"), ENTRY_POINTS)
def test_a_dataloader_method_set_to_none_is_named(tmp_path: Path, fn: str, argument: str) -> None:
    kind, message = _run(fulgor, tmp_path, fn, argument, with_datamodule=False)
    assert kind == "TypeError"
    assert message.startswith(f"An invalid dataloader was passed to `Trainer.{fn}({argument}=...)`. Found None.")


@pytest.mark.oracle
@pytest.mark.parametrize("with_datamodule", [False, True])
@pytest.mark.parametrize(("fn", "argument"), ENTRY_POINTS)
def test_a_dataloader_method_set_to_none_matches_lightning(
    tmp_path: Path, fn: str, argument: str, with_datamodule: bool
) -> None:
    pl = _lightning()
    ours = _run(fulgor, tmp_path / "ours", fn, argument, with_datamodule)
    theirs = _run(pl, tmp_path / "theirs", fn, argument, with_datamodule)
    assert ours == theirs


def _missing_method(lib: ModuleType, root: Path, fn: str, with_datamodule: bool) -> tuple[str, str]:
    demos = pytest.importorskip(f"{lib.__name__}.demos.boring_classes")
    hook = "val_dataloader" if fn == "validate" else f"{fn}_dataloader"

    class NoLoader(demos.BoringModel):  # type: ignore[misc,name-defined]
        pass

    setattr(NoLoader, hook, getattr(lib.LightningModule, hook))  # the base class's: not implemented
    datamodule = None
    if with_datamodule:
        datamodule = demos.BoringDataModule()
        setattr(type(datamodule), hook, getattr(lib.LightningDataModule, hook))
    trainer = lib.Trainer(default_root_dir=str(root), logger=False, enable_progress_bar=False)
    return _error(lambda: getattr(trainer, fn)(NoLoader(), datamodule=datamodule))


@pytest.mark.parametrize("fn", ["validate", "test", "predict"])
def test_an_evaluation_without_data_is_refused(tmp_path: Path, fn: str) -> None:
    hook = "val_dataloader" if fn == "validate" else f"{fn}_dataloader"
    assert _missing_method(fulgor, tmp_path, fn, with_datamodule=False) == (
        "MisconfigurationException",
        f"`{hook}` must be implemented to be used with the Lightning Trainer",
    )


@pytest.mark.oracle
@pytest.mark.parametrize("fn", ["validate", "test", "predict"])
def test_an_evaluation_without_data_matches_lightning(tmp_path: Path, fn: str) -> None:
    pl = _lightning()
    assert _missing_method(fulgor, tmp_path / "a", fn, False) == _missing_method(pl, tmp_path / "b", fn, False)


def test_an_evaluation_with_data_or_limit_zero_runs(tmp_path: Path) -> None:
    model = BoringModel()
    trainer = fulgor.Trainer(default_root_dir=str(tmp_path), logger=False, enable_progress_bar=False)
    assert trainer.validate(model, verbose=False)  # BoringModel's own val_dataloader
    assert trainer.test(model, datamodule=BoringDataModule(), verbose=False)
    model.val_dataloader = None  # type: ignore[assignment,method-assign]
    trainer = fulgor.Trainer(default_root_dir=str(tmp_path), logger=False, limit_val_batches=0)
    assert trainer.validate(model, verbose=False) == []  # nothing requested: no error
