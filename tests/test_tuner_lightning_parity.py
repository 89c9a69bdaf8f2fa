"""Tuner.scale_batch_size and BatchSizeFinder against the real Lightning: the sizes found, where they are written
(model, hparams, datamodule), the search's messages, the Trainer's loaders afterwards, the evaluation stages."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

import fulgor
from fulgor.callbacks import BatchSizeFinder, LearningRateFinder
from fulgor.errors import MisconfigurationException
from fulgor.tuner import Tuner

OOM = "CUDA out of memory. Tried to allocate 2.00 GiB"


class Points(Dataset[Tensor]):
    def __init__(self, n: int) -> None:
        self.data = torch.randn(n, 4, generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> Tensor:
        return self.data[i]


def make_model(lib: ModuleType, limit: int = 10**9, n: int = 64, with_attr: bool = True, batch_size: int = 2) -> Any:
    """A linear model whose steps raise a fake CUDA OOM for batches larger than `limit`; its loaders read
    `self.batch_size` (1 when it has none: the datamodule then holds it)."""

    class Model(lib.LightningModule):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.layer = torch.nn.Linear(4, 1)
            if with_attr:
                self.batch_size = batch_size
            self.batches_seen = 0

        def _loader(self) -> DataLoader[Tensor]:
            return DataLoader(Points(n), batch_size=getattr(self, "batch_size", 1))

        def _step(self, batch: Tensor) -> Tensor:
            if batch.shape[0] > limit:
                raise RuntimeError(OOM)
            self.batches_seen += 1
            return self.layer(batch).pow(2).mean()

        def train_dataloader(self) -> DataLoader[Tensor]:
            return self._loader()

        def val_dataloader(self) -> DataLoader[Tensor]:
            return self._loader()

        def test_dataloader(self) -> DataLoader[Tensor]:
            return self._loader()

        def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
            return self._step(batch)

        def validation_step(self, batch: Tensor, batch_idx: int) -> None:
            self._step(batch)

        def test_step(self, batch: Tensor, batch_idx: int) -> None:
            self._step(batch)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Model()


def make_datamodule(lib: ModuleType, n: int = 64, hparams: bool = False) -> Any:
    class Data(lib.LightningDataModule):  # type: ignore[name-defined,misc]
        def __init__(self, batch_size: int = 2) -> None:
            super().__init__()
            if hparams:
                self.save_hyperparameters()
            else:
                self.batch_size = batch_size

        def train_dataloader(self) -> DataLoader[Tensor]:
            size = self.hparams.batch_size if hparams else self.batch_size
            return DataLoader(Points(n), batch_size=size)

        def val_dataloader(self) -> DataLoader[Tensor]:
            return self.train_dataloader()

    return Data()


def trainer_of(lib: ModuleType, root: Path, **kwargs: Any) -> Any:
    flags: dict[str, Any] = {"max_epochs": 1, "default_root_dir": str(root), "logger": False,
                             "enable_progress_bar": False, "enable_model_summary": False}  # fmt: skip
    return lib.Trainer(**{**flags, **kwargs})


def search_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    keys = ("trying batch size", "greater or equal", "Applying margin", "maximum batch size", "exceeds max_val")
    return [r.getMessage() for r in caplog.records if any(k in r.getMessage() for k in keys)]


def _both(tmp_path: Path, caplog: pytest.LogCaptureFixture, run: Any) -> dict[str, Any]:
    pl = pytest.importorskip("pytorch_lightning")
    from pytorch_lightning.tuner import Tuner as PLTuner

    results = {}
    for lib, tuner in ((fulgor, Tuner), (pl, PLTuner)):
        caplog.clear()
        with caplog.at_level(logging.INFO):
            outcome = run(lib, tuner, tmp_path / lib.__name__)
        results[lib.__name__] = (outcome, search_messages(caplog))
    return results


@pytest.mark.oracle
@pytest.mark.parametrize("mode", ["power", "binsearch"])
@pytest.mark.parametrize(("limit", "n", "init_val", "max_trials"), [
    (10**9, 64, 2, 25),  # grows until the dataset's length stops it
    (100, 1000, 500, 10),  # fails first, halves, then grows back to the limit
    (37, 1000, 2, 25),  # doubles into the limit, then bisects
    (10**9, 64, 8, 2),  # max_trials ends the search
    (10**9, 64, 64, 3),  # the first size already covers the dataset
])  # fmt: skip
def test_sizes_messages_and_loaders_match_lightning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: str, limit: int, n: int, init_val: int, max_trials: int
) -> None:
    def run(lib: ModuleType, tuner: Any, root: Path) -> tuple[Any, ...]:
        # The model starts at `init_val`: Lightning's first fit trial reads loaders built before `init_val` is set
        # (fulgor's tries `init_val` itself; see docs/differences.md).
        model = make_model(lib, limit=limit, n=n, batch_size=init_val)
        weights = model.layer.weight.detach().clone()
        trainer = trainer_of(lib, root)
        size = tuner(trainer).scale_batch_size(
            model, mode=mode, init_val=init_val, max_trials=max_trials, steps_per_trial=1
        )
        assert torch.equal(model.layer.weight, weights)
        return size, model.batch_size, trainer.train_dataloader.batch_size, trainer.val_dataloaders.batch_size

    results = _both(tmp_path, caplog, run)
    assert results["fulgor"] == results["pytorch_lightning"]
    assert results["fulgor"][1]  # the search said something


@pytest.mark.oracle
@pytest.mark.parametrize(("model_attr", "datamodule", "hparams"), [
    (True, True, False), (False, True, False), (False, True, True), (True, True, True),
])  # fmt: skip
def test_the_size_is_written_to_every_holder_as_lightning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, model_attr: bool, datamodule: bool, hparams: bool
) -> None:
    def run(lib: ModuleType, tuner: Any, root: Path) -> tuple[Any, ...]:
        model = make_model(lib, n=100, with_attr=model_attr)
        data = make_datamodule(lib, n=100, hparams=hparams)
        trainer = trainer_of(lib, root)
        size = tuner(trainer).scale_batch_size(model, datamodule=data, mode="binsearch", init_val=4, max_trials=3)
        held = data.hparams.batch_size if hparams else data.batch_size
        assert trainer.datamodule is data
        return size, getattr(model, "batch_size", None), held, trainer.train_dataloader.batch_size

    results = _both(tmp_path, caplog, run)
    assert results["fulgor"] == results["pytorch_lightning"]


@pytest.mark.oracle
@pytest.mark.parametrize("method", ["validate", "test"])
def test_batch_size_finder_in_an_evaluation_run_matches_lightning(tmp_path: Path, method: str) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    from pytorch_lightning.callbacks import BatchSizeFinder as PLBatchSizeFinder

    found = {}
    for lib, finder_class in ((fulgor, BatchSizeFinder), (pl, PLBatchSizeFinder)):
        model = make_model(lib, limit=20)
        finder = finder_class(max_trials=6, mode="binsearch", margin=0.0)
        trainer = trainer_of(lib, tmp_path / lib.__name__, callbacks=[finder])
        getattr(trainer, method)(model, verbose=False)
        loaders = trainer.val_dataloaders if method == "validate" else trainer.test_dataloaders
        found[lib.__name__] = (finder.optimal_batch_size, model.batch_size, loaders.batch_size, trainer.global_step)
    assert found["fulgor"] == found["pytorch_lightning"] == (20, 20, 20, 0)


def test_the_evaluation_run_reads_the_size_found(tmp_path: Path) -> None:
    model = make_model(fulgor, limit=16)
    trainer = trainer_of(fulgor, tmp_path, callbacks=[BatchSizeFinder(max_trials=4)])
    trainer.validate(model, verbose=False)
    assert model.batch_size == 16
    seen_in_search = model.batches_seen
    # The run itself: 64 samples in batches of 16, after the trials' 3 batches per size (2, 4, 8, 16; 32 fails).
    assert trainer.validate_loop.batch_progress.current.completed == 64 // 16
    assert seen_in_search == 3 * 4 + 64 // 16


def test_a_configured_finder_is_refused_by_the_tuner(tmp_path: Path) -> None:
    model = make_model(fulgor)
    with pytest.raises(ValueError, match=re.escape("already configured with a `BatchSizeFinder` callback")):
        Tuner(trainer_of(fulgor, tmp_path, callbacks=[BatchSizeFinder()])).scale_batch_size(model)
    with pytest.raises(ValueError, match=re.escape("already configured with a `LearningRateFinder` callback")):
        Tuner(trainer_of(fulgor, tmp_path, callbacks=[LearningRateFinder()])).lr_find(model)
    with pytest.raises(ValueError, match="not supported with distributed strategies"):
        Tuner(trainer_of(fulgor, tmp_path, strategy="ddp", devices=2, accelerator="cpu")).scale_batch_size(model)


def test_several_eval_loaders_are_refused_before_the_attribute_is_looked_for(tmp_path: Path) -> None:
    class TwoLoaders(type(make_model(fulgor, with_attr=False))):  # type: ignore[misc]
        def val_dataloader(self) -> list[DataLoader[Tensor]]:
            return [self._loader(), self._loader()]

    with pytest.raises(MisconfigurationException, match="cannot be used with multiple val dataloaders"):
        Tuner(trainer_of(fulgor, tmp_path)).scale_batch_size(TwoLoaders(), method="validate")


def test_the_trainer_is_left_finished_with_the_user_callbacks_and_loggers(tmp_path: Path) -> None:
    model = make_model(fulgor, limit=8)
    logger = fulgor.loggers.CSVLogger(str(tmp_path))
    trainer = trainer_of(fulgor, tmp_path, logger=logger, enable_model_summary=True)
    callbacks = list(trainer.callbacks)
    assert Tuner(trainer).scale_batch_size(model, max_trials=5) == 8
    assert trainer.callbacks == callbacks
    assert trainer.loggers == [logger]
    assert trainer.state.finished
    assert not trainer.interrupted
    assert (trainer.global_step, trainer.current_epoch) == (0, 0)
    assert trainer.num_sanity_val_steps == 2
    assert not list(tmp_path.glob("**/metrics.csv"))  # nothing was logged by the tuning runs


def test_a_subclass_chooses_when_to_search(tmp_path: Path) -> None:
    class OnlyWhenTesting(BatchSizeFinder):
        def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
            return

        def on_test_start(self, trainer: Any, pl_module: Any) -> None:
            self.scale_batch_size(trainer, pl_module)

    model = make_model(fulgor, limit=8)
    finder = OnlyWhenTesting(max_trials=5)
    trainer = trainer_of(fulgor, tmp_path, callbacks=[finder], max_steps=1)
    trainer.fit(model)
    assert (model.batch_size, finder.optimal_batch_size) == (2, 2)  # no search in fit
    trainer.test(model, verbose=False)
    assert (model.batch_size, finder.optimal_batch_size) == (8, 8)  # searched once, from the overridden hook
    assert trainer.test_dataloaders.batch_size == 2  # this run's loaders were built before the hook
