"""Lightning's `utilities.parsing.collect_init_args` and the assignable `trainer.datamodule` (oracle-compared)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

import fulgor
import fulgor.demos
from fulgor.hparams_parsing import collect_init_args
from fulgor.lightning_attrs import lightning_getattr


def _chain_result(collect: Callable[..., list[dict[str, Any]]], classes: tuple[type, ...] = ()) -> Any:
    class Parent:
        def __init__(self, anyarg: Any, anykw: int = 42, **kwargs: Any) -> None:
            super().__init__()
            self.result = self.collect()

        def collect(self) -> list[dict[str, Any]]:
            return collect(inspect.currentframe(), [], classes=classes)

    class Child(Parent):
        def __init__(self, anyarg: Any, childarg: Any, anykw: int = 42, childkw: int = 42, **kwargs: Any) -> None:
            super().__init__(anyarg, anykw=anykw, **kwargs)

    def helper_outside_the_chain() -> Any:
        return Child("a", "c", anykw=32, childkw=22, extra=1).result

    return helper_outside_the_chain()


def test_collect_init_args_lists_each_init_of_the_chain_innermost_first() -> None:
    result = _chain_result(collect_init_args)
    assert result == [
        {"anyarg": "a", "anykw": 32, "extra": 1},
        {"anyarg": "a", "childarg": "c", "anykw": 32, "childkw": 22, "extra": 1},
    ]
    assert _chain_result(collect_init_args, classes=(int,)) == []


@pytest.mark.oracle
def test_collect_init_args_matches_lightning() -> None:
    parsing = pytest.importorskip("pytorch_lightning.utilities.parsing")
    for classes in ((), (int,)):
        assert _chain_result(collect_init_args, classes) == _chain_result(parsing.collect_init_args, classes)


def test_trainer_datamodule_can_be_assigned_before_a_run() -> None:
    trainer = fulgor.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    assert trainer.datamodule is None
    datamodule = fulgor.LightningDataModule()
    datamodule.batch_size = 8  # type: ignore[attr-defined]
    trainer.datamodule = datamodule
    assert trainer.datamodule is datamodule
    module = fulgor.LightningModule()
    module.trainer = trainer
    assert lightning_getattr(module, "batch_size") == 8


class _UnpicklableArgs(fulgor.demos.BoringModel):
    def __init__(self, keep: int = 1, pickle_me: Any = (lambda x: x + 1)) -> None:
        super().__init__()
        self.save_hyperparameters()


def test_unpicklable_hparams_are_dropped_with_lightnings_warning_when_a_run_starts(tmp_path: Any) -> None:
    model = _UnpicklableArgs()
    assert set(model.hparams) == {"keep", "pickle_me"}
    trainer = fulgor.Trainer(default_root_dir=tmp_path, max_steps=1, logger=False, enable_progress_bar=False)
    with pytest.warns(UserWarning, match="Attribute 'pickle_me' removed from hparams because it cannot be pickled"):
        trainer.fit(model)
    assert dict(model.hparams) == {"keep": 1}
