"""Tuner.lr_find / scale_batch_size and the LearningRateFinder / BatchSizeFinder callbacks: suggestions on a model
whose answer is known, batch sizes under an imposed (fake) memory limit, state restored, Lightning's numbers."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

import fulgor
from fulgor.callbacks import BatchSizeFinder, LearningRateFinder
from fulgor.errors import MisconfigurationException
from fulgor.tuner import Tuner, search_batch_size


def make_regression(lib: ModuleType) -> type:
    """y = 3x with x ~ N(0, 1), one weight, MSE, SGD: a step multiplies the error by (1 - 2 lr), so the loss
    explodes for learning rates above 1. `limit` raises a fake CUDA OOM for batches larger than it."""

    class Regression(lib.LightningModule):  # type: ignore[name-defined,misc]
        def __init__(self, lr: float = 0.01, batch_size: int = 32, limit: int | None = None) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.w = torch.nn.Linear(1, 1, bias=False)
            self.lr = lr
            self.batch_size = batch_size
            self.limit = limit

        def train_dataloader(self) -> DataLoader[Any]:
            x = torch.randn(4096, 1, generator=torch.Generator().manual_seed(0))
            return DataLoader(TensorDataset(x, 3 * x), batch_size=self.batch_size)

        def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
            x, y = batch
            if self.limit is not None and x.shape[0] > self.limit:
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return F.mse_loss(self.w(x), y)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=self.lr)

    return Regression


def quiet_trainer(lib: ModuleType, root: Path, **kwargs: Any) -> Any:
    defaults: dict[str, Any] = {"max_epochs": 1, "default_root_dir": str(root), "enable_progress_bar": False,
                                "logger": False, "enable_model_summary": False}  # fmt: skip
    return lib.Trainer(**{**defaults, **kwargs})


def test_lr_find_suggests_a_rate_below_the_known_divergence(tmp_path: Path) -> None:
    model = make_regression(fulgor)()
    trainer = quiet_trainer(fulgor, tmp_path)
    finder = Tuner(trainer).lr_find(model, min_lr=0.001, max_lr=4, num_training=200, mode="linear")
    assert finder is not None
    lrs, losses = finder.results["lr"], finder.results["loss"]
    assert len(lrs) == len(losses) == 128  # stopped early: the smoothed loss passed 4x its best
    assert 1.0 < lrs[-1] < 4.0  # ... only once the learning rate was past the divergence at 1
    # Lightning's schedule: min_lr first, then step k uses the fraction (k + 1) / num_training
    assert lrs[:3] == pytest.approx([0.001, 0.001 + 2 / 200 * 3.999, 0.001 + 3 / 200 * 3.999])
    suggestion = finder.suggestion()
    assert suggestion == pytest.approx(0.220945)
    assert 0.05 < suggestion < 1.0
    assert model.lr == suggestion  # update_attr=True (the default) sets `model.lr`


def test_lr_find_restores_weights_counters_and_callbacks(tmp_path: Path) -> None:
    model = make_regression(fulgor)()
    trainer = quiet_trainer(fulgor, tmp_path, max_steps=3)
    trainer.fit(model)
    weights = model.w.weight.detach().clone()
    callbacks = list(trainer.callbacks)
    counters = (trainer.global_step, trainer.current_epoch, trainer.state.batches_that_stepped, trainer.max_steps)
    finder = Tuner(trainer).lr_find(model, num_training=20, update_attr=False)
    assert finder is not None
    assert len(finder.results["lr"]) == 20
    assert torch.equal(model.w.weight, weights)
    assert (trainer.global_step, trainer.current_epoch, trainer.state.batches_that_stepped, trainer.max_steps) == (
        counters
    )
    assert trainer.callbacks == callbacks
    assert model.lr == 0.01
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tuner")] == []


def test_lr_find_attr_name_and_errors(tmp_path: Path) -> None:
    regression = make_regression(fulgor)

    class HparamsModel(regression):  # type: ignore[misc,valid-type]
        def __init__(self, my_lr: float = 0.01) -> None:
            super().__init__()
            del self.lr
            self.save_hyperparameters()

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=self.hparams.my_lr)

    model = HparamsModel()
    finder = Tuner(quiet_trainer(fulgor, tmp_path)).lr_find(model, num_training=30, attr_name="my_lr")
    assert finder is not None
    assert model.hparams.my_lr == finder.suggestion()
    with pytest.raises(AttributeError, match=re.escape("`model.lr` or `model.learning_rate`")):
        Tuner(quiet_trainer(fulgor, tmp_path)).lr_find(HparamsModel(), num_training=5)
    with pytest.raises(MisconfigurationException, match="only valid configuration to run lr finder"):
        Tuner(quiet_trainer(fulgor, tmp_path)).lr_find(model, method="validate")
    assert Tuner(quiet_trainer(fulgor, tmp_path, fast_dev_run=True)).lr_find(model) is None


def test_lr_finder_plot_is_a_figure_with_the_suggestion(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    finder = Tuner(quiet_trainer(fulgor, tmp_path)).lr_find(make_regression(fulgor)(), num_training=40)
    assert finder is not None
    figure = finder.plot(suggest=True)
    ax = figure.axes[0]
    assert ax.get_xscale() == "log"
    assert [len(line.get_xdata()) for line in ax.get_lines()] == [40, 1]
    assert float(ax.get_lines()[1].get_xdata()[0]) == finder.suggestion()
    figure.savefig(tmp_path / "lr.png")
    assert (tmp_path / "lr.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(("mode", "margin", "expected"), [("power", 0.05, 64), ("binsearch", 0.0, 100),
                                                          ("binsearch", 0.05, 95)])  # fmt: skip
def test_scale_batch_size_finds_the_largest_size_under_the_limit(
    tmp_path: Path, mode: str, margin: float, expected: int
) -> None:
    model = make_regression(fulgor)(limit=100)
    trainer = quiet_trainer(fulgor, tmp_path, max_steps=2)
    trainer.fit(model)
    weights = model.w.weight.detach().clone()
    before = dataclasses.asdict(trainer.state)
    size = Tuner(trainer).scale_batch_size(model, mode=mode, margin=margin)
    assert size == model.batch_size == expected
    assert torch.equal(model.w.weight, weights)
    # As in Lightning, the Trainer is left with the training loader rebuilt for the size found (its batch count
    # changes); the counters and flags are those of before.
    after = dataclasses.asdict(trainer.state)
    assert after.pop("batch_counts") == {"train": -(-4096 // expected)}
    before.pop("batch_counts")
    assert after == before
    assert trainer.train_dataloader.batch_size == expected
    assert (trainer.global_step, trainer.current_epoch, trainer.max_steps) == (2, 1, 2)


def test_search_batch_size_sequences() -> None:
    tried: list[int] = []

    def fits_under(limit: int) -> Any:
        def trial(size: int) -> bool:
            tried.append(size)
            return size <= limit

        return trial

    assert search_batch_size(fits_under(100), "binsearch", 2, 25) == 100
    assert tried == [2, 4, 8, 16, 32, 64, 128, 96, 112, 104, 100, 102, 101]
    tried.clear()
    # A first failure halves until one fits; the doubled size after it fails too (Lightning's power mode).
    assert search_batch_size(fits_under(3), "power", 16, 25) == 2
    assert tried == [16, 8, 4, 2, 4]
    tried.clear()
    assert search_batch_size(fits_under(10_000), "power", 2, 4) == 16  # max_trials: the last size that fitted
    assert search_batch_size(fits_under(10_000), "power", 2, 25, max_val=64) == 64


def test_scale_batch_size_refuses_direct_loaders_and_unknown_attr(tmp_path: Path) -> None:
    model = make_regression(fulgor)()
    with pytest.raises(MisconfigurationException, match="cannot be used with dataloaders passed directly"):
        Tuner(quiet_trainer(fulgor, tmp_path)).scale_batch_size(model, train_dataloaders=model.train_dataloader())
    with pytest.raises(MisconfigurationException, match="Field bs not found in `model`, `datamodule`"):
        Tuner(quiet_trainer(fulgor, tmp_path)).scale_batch_size(model, batch_arg_name="bs")
    with pytest.raises(ValueError, match=r"either of \('power', 'binsearch'\)"):
        Tuner(quiet_trainer(fulgor, tmp_path)).scale_batch_size(model, mode="linear")


def test_tuner_callbacks_tune_then_train(tmp_path: Path) -> None:
    assert LearningRateFinder.order == BatchSizeFinder.order == -1
    model = make_regression(fulgor)(limit=100)
    weights = model.w.weight.detach().clone()
    batch_finder = BatchSizeFinder()
    lr_finder = LearningRateFinder(min_lr=0.001, max_lr=4, num_training_steps=40, mode="linear")
    trainer = quiet_trainer(fulgor, tmp_path, max_steps=2, callbacks=[batch_finder, lr_finder])
    trainer.fit(model)
    assert batch_finder.optimal_batch_size == model.batch_size == 64
    assert trainer.train_dataloader.batch_size == 64
    assert lr_finder.optimal_lr is not None
    lr = lr_finder.optimal_lr.suggestion()
    assert model.lr == lr
    assert trainer.optimizers[0].param_groups[0]["lr"] == lr
    assert trainer.global_step == 2
    # the run itself started from the original weights: two SGD steps of `lr` from them
    assert not torch.equal(model.w.weight, weights)
    assert model.trainer is trainer


@pytest.mark.oracle
def test_lr_find_and_scale_batch_size_match_lightning(tmp_path: Path) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    from pytorch_lightning.tuner import Tuner as PLTuner

    results = {}
    for lib, tuner in ((fulgor, Tuner), (pl, PLTuner)):
        model = make_regression(lib)(limit=100)
        trainer = quiet_trainer(lib, tmp_path / lib.__name__)
        finder = tuner(trainer).lr_find(model, min_lr=1e-4, max_lr=10, num_training=60)
        trainer = quiet_trainer(lib, tmp_path / lib.__name__)
        power = tuner(trainer).scale_batch_size(model, mode="power")
        trainer = quiet_trainer(lib, tmp_path / lib.__name__)
        binsearch = tuner(trainer).scale_batch_size(model, mode="binsearch")
        results[lib.__name__] = (finder.results["lr"], finder.results["loss"], finder.suggestion(), model.lr,
                                 power, binsearch)  # fmt: skip
    ours, theirs = results["fulgor"], results["pytorch_lightning"]
    assert ours[0] == pytest.approx(theirs[0], rel=1e-12)
    assert ours[1] == pytest.approx(theirs[1], rel=1e-6)
    assert ours[2:] == pytest.approx(theirs[2:], rel=1e-12)
    assert ours[4:] == (64, 95)


def make_eval_regression(lib: ModuleType) -> type:
    """The regression model with evaluation loaders and steps that hit the fake OOM above `limit` too."""

    class EvalRegression(make_regression(lib)):  # type: ignore[misc]
        def _loader(self) -> DataLoader[Any]:
            return self.train_dataloader()

        def _step(self, batch: tuple[Tensor, Tensor]) -> Tensor:
            x, y = batch
            if self.limit is not None and x.shape[0] > self.limit:
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return F.mse_loss(self.w(x), y)

        def val_dataloader(self) -> DataLoader[Any]:
            return self._loader()

        def test_dataloader(self) -> DataLoader[Any]:
            return self._loader()

        def predict_dataloader(self) -> DataLoader[Any]:
            return self._loader()

        def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
            return self._step(batch)

        def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
            return self._step(batch)

        def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
            return self._step(batch)

    return EvalRegression


@pytest.mark.oracle
@pytest.mark.parametrize("method", ["validate", "test", "predict"])
def test_scale_batch_size_for_evaluation_methods_matches_lightning(tmp_path: Path, method: str) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    from pytorch_lightning.tuner import Tuner as PLTuner

    found = {}
    for lib, tuner in ((fulgor, Tuner), (pl, PLTuner)):
        model = make_eval_regression(lib)(limit=300)
        weights = model.w.weight.detach().clone()
        trainer = quiet_trainer(lib, tmp_path / lib.__name__)
        found[lib.__name__] = (
            tuner(trainer).scale_batch_size(model, method=method, mode="binsearch"),
            model.batch_size,
        )
        assert torch.equal(model.w.weight, weights)
    assert found["fulgor"] == found["pytorch_lightning"] == (285, 285)  # 300 less the 5% margin


def test_scale_batch_size_argument_errors_are_lightnings(tmp_path: Path) -> None:
    model = make_eval_regression(fulgor)()
    tuner = Tuner(quiet_trainer(fulgor, tmp_path))
    with pytest.raises(ValueError, match=r"method 'prediction' is invalid\. Should be one of \('fit', 'validate'"):
        tuner.scale_batch_size(model, method="prediction")
    with pytest.raises(MisconfigurationException, match="please consider setting `dataloaders` instead"):
        tuner.scale_batch_size(model, method="validate", val_dataloaders=model.val_dataloader())
    with pytest.raises(MisconfigurationException, match="consider setting `train_dataloaders` and `val_dataloaders`"):
        tuner.scale_batch_size(model, method="fit", dataloaders=model.val_dataloader())
    with pytest.raises(MisconfigurationException, match=r"dataloaders passed directly to `\.test\(\)`"):
        tuner.scale_batch_size(model, method="test", dataloaders=model.test_dataloader())
    with pytest.raises(ValueError, match=r"`mode` should be either of \('power', 'binsearch'\), got 'linear'\."):
        tuner.scale_batch_size(model, mode="linear")
    with pytest.raises(ValueError, match=r"`mode` should be either of \('power', 'binsearch'\)"):
        BatchSizeFinder(mode="linear")


def test_scale_batch_size_refuses_several_eval_loaders_and_warns_on_two_attributes(tmp_path: Path) -> None:
    class TwoLoaders(make_eval_regression(fulgor)):  # type: ignore[misc]
        def val_dataloader(self) -> list[DataLoader[Any]]:
            return [self._loader(), self._loader()]

        def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
            return self._step(batch)

    with pytest.raises(MisconfigurationException, match="cannot be used with multiple val dataloaders"):
        Tuner(quiet_trainer(fulgor, tmp_path)).scale_batch_size(TwoLoaders(), method="validate")

    class BothPlaces(make_regression(fulgor)):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.save_hyperparameters({"batch_size": 8})

    with pytest.warns(UserWarning, match="Field `model.batch_size` and `model.hparams.batch_size` are mutually"):
        Tuner(quiet_trainer(fulgor, tmp_path)).scale_batch_size(BothPlaces(), max_trials=1)
