"""Warnings and errors are API: for each situation below, fulgor and the real Lightning 2.6.6 (the oracle) run the
same script, and the warnings it emits (category name, base category, text) and the exceptions it raises (type,
text) must be the same. Where fulgor adds help after Lightning's text, Lightning's text must be its start."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader

import fulgor
import fulgor.demos.boring_classes
import fulgor.optimizer

pl = pytest.importorskip("pytorch_lightning")
pl_demos = pytest.importorskip("pytorch_lightning.demos.boring_classes")
pytestmark = pytest.mark.oracle

Scenario = Callable[[ModuleType, Path], None]


def demos(lib: ModuleType) -> Any:
    return fulgor.demos.boring_classes if lib is fulgor else pl_demos


def quiet_trainer(lib: ModuleType, tmp: Path, **flags: Any) -> Any:
    base = {
        "default_root_dir": str(tmp),
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
    }
    return lib.Trainer(**{**base, **flags})


def loader(lib: ModuleType, n: int = 64) -> DataLoader[Any]:
    return DataLoader(demos(lib).RandomDataset(32, n), batch_size=2)


def record(lib: ModuleType, scenario: Scenario, tmp: Path, key: str) -> list[tuple[str, ...]]:
    """Warnings whose text contains `key` as (category, base category, text), then the exception, if any."""
    seen: list[tuple[str, ...]] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            scenario(lib, tmp)
        except Exception as error:  # the exception is part of what is compared
            seen.append(("raised", type(error).__name__, str(error)))
    for w in caught:
        if key in str(w.message):
            base = next(c for c in w.category.__mro__ if c.__module__ == "builtins").__name__
            seen.insert(0, (w.category.__name__, base, str(w.message)))
    return seen


def same_as_lightning(scenario: Scenario, tmp_path: Path, key: str) -> list[tuple[str, ...]]:
    theirs = record(pl, scenario, tmp_path / "pl", key)
    ours = record(fulgor, scenario, tmp_path / "fulgor", key)
    assert theirs, "the scenario must make Lightning warn or raise"
    assert ours == theirs
    return ours


# -------------------------------------------------------------------- scenarios
def few_workers(lib: ModuleType, tmp: Path) -> None:
    trainer = quiet_trainer(lib, tmp, max_steps=1, limit_val_batches=1, num_sanity_val_steps=0)
    model = demos(lib).BoringModel()
    trainer.fit(model, loader(lib), loader(lib))
    trainer.test(model, loader(lib))
    trainer.predict(model, loader(lib))


def optimizer_dict_extra_keys(lib: ModuleType, tmp: Path) -> None:
    class Model(demos(lib).BoringModel):  # type: ignore[misc]
        def configure_optimizers(self) -> Any:
            opt = torch.optim.SGD(self.parameters(), lr=0.1)
            return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, 1), "foo": 1}

    quiet_trainer(lib, tmp, max_steps=1, limit_val_batches=0).fit(Model(), loader(lib))


def one_cycle_epoch_interval(lib: ModuleType, tmp: Path) -> None:
    class Model(demos(lib).BoringModel):  # type: ignore[misc]
        def configure_optimizers(self) -> Any:
            opt = torch.optim.SGD(self.parameters(), lr=0.1)
            scheduler = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10)
            return [opt], [{"scheduler": scheduler}]  # a dict: "interval" defaults to "epoch"

    quiet_trainer(lib, tmp, max_steps=1, limit_val_batches=0).fit(Model(), loader(lib))


def dict_without_optimizer(lib: ModuleType, tmp: Path) -> None:
    class Model(demos(lib).BoringModel):  # type: ignore[misc]
        def configure_optimizers(self) -> Any:
            opt = torch.optim.SGD(self.parameters(), lr=0.1)
            return {"lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, 1)}

    quiet_trainer(lib, tmp, max_steps=1, limit_val_batches=0).fit(Model(), loader(lib))


def predict_returns_none(lib: ModuleType, tmp: Path) -> None:
    class Model(demos(lib).BoringModel):  # type: ignore[misc]
        def predict_step(self, batch: Any, batch_idx: int) -> None:
            return None

    quiet_trainer(lib, tmp).predict(Model(), loader(lib, 8))


def ckpt_last_without_last(lib: ModuleType, tmp: Path) -> None:
    quiet_trainer(lib, tmp, max_steps=1, limit_val_batches=0).fit(
        demos(lib).BoringModel(), loader(lib), ckpt_path="last"
    )


def configure_sharded_model(lib: ModuleType, tmp: Path) -> None:
    class MyModel(demos(lib).BoringModel):  # type: ignore[misc]
        def configure_sharded_model(self) -> None: ...

    quiet_trainer(lib, tmp, max_steps=1, limit_val_batches=0).fit(MyModel(), loader(lib))


def configure_sharded_and_configure_model(lib: ModuleType, tmp: Path) -> None:
    class Both(demos(lib).BoringModel):  # type: ignore[misc]
        def configure_sharded_model(self) -> None: ...

        def configure_model(self) -> None: ...

    quiet_trainer(lib, tmp, max_steps=1, limit_val_batches=0).fit(Both(), loader(lib))


def two_checkpoint_callbacks(lib: ModuleType, tmp: Path) -> None:
    checkpoint = lib.callbacks.ModelCheckpoint
    lib.Trainer(callbacks=[checkpoint(dirpath=tmp), checkpoint(dirpath=tmp)], logger=False)


def finetuning_params_already_in_optimizer(lib: ModuleType, tmp: Path) -> None:
    layer = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    kept = lib.callbacks.BaseFinetuning.filter_on_optimizer(optimizer, layer.parameters())
    assert kept == []


def log_value(value: Any, reduce_fx: Any = "mean") -> Scenario:
    def scenario(lib: ModuleType, tmp: Path) -> None:
        class Model(demos(lib).BoringModel):  # type: ignore[misc]
            def training_step(self, batch: Any, batch_idx: int) -> Any:
                out = super().training_step(batch, batch_idx)
                self.log("x", value, reduce_fx=reduce_fx)
                return out

        quiet_trainer(lib, tmp, max_steps=1, limit_val_batches=0).fit(Model(), loader(lib))

    return scenario


CASES = {
    "few_workers": (few_workers, "does not have many workers"),
    "optimizer_dict_extra_keys": (optimizer_dict_extra_keys, "unsupported keys"),
    "one_cycle_epoch_interval": (one_cycle_epoch_interval, "OneCycleLR"),
    "predict_returns_none": (predict_returns_none, "predict returned None"),
    "ckpt_last_without_last": (ckpt_last_without_last, 'ckpt_path="last"'),
    "configure_sharded_model": (configure_sharded_model, "configure_sharded_model"),
    "configure_sharded_and_configure_model": (configure_sharded_and_configure_model, "configure_sharded_model"),
    "two_checkpoint_callbacks": (two_checkpoint_callbacks, "stateful callback"),
    "finetuning_params_already_in_optimizer": (finetuning_params_already_in_optimizer, "Did you init your optimizer"),
    "log_list": (log_value([1.0, 2.0]), "cannot be logged"),
    "log_tuple": (log_value((1.0,)), "cannot be logged"),
    "log_dict": (log_value({"a": 1.0}), "cannot be logged"),
    "log_nested_dict": (log_value({"a": {"b": 1.0}}), "cannot be logged"),
    "log_custom_reduce": (log_value(1.0, reduce_fx=torch.amax), "reduce_fx"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_warnings_and_errors_as_lightning(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Eight cores, so the worker warning's bound (cores - 1) is the same on every machine the suite runs on.
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    scenario, key = CASES[case]
    same_as_lightning(scenario, tmp_path, key)


def test_dict_without_optimizer_is_a_key_error_with_lightnings_text_first(tmp_path: Path) -> None:
    (theirs,) = record(pl, dict_without_optimizer, tmp_path / "pl", "optimizer")
    (ours,) = record(fulgor, dict_without_optimizer, tmp_path / "fulgor", "optimizer")
    assert theirs == ("raised", "KeyError", "'optimizer'")
    assert ours[:2] == ("raised", "MissingOptimizerKeyError")
    assert ours[2].startswith(theirs[2])
    assert issubclass(fulgor.optimizer.MissingOptimizerKeyError, KeyError)


@pytest.mark.parametrize("reduce_fx", [max, min, sum, "max", torch.max, "avg"])
def test_reduce_fx_callables_lightning_accepts(reduce_fx: Any, tmp_path: Path) -> None:
    def scenario(lib: ModuleType) -> float:
        class Model(demos(lib).BoringModel):  # type: ignore[misc]
            def training_step(self, batch: Any, batch_idx: int) -> Any:
                out = super().training_step(batch, batch_idx)
                self.log("x", float(batch_idx * 2 + 1), reduce_fx=reduce_fx, on_step=False, on_epoch=True)
                return out

        trainer = quiet_trainer(lib, tmp_path, max_epochs=1, limit_train_batches=4, limit_val_batches=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.fit(Model(), loader(lib))
        return float(trainer.callback_metrics["x"])

    assert scenario(fulgor) == scenario(pl)
    assert scenario(fulgor) in (1.0, 7.0, 16.0, 4.0)
