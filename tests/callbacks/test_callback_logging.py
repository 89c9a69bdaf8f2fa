"""Callbacks log with `pl_module.log(...)` inside their hooks (Lightning has no `Callback.log`): the values land in the
same store as the module's, under each hook's `self.log` rules and errors; compared with pytorch-lightning 2.6.6."""

from __future__ import annotations

import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

import fulgor
from helpers.boring import boring_classes


def _fit(lib: ModuleType, root: Path) -> tuple[dict[str, float], list[str], dict[str, float], list[str]]:
    class Logging(lib.Callback):  # type: ignore[misc,name-defined]
        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            pl_module.log("cb_batch", float(batch_idx), prog_bar=True)
            pl_module.log_dict({"cb_both": torch.tensor(2.0 * batch_idx)}, on_step=True, on_epoch=True)

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            pl_module.log("cb_epoch", float(trainer.current_epoch))

        def on_validation_batch_end(self, trainer: Any, pl_module: Any, *args: Any) -> None:
            pl_module.log("cb_val", 1.5)

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            pl_module.log("cb_start", 3.0)

    trainer = lib.Trainer(
        max_epochs=2, limit_train_batches=3, limit_val_batches=2, log_every_n_steps=1, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, default_root_dir=root, callbacks=[Logging()],
        logger=lib.loggers.CSVLogger(root),
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(boring_classes(lib).BoringModel())
    metrics_csv = next(root.rglob("metrics.csv")).read_text().splitlines()
    return (
        {k: float(v) for k, v in trainer.callback_metrics.items()},
        sorted(trainer.logged_metrics),
        dict(trainer.progress_bar_metrics),
        metrics_csv,
    )


def test_callback_values_reach_every_metric_dict(tmp_path: Path) -> None:
    callback, logged, pbar, csv_rows = _fit(fulgor, tmp_path)
    assert callback["cb_batch"] == 2.0
    assert callback["cb_epoch"] == 1.0
    assert callback["cb_val"] == 1.5
    assert callback["cb_both_epoch"] == pytest.approx(2.0)
    assert callback["cb_start"] == 3.0
    assert "cb_both_step" in logged
    assert "cb_both_epoch" in logged
    assert pbar == {"cb_batch": 2.0}
    header = csv_rows[0].split(",")
    assert {"cb_batch", "cb_both_step", "cb_both_epoch", "cb_epoch", "cb_val", "cb_start"} <= set(header)


@pytest.mark.oracle
def test_callback_logging_matches_lightning(tmp_path: Path) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    ours, theirs = _fit(fulgor, tmp_path / "f"), _fit(pl, tmp_path / "l")
    assert ours[:3] == theirs[:3]
    assert ours[3][0].split(",") == theirs[3][0].split(",")  # the CSV header: the same columns
    assert len(ours[3]) == len(theirs[3])


def _error(lib: ModuleType, hook: str) -> str:
    class Bad(lib.Callback):  # type: ignore[misc,name-defined]
        pass

    def log_here(self: Any, trainer: Any, pl_module: Any, *args: Any) -> None:
        pl_module.log("x", 1.0)

    setattr(Bad, hook, log_here)
    trainer = lib.Trainer(
        max_epochs=1, limit_train_batches=1, limit_val_batches=1, enable_progress_bar=False, logger=False,
        enable_checkpointing=False, enable_model_summary=False, callbacks=[Bad()],
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(Exception) as raised:
            trainer.fit(boring_classes(lib).BoringModel())
    return str(raised.value)


@pytest.mark.parametrize("hook", ["on_fit_start", "on_sanity_check_start", "on_train_end"])
def test_logging_in_a_hook_that_forbids_it(hook: str) -> None:
    assert f"You can't `self.log()` inside `{hook}`" in _error(fulgor, hook)


@pytest.mark.oracle
@pytest.mark.parametrize("hook", ["on_fit_start", "on_sanity_check_start", "on_train_end"])
def test_logging_errors_match_lightning(hook: str) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    assert _error(fulgor, hook) == _error(pl, hook)
