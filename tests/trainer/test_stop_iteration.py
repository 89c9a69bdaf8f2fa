"""A StopIteration raised by user code inside a loop (a step, a batch hook, the validation a training epoch runs)
ends that loop's data, as in Lightning, instead of escaping from `fit`/`validate`/`predict`; compared with
pytorch-lightning 2.6.6 where it is installed."""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from torch.utils.data import DataLoader

import fulgor


def _demos(lib: ModuleType) -> Any:
    return importlib.import_module(f"{lib.__name__}.demos.boring_classes")


def record_fit(lib: ModuleType, root: Path, where: str) -> list[Any]:
    """A 2-epoch fit (4 batches, validation every 2) where `where` raises StopIteration once the global step is 2."""
    events: list[Any] = []

    class Recorder(lib.Callback):  # type: ignore[misc,name-defined]
        def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
            if where == "on_validation_start" and not trainer.sanity_checking and trainer.global_step == 2:
                raise StopIteration

        def on_train_batch_end(self, trainer: Any, pl_module: Any, *args: Any) -> None:
            if where == "on_train_batch_end" and trainer.global_step == 2:
                raise StopIteration

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            if where == "on_train_epoch_start" and trainer.current_epoch == 1:
                raise StopIteration

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            events.append(("epoch_end", trainer.current_epoch, trainer.global_step))
            if where == "on_train_epoch_end" and trainer.current_epoch == 0:
                raise StopIteration

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            events.append(("train_end", trainer.current_epoch, trainer.global_step))

    class Model(_demos(lib).BoringModel):  # type: ignore[misc]
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            if where == "training_step" and self.global_step == 2:
                raise StopIteration
            return super().training_step(batch, batch_idx)

        def validation_step(self, batch: Any, batch_idx: int) -> Any:
            if where == "validation_step" and not self.trainer.sanity_checking and self.global_step == 2:
                raise StopIteration
            self.log("seen", float(self.global_step))
            return super().validation_step(batch, batch_idx)

    trainer = lib.Trainer(
        default_root_dir=root, logger=False, callbacks=Recorder(), enable_checkpointing=False,
        enable_model_summary=False, enable_progress_bar=False, max_epochs=2, limit_train_batches=4,
        val_check_interval=2, limit_val_batches=3,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(Model())
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    return [*events, ("done", trainer.global_step, trainer.current_epoch, trainer.training, metrics)]


WHERE = [
    "training_step",
    "on_train_batch_end",
    "on_validation_start",
    "validation_step",
    "on_train_epoch_start",
    "on_train_epoch_end",
]


def test_stop_iteration_in_the_training_step_ends_the_epoch(tmp_path: Path) -> None:
    events = record_fit(fulgor, tmp_path, "training_step")
    # Epoch 0 ends at step 2; epoch 1 starts at step 2 and its first step raises again.
    assert events[:2] == [("epoch_end", 0, 2), ("epoch_end", 1, 2)]
    assert events[-1][:3] == ("done", 2, 2)


@pytest.mark.parametrize("hook", ["on_train_epoch_start", "on_train_epoch_end"])
def test_stop_iteration_in_an_epoch_hook_ends_the_fit(hook: str, tmp_path: Path) -> None:
    events = record_fit(fulgor, tmp_path, hook)
    assert events[:-1] == [("epoch_end", 0, 4), ("train_end", 0 if hook == "on_train_epoch_end" else 1, 4)]
    assert events[-1][1] == 4  # epoch 1 never trains


def test_stop_iteration_in_a_validation_step_ends_only_the_validation(tmp_path: Path) -> None:
    events = record_fit(fulgor, tmp_path, "validation_step")
    assert events[:2] == [("epoch_end", 0, 4), ("epoch_end", 1, 8)]


def test_stop_iteration_at_validation_start_ends_the_epoch_and_training_goes_on(tmp_path: Path) -> None:
    events = record_fit(fulgor, tmp_path, "on_validation_start")
    assert events[:2] == [("epoch_end", 0, 2), ("epoch_end", 1, 6)]
    # fulgor puts the interrupted validation's stage and eval mode back (Lightning leaves them)
    assert events[-1][3] is False  # after fit: no stage runs


@pytest.mark.oracle
@pytest.mark.parametrize("where", WHERE)
def test_stop_iteration_in_fit_as_lightning(where: str, tmp_path: Path) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    assert record_fit(fulgor, tmp_path / "fulgor", where) == record_fit(pl, tmp_path / "pl", where)


def record_eval(lib: ModuleType, root: Path, fn: str) -> Any:
    """`validate` or `predict` over two loaders of 4 batches, whose step raises StopIteration on batch 1."""
    demos = _demos(lib)
    events: list[str] = []

    class Model(demos.BoringModel):  # type: ignore[misc,name-defined]
        def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
            if batch_idx == 1:
                raise StopIteration
            self.log("v", float(batch_idx + dataloader_idx))
            return super().validation_step(batch, batch_idx)

        def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
            if batch_idx == 1 and dataloader_idx == 0:
                raise StopIteration
            return batch_idx

        def on_validation_end(self) -> None:
            events.append("on_validation_end")

        def on_predict_end(self) -> None:
            events.append("on_predict_end")

    trainer = lib.Trainer(default_root_dir=root, logger=False, enable_progress_bar=False, enable_model_summary=False)
    loaders = [DataLoader(demos.RandomDataset(32, 4), batch_size=1) for _ in range(2)]
    model = Model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = (
            trainer.validate(model, loaders, verbose=False) if fn == "validate" else trainer.predict(model, loaders)
        )
    return result, events, model.training, str(trainer.state.status)


def test_stop_iteration_in_validate_ends_every_loader(tmp_path: Path) -> None:
    result, events, training, status = record_eval(fulgor, tmp_path, "validate")
    assert result == [{"v/dataloader_idx_0": 0.0}]  # the second loader never runs
    assert events == ["on_validation_end"]
    assert training
    assert status.endswith("FINISHED")


def test_stop_iteration_in_predict_ends_every_loader(tmp_path: Path) -> None:
    result, events, _, _ = record_eval(fulgor, tmp_path, "predict")
    assert result == [[0], []]
    assert events == ["on_predict_end"]


@pytest.mark.oracle
@pytest.mark.parametrize("fn", ["validate", "predict"])
def test_stop_iteration_in_evaluation_as_lightning(fn: str, tmp_path: Path) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    assert record_eval(fulgor, tmp_path / "fulgor", fn) == record_eval(pl, tmp_path / "pl", fn)
