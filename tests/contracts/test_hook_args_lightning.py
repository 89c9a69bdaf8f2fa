"""Hook arguments as Lightning passes them: positional or keyword, which ones, how many calls. The same model,
datamodule, callback and logger run under pytorch-lightning 2.6.6 and under fulgor record every call raw (how many
positional arguments, which keywords, and simple values), and the records must be equal."""

from __future__ import annotations

import warnings
from enum import Enum
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader

import fulgor
from helpers.boring import RandomDataset

pl = pytest.importorskip("pytorch_lightning")

pytestmark = pytest.mark.oracle

LIBS = [pytest.param(fulgor, id="fulgor"), pytest.param(pl, id="lightning")]


def _simple(value: Any) -> Any:
    """A comparable stand-in for a hook argument: the value for scalars and strings, the keys of a dict, else the
    type's name (tensors, optimizers, the trainer...)."""
    if isinstance(value, Enum):
        value = value.value
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return sorted(value)
    return type(value).__name__


def _recorded(prefix: str, name: str, calls: list[Any], base: type) -> Any:
    def hook(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append((f"{prefix}.{name}", len(args), {k: _simple(v) for k, v in sorted(kwargs.items())}))
        return getattr(base, name)(self, *args, **kwargs)

    hook.__name__ = name
    return hook


def _with_recording(base: type, prefix: str, names: tuple[str, ...], calls: list[Any]) -> type:
    return type(f"Recorded{base.__name__}", (base,), {n: _recorded(prefix, n, calls, base) for n in names})


MODULE_HOOKS = ("setup", "teardown", "on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer")
DATAMODULE_HOOKS = ("setup", "teardown", "prepare_data", *MODULE_HOOKS[2:])
CALLBACK_HOOKS = ("setup", "teardown")


def _classes(lib: ModuleType, calls: list[Any]) -> tuple[type, type, type, type]:
    """(module, datamodule, callback, logger) classes recording their calls into `calls`."""

    class Model(lib.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(32, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layer(x)

        def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
            loss = self(batch).sum()
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
            self.log("val_loss", self(batch).sum())

        def test_step(self, batch: torch.Tensor, batch_idx: int) -> None:
            self.log("test_loss", self(batch).sum())

        def predict_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
            return self(batch)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    class Data(lib.LightningDataModule):
        def __init__(self) -> None:
            super().__init__()
            self.save_hyperparameters({"batch_size": 2})

        def _loader(self) -> DataLoader[Any]:
            return DataLoader(RandomDataset(32, 6), batch_size=2)

        train_dataloader = val_dataloader = test_dataloader = predict_dataloader = _loader

    class Recorder(lib.Callback):
        pass

    class Logger(lib.loggers.Logger):
        @property
        def name(self) -> str:
            return "rec"

        @property
        def version(self) -> int:
            return 0

        def log_hyperparams(self, *args: Any, **kwargs: Any) -> None:
            calls.append(("L.log_hyperparams", len(args), sorted(kwargs)))

        def log_metrics(self, *args: Any, **kwargs: Any) -> None:
            calls.append(("L.log_metrics", len(args), {k: _simple(v) for k, v in sorted(kwargs.items())}))

        def log_graph(self, *args: Any, **kwargs: Any) -> None:
            calls.append(("L.log_graph", len(args), sorted(kwargs)))

        def save(self) -> None:
            calls.append(("L.save", 0, {}))

        def finalize(self, *args: Any, **kwargs: Any) -> None:
            calls.append(("L.finalize", len(args), {k: _simple(v) for k, v in sorted(kwargs.items())}))

    return (
        _with_recording(Model, "M", MODULE_HOOKS, calls),
        _with_recording(Data, "DM", DATAMODULE_HOOKS, calls),
        _with_recording(Recorder, "C", CALLBACK_HOOKS, calls),
        Logger,
    )


def _trainer(lib: ModuleType, root: Path, **flags: Any) -> Any:
    settings: dict[str, Any] = {
        "default_root_dir": root / lib.__name__,
        "max_epochs": 2,
        "limit_train_batches": 2,
        "limit_val_batches": 2,
        "log_every_n_steps": 1,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
    }
    settings.update(flags)
    return lib.Trainer(**settings)


def _all_entry_points(lib: ModuleType, root: Path) -> list[Any]:
    torch.manual_seed(0)
    calls: list[Any] = []
    model_cls, data_cls, callback_cls, logger_cls = _classes(lib, calls)
    model, datamodule = model_cls(), data_cls()
    trainer = _trainer(lib, root, callbacks=[callback_cls()], logger=logger_cls())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for fn in ("fit", "validate", "test", "predict"):
            calls.append(("run", fn, {}))
            getattr(trainer, fn)(model, datamodule=datamodule)
    return calls


def test_hooks_and_logger_receive_lightnings_arguments(tmp_path: Path) -> None:
    """setup/teardown(stage=...) as keywords on the datamodule, callbacks and module; the batch-transfer hooks only
    on the datamodule that overrides them, once per batch; the logger's calls with Lightning's keywords."""
    ours = _all_entry_points(fulgor, tmp_path)
    theirs = _all_entry_points(pl, tmp_path)
    assert ours == theirs
    setup = [c for c in ours if c[0].endswith(".setup")]
    assert setup[:3] == [
        ("DM.setup", 0, {"stage": "fit"}),
        ("C.setup", 2, {"stage": "fit"}),
        ("M.setup", 0, {"stage": "fit"}),
    ]
    transfers = [c for c in ours if c[0] == "DM.transfer_batch_to_device"]
    # fit: 2 sanity + 2 x (2 train + 2 val); validate 2, test 3 (6 samples / 2), predict 3
    assert len(transfers) == 2 + 8 + 2 + 3 + 3
    assert not any(c[0].startswith("M.") and "batch" in c[0] for c in ours)  # the datamodule's hooks win
    assert ("L.log_metrics", 0, {"metrics": ["epoch", "train_loss"], "step": 0}) in ours


def _none_hook_run(lib: ModuleType, root: Path, hook: str, fn: str) -> tuple[Any, ...]:
    torch.manual_seed(0)
    model_cls = _classes(lib, [])[0]
    model = model_cls()
    model.train_dataloader = model.val_dataloader = model.test_dataloader = lambda: DataLoader(  # type: ignore
        RandomDataset(32, 4), batch_size=2
    )
    setattr(model, hook, None)
    trainer = _trainer(lib, root, logger=False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            getattr(trainer, fn)(model)
    except Exception as err:  # the error is part of what is compared
        return type(err).__name__, str(err)
    return trainer.global_step, trainer.num_val_batches, sorted(trainer.callback_metrics)


@pytest.mark.parametrize(("hook", "fn"), [("validation_step", "fit"), ("validation_step", "validate"),
                                          ("test_step", "test"), ("val_dataloader", "fit")])  # fmt: skip
def test_hook_set_to_none_on_the_instance_counts_as_not_overridden(tmp_path: Path, hook: str, fn: str) -> None:
    ours = _none_hook_run(fulgor, tmp_path, hook, fn)
    assert ours == _none_hook_run(pl, tmp_path, hook, fn)
    if fn == "fit":
        assert ours[0] == 4  # trained ...
        assert "val_loss" not in ours[2]  # ... never validated


def _dataloader_idx_run(lib: ModuleType, root: Path, n_loaders: int, fn: str) -> list[Any]:
    torch.manual_seed(0)
    calls: list[Any] = []
    model_cls = _classes(lib, calls)[0]

    class Model(model_cls):  # type: ignore[misc, valid-type]
        def _record(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            calls.append((name, len(args), sorted(kwargs)))

        def validation_step(self, batch: Any, *args: Any, **kwargs: Any) -> None:
            self._record("validation_step", args, kwargs)

        def predict_step(self, batch: Any, *args: Any, **kwargs: Any) -> Any:
            self._record("predict_step", args, kwargs)
            return batch

        def on_validation_batch_start(self, batch: Any, *args: Any, **kwargs: Any) -> None:
            self._record("on_validation_batch_start", args, kwargs)

        def on_predict_batch_end(self, outputs: Any, batch: Any, *args: Any, **kwargs: Any) -> None:
            self._record("on_predict_batch_end", args, kwargs)

    loaders = [DataLoader(RandomDataset(32, 4), batch_size=2) for _ in range(n_loaders)]
    trainer = _trainer(lib, root, logger=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        getattr(trainer, fn)(Model(), dataloaders=loaders if n_loaders > 1 else loaders[0])
    return calls


@pytest.mark.parametrize("fn", ["validate", "predict"])
@pytest.mark.parametrize("n_loaders", [1, 2])
def test_dataloader_idx_passed_only_where_lightning_passes_it(tmp_path: Path, fn: str, n_loaders: int) -> None:
    ours = _dataloader_idx_run(fulgor, tmp_path, n_loaders, fn)
    assert ours == _dataloader_idx_run(pl, tmp_path, n_loaders, fn)
    assert {c[1] for c in ours if c[0].endswith("_step")} == {n_loaders}  # (batch_idx[, dataloader_idx])


def _predict_without_idx(lib: ModuleType, root: Path, step: str) -> Any:
    class Model(lib.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(32, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layer(x)

    if step == "batch_idx":
        Model.predict_step = lambda self, batch, batch_idx: batch_idx  # type: ignore[attr-defined]
    elif step == "varargs":
        Model.predict_step = lambda self, batch, *args: len(args)  # type: ignore[attr-defined]
    loaders = [DataLoader(RandomDataset(32, 4), batch_size=2), DataLoader(RandomDataset(32, 2), batch_size=2)]
    trainer = _trainer(lib, root, logger=False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = trainer.predict(Model(), dataloaders=loaders)
    except RuntimeError as err:
        return str(err)
    return [[_simple(p) for p in per_loader] for per_loader in out]


@pytest.mark.parametrize("step", ["default", "batch_idx", "varargs"])
def test_predict_over_several_loaders_as_lightning(tmp_path: Path, step: str) -> None:
    ours = _predict_without_idx(fulgor, tmp_path, step)
    assert ours == _predict_without_idx(pl, tmp_path, step)
    if step == "varargs":
        assert ours == [[2, 2], [2]]
