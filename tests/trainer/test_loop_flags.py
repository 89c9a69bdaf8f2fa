"""Loop flags as Lightning treats them: an invalid `reload_dataloaders_every_n_epochs` of the wrong type raises
Lightning's `MisconfigurationException` (also a `TypeError`, as fulgor's other type checks), and a stop requested
before `min_epochs`/`min_steps` is met runs validation only where Lightning's does; compared with
pytorch-lightning 2.6.6."""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import fulgor
from fulgor.errors import MisconfigurationException


@pytest.mark.parametrize("value", ["test", 1.5, None])
def test_reload_interval_of_another_type_is_a_misconfiguration(value: Any, tmp_path: Path) -> None:
    with pytest.raises(MisconfigurationException, match="should be an int >= 0, got ") as error:
        fulgor.Trainer(default_root_dir=tmp_path, reload_dataloaders_every_n_epochs=value)
    assert isinstance(error.value, TypeError)
    assert f"`Trainer(reload_dataloaders_every_n_epochs={value!r})` is invalid" in str(error.value)


@pytest.mark.oracle
@pytest.mark.parametrize("value", ["test", 1.5, None, -1])
def test_reload_interval_errors_start_with_lightnings(value: Any, tmp_path: Path) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    errors = []
    for lib in (fulgor, pl):
        with pytest.raises(Exception) as error:
            lib.Trainer(default_root_dir=tmp_path, reload_dataloaders_every_n_epochs=value)
        errors.append((type(error.value).__name__, str(error.value)))
    assert errors[1][0] == "MisconfigurationException"
    assert errors[0][0] in ("MisconfigurationException", "ConfigurationTypeError")
    assert errors[0][1].startswith(errors[1][1])


def count_validations(lib: ModuleType, root: Path, min_epochs: int | None, min_steps: int | None) -> list[int]:
    """Validations run when EarlyStopping asks to stop at every training epoch end (threshold met at once)."""
    demos = importlib.import_module(f"{lib.__name__}.demos.boring_classes")
    starts: list[int] = []

    class Model(demos.BoringModel):  # type: ignore[misc,name-defined]
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            self.log("loss", self.step(batch))
            return {"loss": self.step(batch)}

        def on_validation_start(self) -> None:
            starts.append(self.global_step)

    stopping = lib.callbacks.EarlyStopping(monitor="loss", check_on_train_epoch_end=True, stopping_threshold=100)
    trainer = lib.Trainer(
        default_root_dir=root, num_sanity_val_steps=0, limit_val_batches=2, limit_train_batches=2, max_epochs=3,
        min_epochs=min_epochs, min_steps=min_steps, enable_model_summary=False, enable_checkpointing=False,
        enable_progress_bar=False, logger=False, callbacks=[stopping],
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(Model())
    return [*starts, trainer.global_step]


@pytest.mark.parametrize(("min_epochs", "min_steps", "expected"), [(3, None, [2, 4, 6, 6]), (None, 3, [2, 3, 3])])
def test_stop_before_the_minimum_validates_once_per_epoch(
    min_epochs: int | None, min_steps: int | None, expected: list[int], tmp_path: Path
) -> None:
    assert count_validations(fulgor, tmp_path, min_epochs, min_steps) == expected


@pytest.mark.oracle
@pytest.mark.parametrize(("min_epochs", "min_steps"), [(3, None), (None, 3), (2, 5)])
def test_validations_before_the_minimum_equal_lightnings(
    min_epochs: int | None, min_steps: int | None, tmp_path: Path
) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    ours = count_validations(fulgor, tmp_path / "fulgor", min_epochs, min_steps)
    assert ours == count_validations(pl, tmp_path / "pl", min_epochs, min_steps)
