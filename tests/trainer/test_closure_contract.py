"""Automatic optimization's closure contract: an `optimizer_step` override, or an optimizer, that never calls the
closure is an error naming the cause (Lightning's message), not a silent step without gradients."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

import fulgor
from helpers.boring import boring_classes


def _errors(pl: ModuleType, tmp_path: Path) -> list[tuple[str, str]]:
    boring = boring_classes(pl)

    class SkipsTheClosure(boring.BoringModel):  # type: ignore[misc,name-defined]
        def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
            pass  # does not call `optimizer_closure()`

    class BrokenSGD(torch.optim.SGD):
        def step(self, closure: Any = None) -> Any:  # type: ignore[override]
            return super().step()  # forgot to pass the closure on

    class IgnoringOptimizer(boring.BoringModel):  # type: ignore[misc,name-defined]
        def configure_optimizers(self) -> Any:
            return BrokenSGD(self.layer.parameters(), lr=0.1)

    errors = []
    for model in (SkipsTheClosure(), IgnoringOptimizer()):
        trainer = pl.Trainer(default_root_dir=tmp_path, fast_dev_run=1, logger=False, enable_progress_bar=False)
        with pytest.raises(Exception) as raised:
            trainer.fit(model)
        errors.append((type(raised.value).__name__, str(raised.value)))
    return errors


def test_a_closure_that_never_runs_is_an_error(tmp_path: Path) -> None:
    errors = _errors(fulgor, tmp_path)
    assert [kind for kind, _ in errors] == ["MisconfigurationException"] * 2
    assert all(message.startswith("The closure hasn't been executed. HINT:") for _, message in errors)


@pytest.mark.oracle
def test_the_error_is_lightnings(tmp_path: Path) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    assert _errors(fulgor, tmp_path / "f") == _errors(pl, tmp_path / "l")
