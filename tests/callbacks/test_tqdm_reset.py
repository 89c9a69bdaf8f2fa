"""`TQDMProgressBar` restarts its bars as Lightning does: `reset()` without arguments, then the new `total` set on
its own (a `Tqdm` subclass overriding `reset` or `total` sees the same calls); compared with pytorch-lightning 2.6.6."""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import pytest

import fulgor


def record_resets(lib: ModuleType, root: Path) -> dict[str, Any]:
    """Each bar's `reset` arguments and `total` assignments during a 1-epoch fit (2 train, 2 validation batches)."""
    path = "callbacks.tqdm_progress" if lib is fulgor else "callbacks.progress.tqdm_progress"
    module = importlib.import_module(f"{lib.__name__}.{path}")
    seen: dict[str, Any] = {}

    class Recording(module.Tqdm):  # type: ignore[misc,name-defined]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.resets: list[Any] = []
            self.totals: list[Any] = []
            super().__init__(*args, **kwargs)
            self.resets, self.totals = [], []  # only what the progress bar does after creating it
            seen.setdefault(kwargs.get("desc", ""), []).append(self)

        def reset(self, total: Any = None) -> None:
            self.resets.append(total)
            super().reset(total)

        def __setattr__(self, name: str, value: Any) -> None:
            if name == "total" and "totals" in self.__dict__:
                self.totals.append(value)
            super().__setattr__(name, value)

    trainer = lib.Trainer(
        default_root_dir=root, limit_train_batches=2, limit_val_batches=2, max_epochs=1, logger=False,
        enable_checkpointing=False, enable_model_summary=False, callbacks=lib.callbacks.TQDMProgressBar(),
    )  # fmt: skip
    model = importlib.import_module(f"{lib.__name__}.demos.boring_classes").BoringModel()
    with warnings.catch_warnings(), mock.patch.object(module, "Tqdm", Recording):
        warnings.simplefilter("ignore")
        trainer.fit(model)
    # (Lightning also creates a disabled placeholder training bar for the sanity check, never reset: left out)
    return {desc: [(bar.resets, bar.totals) for bar in bars] for desc, bars in seen.items() if desc}


def test_bars_reset_without_arguments_then_get_their_total(tmp_path: Path) -> None:
    bars = record_resets(fulgor, tmp_path)
    train_resets, train_totals = bars["Training"][0]
    assert train_resets == [None]
    assert 2 in train_totals
    sanity_resets, sanity_totals = bars["Sanity Checking"][0]
    assert sanity_resets == [None]
    assert sanity_totals[-1] == 2


@pytest.mark.oracle
def test_bar_resets_equal_lightnings(tmp_path: Path) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    assert record_resets(fulgor, tmp_path / "fulgor") == record_resets(pl, tmp_path / "pl")
