"""`Precision.connect(model, optimizers, lr_schedulers)`: called once per stage after the model (and, in fit, the
optimizers) are set up, and what it returns is what the run uses. Differential against pytorch-lightning 2.6.6."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

import fulgor


def test_connect_sees_the_run_and_its_return_is_used(lib: ModuleType, tmp_path: Path) -> None:
    boring = import_module(f"{lib.__name__}.demos.boring_classes")
    plugins = import_module("fulgor.precision" if lib is fulgor else f"{lib.__name__}.plugins")
    calls: list[tuple[str, int, int]] = []

    class HalvedLR(plugins.Precision):  # type: ignore[misc,name-defined]
        def connect(self, model: Any, optimizers: list[Any], lr_schedulers: list[Any]) -> Any:
            calls.append((type(model).__name__, len(optimizers), len(lr_schedulers)))
            for optimizer in optimizers:
                for group in optimizer.param_groups:
                    group["lr"] /= 2  # visible in the run only if the run uses what connect returns
            return model, optimizers, lr_schedulers

    class Model(boring.BoringModel):  # type: ignore[misc,name-defined]
        def configure_optimizers(self) -> Any:
            optimizer = torch.optim.SGD(self.parameters(), lr=0.2)
            return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, step_size=10)]

        def on_train_start(self) -> None:
            self.lr_at_start = self.optimizers().param_groups[0]["lr"]

    model = Model()
    trainer = lib.Trainer(
        default_root_dir=tmp_path, plugins=[HalvedLR()], max_steps=1, limit_val_batches=1, logger=False,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
    )  # fmt: skip
    trainer.fit(model)
    trainer.validate(model, verbose=False)
    assert model.lr_at_start == pytest.approx(0.1)
    assert calls[0] == ("Model", 1, 1)  # fit: after configure_optimizers
    assert len(calls) == 2  # validate: once more (Lightning passes the fit's optimizers again; fulgor the run's: none)
    assert calls[1][0] == "Model"
