"""Run semantics as pytorch-lightning 2.6.6 has them, each scenario run under both libraries and compared: Ctrl+C
inside fit, dataloader reloading, the batch counts kept after a run, sampler epochs in evaluation, `~` in
default_root_dir, Timer resume, the min_epochs message, a Dataset in place of a DataLoader, worker shutdown,
TorchScript export."""

from __future__ import annotations

import logging
import multiprocessing
import signal
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, SequentialSampler

import fulgor

pl = pytest.importorskip("pytorch_lightning")

pytestmark = pytest.mark.oracle

LIBS = [pytest.param(fulgor, id="fulgor"), pytest.param(pl, id="lightning")]


class Points(Dataset[torch.Tensor]):
    def __init__(self, n: int = 8) -> None:
        self.data = torch.randn(n, 32, generator=torch.Generator().manual_seed(0))

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.data[index]

    def __len__(self) -> int:
        return len(self.data)


def _model_class(lib: ModuleType) -> Any:
    class Model(lib.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(32, 2)

        def forward(self, x: torch.Tensor) -> Any:
            return self.layer(x)

        def training_step(self, batch: torch.Tensor, batch_idx: int) -> Any:
            return self(batch).sum()

        def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
            self.log("val_loss", self(batch).sum())

        def test_step(self, batch: torch.Tensor, batch_idx: int) -> None:
            self.log("test_loss", self(batch).sum())

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

        def _loader(self) -> DataLoader[Any]:
            return DataLoader(Points(), batch_size=2)

        train_dataloader = val_dataloader = test_dataloader = predict_dataloader = _loader

    return Model


def _trainer(lib: ModuleType, root: Path, **flags: Any) -> Any:
    settings: dict[str, Any] = {
        "default_root_dir": root / lib.__name__,
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
    }
    settings.update(flags)
    return lib.Trainer(**settings)


def _quiet(fn: Any, *args: Any, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# ------------------------------------------------------------------------------------------------ Ctrl+C
def _interrupted_fit(lib: ModuleType, root: Path) -> list[Any]:
    events: list[Any] = []

    class Interrupt(lib.Callback):
        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            if batch_idx == 1:
                raise KeyboardInterrupt

        def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
            events.append(("on_exception", type(exception).__name__, trainer.state.status.value))

        def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
            events.append(("teardown", stage))

    class Logger(lib.loggers.CSVLogger):
        def finalize(self, status: str) -> None:
            events.append(("finalize", status))
            super().finalize(status)

    trainer = _trainer(lib, root, max_epochs=1, callbacks=[Interrupt()], logger=Logger(root / lib.__name__))
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(SystemExit) as exit_info:
        _quiet(trainer.fit, _model_class(lib)())
    events.append(("exit", exit_info.value.code, type(exit_info.value.__context__).__name__))
    events.append(("after", trainer.state.status.value, str(trainer.state.stage.value), trainer.interrupted))
    events.append(("sigint restored", signal.getsignal(signal.SIGINT) is handler))
    return events


def test_keyboard_interrupt_in_fit_shuts_down_and_exits_as_lightning(tmp_path: Path) -> None:
    ours = _interrupted_fit(fulgor, tmp_path)
    assert ours == _interrupted_fit(pl, tmp_path)
    assert ours[0] == ("on_exception", "KeyboardInterrupt", "interrupted")
    assert ("exit", 1, "KeyboardInterrupt") in ours


# ------------------------------------------------------------------------------------------------ reloading
def _reload_epochs(lib: ModuleType, root: Path, sanity: int, every_val: int, reload: int) -> tuple[list[int], ...]:
    train, val, steps = [], [], []

    class Model(_model_class(lib)):  # type: ignore[misc]
        def train_dataloader(self) -> DataLoader[Any]:
            train.append(self.current_epoch)
            return super().train_dataloader()

        def val_dataloader(self) -> DataLoader[Any]:
            val.append((self.current_epoch, self.trainer.sanity_checking))
            return super().val_dataloader()

        def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
            if not self.trainer.sanity_checking:
                steps.append(self.current_epoch)

    flags = {"num_sanity_val_steps": sanity, "check_val_every_n_epoch": every_val}
    trainer = _trainer(lib, root, max_epochs=7, limit_train_batches=1, limit_val_batches=1, **flags,
                       reload_dataloaders_every_n_epochs=reload)  # fmt: skip
    _quiet(trainer.fit, Model())
    return train, val, steps


@pytest.mark.parametrize(("sanity", "every_val", "reload"), [(0, 1, 1), (1, 1, 2), (0, 3, 4), (1, 3, 4), (0, 2, 1),
                                                             (1, 2, 2), (1, 1, 0), (0, 5, 2)])  # fmt: skip
def test_validation_loaders_reload_in_lightnings_epochs(
    tmp_path: Path, sanity: int, every_val: int, reload: int
) -> None:
    ours = _reload_epochs(fulgor, tmp_path, sanity, every_val, reload)
    assert ours == _reload_epochs(pl, tmp_path, sanity, every_val, reload)


@pytest.mark.parametrize("value", [-1, -5])  # (a value of another type: fulgor's TypeError, trainer/input_checks.py)
def test_invalid_reload_interval_is_refused_as_lightning(tmp_path: Path, value: Any) -> None:
    errors = []
    for lib in (fulgor, pl):
        # By name: in a long test process the oracle's exception class may have been imported twice.
        with pytest.raises(Exception) as error:
            lib.Trainer(default_root_dir=tmp_path, reload_dataloaders_every_n_epochs=value)
        errors.append((type(error.value).__name__, str(error.value)))
    assert errors[0][0] == errors[1][0] == "MisconfigurationException"
    assert errors[0][1].startswith(errors[1][1])  # Lightning's sentence first, then fulgor's help


# ------------------------------------------------------------------------------------------------ batch counts
def _counts(lib: ModuleType, root: Path) -> list[Any]:
    trainer = _trainer(lib, root, max_epochs=1, limit_train_batches=3, limit_val_batches=2, num_sanity_val_steps=1,
                       limit_test_batches=2, limit_predict_batches=1)  # fmt: skip
    model = _model_class(lib)()
    seen = []
    for fn in ("fit", "test", "validate", "predict"):
        _quiet(getattr(trainer, fn), model)
        seen.append((fn, trainer.num_training_batches, trainer.num_val_batches, trainer.num_sanity_val_batches,
                     trainer.num_test_batches, trainer.num_predict_batches))  # fmt: skip
    return seen


def test_batch_counts_keep_their_values_after_each_run(tmp_path: Path) -> None:
    ours = _counts(fulgor, tmp_path)
    assert ours == _counts(pl, tmp_path)
    assert ours[-1] == ("predict", 3, [2], [1], [2], [1])


# ------------------------------------------------------------------------------------------------ samplers
def _sampler_epochs(lib: ModuleType, root: Path) -> list[Any]:
    calls: list[Any] = []

    class Sampler(SequentialSampler):  # type: ignore[type-arg]
        def set_epoch(self, epoch: int) -> None:
            calls.append(epoch)

    class Model(_model_class(lib)):  # type: ignore[misc]
        def val_dataloader(self) -> DataLoader[Any]:
            data = Points(4)
            return DataLoader(data, sampler=Sampler(data), batch_size=2)

        test_dataloader = predict_dataloader = val_dataloader

    trainer = _trainer(lib, root, max_epochs=2, limit_train_batches=1, use_distributed_sampler=False)
    model = Model()
    for fn in ("fit", "test", "predict", "validate"):
        calls.append(fn)
        _quiet(getattr(trainer, fn), model)
    return calls


def test_evaluation_samplers_get_the_training_epoch(tmp_path: Path) -> None:
    ours = _sampler_epochs(fulgor, tmp_path)
    assert ours == _sampler_epochs(pl, tmp_path)
    assert ours == ["fit", 0, 0, 1, "test", 2, "predict", 2, "validate", 2]


# ------------------------------------------------------------------------------------------------ paths, Timer
def test_tilde_in_default_root_dir_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    seen = [
        (t.default_root_dir, t.log_dir) for t in (lib.Trainer(default_root_dir="~/runs/../x") for lib in (fulgor, pl))
    ]
    assert seen[0] == seen[1] == (str(tmp_path / "x"), str(tmp_path / "x" / "lightning_logs" / "version_0"))


def _timer_resume(lib: ModuleType, root: Path, spent: float) -> tuple[Any, ...]:
    model_cls = _model_class(lib)
    timer = lib.callbacks.Timer(duration={"seconds": 100})
    trainer = _trainer(lib, root, max_epochs=1, limit_train_batches=2, limit_val_batches=0, callbacks=[timer])
    _quiet(trainer.fit, model_cls())
    keys = sorted(timer.state_dict()["time_elapsed"])
    path = root / f"{lib.__name__}.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=False)
    checkpoint["callbacks"]["Timer"]["time_elapsed"]["train"] = spent
    torch.save(checkpoint, path)
    resumed = lib.callbacks.Timer(duration={"seconds": 100})
    trainer = _trainer(lib, root, max_epochs=3, limit_train_batches=2, limit_val_batches=0, callbacks=[resumed])
    _quiet(trainer.fit, model_cls(), ckpt_path=path)
    return keys, trainer.global_step, round(resumed.time_elapsed()) >= round(spent)


@pytest.mark.parametrize("spent", [500.0, 10.0])
def test_timer_resumes_with_the_time_already_spent(tmp_path: Path, spent: float) -> None:
    ours = _timer_resume(fulgor, tmp_path, spent)
    assert ours == _timer_resume(pl, tmp_path, spent)
    assert ours[1] == (2 if spent > 100 else 6)  # spent: stops before training; else trains to max_epochs


# ------------------------------------------------------------------------------------------------ min_epochs
def _stop_messages(lib: ModuleType, root: Path, **flags: Any) -> tuple[int, int, int]:
    class Model(_model_class(lib)):  # type: ignore[misc]
        def training_step(self, batch: torch.Tensor, batch_idx: int) -> Any:
            self.trainer.should_stop = True
            return super().training_step(batch, batch_idx)

    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger().addHandler(handler)
    levels = {name: logging.getLogger(name).level for name in ("fulgor", "pytorch_lightning", "lightning.pytorch")}
    for name in levels:
        logging.getLogger(name).setLevel(logging.INFO)
    try:
        trainer = _trainer(lib, root, max_epochs=4, limit_train_batches=2, limit_val_batches=0, **flags)
        _quiet(trainer.fit, Model())
    finally:
        logging.getLogger().removeHandler(handler)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    return sum("has not been met" in r for r in records), trainer.current_epoch, trainer.global_step


@pytest.mark.parametrize("flags", [{"min_epochs": 2}, {"min_steps": 3}])
def test_min_epochs_message_once_per_trainer(tmp_path: Path, flags: dict[str, int]) -> None:
    ours = _stop_messages(fulgor, tmp_path, **flags)
    assert ours == _stop_messages(pl, tmp_path, **flags)
    assert ours[0] == 1


# ------------------------------------------------------------------------------------------------ data
def _dataset_in_place_of_loader(lib: ModuleType, root: Path) -> list[Any]:
    seen: list[Any] = []
    trainer = _trainer(lib, root, max_steps=3)
    _quiet(trainer.fit, _model_class(lib)(), train_dataloaders=Points(4))
    seen.append(trainer.global_step)
    predictions = _quiet(trainer.predict, _model_class(lib)(), dataloaders=Points(3))
    seen.append([tuple(p.shape) for p in predictions])
    for value in (3, object()):
        with pytest.raises(TypeError) as error:
            _quiet(trainer.validate, _model_class(lib)(), dataloaders=value)
        seen.append(str(error.value).split(". Found")[0])
    return seen


def test_dataset_in_place_of_a_dataloader_as_lightning(tmp_path: Path) -> None:
    ours = _dataset_in_place_of_loader(fulgor, tmp_path)
    assert ours == _dataset_in_place_of_loader(pl, tmp_path)
    assert ours[:2] == [3, [(2,), (2,), (2,)]]  # read item by item


class Sized(IterableDataset[torch.Tensor]):
    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(Points(4))

    def __len__(self) -> int:
        return 4


@pytest.mark.parametrize("lib", LIBS)
def test_iterable_dataset_with_len_warns(tmp_path: Path, lib: ModuleType) -> None:
    trainer = _trainer(lib, tmp_path, max_steps=2)
    with pytest.warns(UserWarning, match="Your `IterableDataset` has `__len__` defined."):
        trainer.validate(_model_class(lib)(), dataloaders=DataLoader(Sized(), batch_size=2))


def _workers_after(lib: ModuleType, root: Path) -> list[Any]:
    class Model(_model_class(lib)):  # type: ignore[misc]
        def _loader(self) -> DataLoader[Any]:
            return self.loaders[0]

        train_dataloader = val_dataloader = _loader

    model = Model()
    model.loaders = [DataLoader(Points(8), batch_size=2, num_workers=1, persistent_workers=True)]
    trainer = _trainer(lib, root, max_epochs=2, limit_val_batches=2)
    _quiet(trainer.fit, model)
    seen = [model.loaders[0]._iterator, len(multiprocessing.active_children())]
    _quiet(trainer.validate, model)
    return [*seen, model.loaders[0]._iterator, len(multiprocessing.active_children())]


def test_loader_workers_shut_down_after_each_run(tmp_path: Path) -> None:
    ours = _workers_after(fulgor, tmp_path)
    assert ours == _workers_after(pl, tmp_path) == [None, 0, None, 0]


# ------------------------------------------------------------------------------------------------ TorchScript
@pytest.mark.parametrize("method", ["script", "trace"])
def test_to_torchscript_as_lightning(tmp_path: Path, method: str) -> None:
    outputs = []
    for lib in (fulgor, pl):
        torch.manual_seed(0)
        model = _model_class(lib)()
        model.example_input_array = torch.ones(2, 32)
        with pytest.warns(DeprecationWarning, match="has been deprecated in v2.7 and will be removed in v2.8"):
            script = model.to_torchscript(file_path=tmp_path / f"{lib.__name__}.pt", method=method)
        assert model.training  # the mode is restored
        loaded = torch.jit.load(tmp_path / f"{lib.__name__}.pt")
        outputs.append((type(script).__name__, loaded(torch.ones(2, 32)), not model._jit_is_scripting))
    assert outputs[0][0] == outputs[1][0]
    assert torch.equal(outputs[0][1], outputs[1][1])
    assert outputs[0][2]
    assert outputs[1][2]


def _iterable_run(lib: ModuleType, root: Path, flags: dict[str, Any]) -> list[Any]:
    events: list[Any] = []

    class Stream(IterableDataset[torch.Tensor]):  # no `__len__`: the loop finds the epoch's end by exhausting it
        def __init__(self, n: int) -> None:
            self.n = n

        def __iter__(self) -> Iterator[torch.Tensor]:
            return iter(Points(self.n))

    class Model(_model_class(lib)):  # type: ignore[misc]
        def train_dataloader(self) -> DataLoader[Any]:
            return DataLoader(Stream(7), batch_size=2)

        def val_dataloader(self) -> DataLoader[Any]:
            return DataLoader(Stream(3), batch_size=2)

        def training_step(self, batch: torch.Tensor, batch_idx: int) -> Any:
            loss = super().training_step(batch, batch_idx)
            self.log("loss", loss)
            return loss

        def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
            events.append(("batch_end", self.current_epoch, batch_idx, self.global_step))

        def on_validation_start(self) -> None:
            events.append(("validation", self.current_epoch, self.global_step))

    class Logger(lib.loggers.CSVLogger):
        def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
            events.append(("log", step, sorted(metrics)))

    trainer = _trainer(lib, root, max_epochs=2, log_every_n_steps=2, num_sanity_val_steps=0,
                       logger=Logger(root / lib.__name__), **flags)  # fmt: skip
    _quiet(trainer.fit, Model())
    return [*events, ("end", trainer.global_step, trainer.num_training_batches, trainer.num_val_batches)]


@pytest.mark.parametrize(
    "flags", [{"val_check_interval": 2, "check_val_every_n_epoch": None}, {"limit_train_batches": 3}, {}]
)
def test_iterable_dataset_batch_indices_and_steps_as_lightning(tmp_path: Path, flags: dict[str, Any]) -> None:
    ours = _iterable_run(fulgor, tmp_path, flags)
    assert ours == _iterable_run(pl, tmp_path, flags)
    if not flags:  # 7 samples in batches of 2: 4 batches an epoch, the last one found by exhausting the stream
        assert ("batch_end", 1, 3, 8) in ours


class _StreamWithLen(IterableDataset[torch.Tensor]):
    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(Points(4))

    def __len__(self) -> int:
        return 4


class _Stream(IterableDataset[torch.Tensor]):
    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(Points(4))


def _written_indices(lib: ModuleType, root: Path, dataset: Any) -> list[Any]:
    seen: list[Any] = []

    class Writer(lib.callbacks.BasePredictionWriter):
        def write_on_batch_end(
            self, trainer: Any, module: Any, prediction: Any, batch_indices: Any, *args: Any
        ) -> None:
            seen.append(("batch", batch_indices, *args[1:]))

        def write_on_epoch_end(self, trainer: Any, module: Any, predictions: Any, batch_indices: Any) -> None:
            seen.append(("epoch", batch_indices, len(predictions)))

    trainer = _trainer(lib, root, callbacks=[Writer("batch_and_epoch")])
    _quiet(trainer.predict, _model_class(lib)(), dataloaders=DataLoader(dataset, batch_size=2))
    return seen


@pytest.mark.parametrize("dataset", [Points(4), _StreamWithLen(), _Stream()], ids=["map", "iterable+len", "iterable"])
def test_prediction_writer_batch_indices_as_lightning(tmp_path: Path, dataset: Any) -> None:
    ours = _written_indices(fulgor, tmp_path, dataset)
    assert ours == _written_indices(pl, tmp_path, dataset)
    assert ours[0][1] == ([0, 1] if isinstance(dataset, Points) else [])  # an iterable dataset has no indices
