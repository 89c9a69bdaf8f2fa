"""The fit loop views before any fit: counters that keep what is assigned to them, and `epoch_loop.done` deciding
from them, `fit_loop.max_batches` and `trainer.should_stop` as Lightning's loop objects do (with its "Training will
continue..." message when `min_epochs`/`min_steps` are not met)."""

from __future__ import annotations

import logging
from types import ModuleType
from typing import Any

import pytest

import fulgor
from helpers.boring import boring_classes

CASES = [
    # min_epochs, min_steps, epochs_done, global_step, done, message
    (4, 10, 0, 10, True, False),  # every batch of the epoch fetched
    (4, 2, 0, 4, False, True),  # a stop requested before min_epochs
    (None, 4, 0, 4, True, False),  # min_steps met: the stop is honoured
    (None, None, 0, 4, True, False),
    (4, None, 0, 4, False, True),
]


def epoch_loop_done(lib: ModuleType, min_epochs: Any, min_steps: Any, epochs: int, steps: int) -> bool:
    trainer = lib.Trainer(min_epochs=min_epochs, min_steps=min_steps, limit_val_batches=0, logger=False)
    trainer.fit_loop.max_batches = 10
    trainer.should_stop = True
    trainer.fit_loop.epoch_loop.automatic_optimization.optim_progress.optimizer.step.total.completed = steps
    trainer.fit_loop.epoch_loop.batch_progress.current.ready = steps
    trainer.fit_loop.epoch_progress.current.processed = epochs
    done: bool = trainer.fit_loop.epoch_loop.done
    return done


@pytest.mark.parametrize(("min_epochs", "min_steps", "epochs", "steps", "done", "message"), CASES)
def test_epoch_loop_done_before_a_fit(
    min_epochs: Any, min_steps: Any, epochs: int, steps: int, done: bool, message: bool, caplog: Any
) -> None:
    with caplog.at_level(logging.INFO):
        assert epoch_loop_done(fulgor, min_epochs, min_steps, epochs, steps) is done
    text = f"`min_epochs={min_epochs}` or `min_steps={min_steps}` has not been met. Training will continue..."
    assert (text in caplog.text) is message


@pytest.mark.oracle
@pytest.mark.parametrize(("min_epochs", "min_steps", "epochs", "steps", "done", "message"), CASES)
def test_epoch_loop_done_equals_lightnings(
    min_epochs: Any, min_steps: Any, epochs: int, steps: int, done: bool, message: bool
) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    assert epoch_loop_done(pl, min_epochs, min_steps, epochs, steps) is done


def test_assigned_counters_are_dropped_when_a_fit_starts(tmp_path: Any) -> None:
    trainer = fulgor.Trainer(
        default_root_dir=tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=0, logger=False,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
    )  # fmt: skip
    trainer.fit_loop.epoch_loop.batch_progress.total.ready = 99
    assert trainer.fit_loop.epoch_loop.batch_progress.total.ready == 99
    trainer.fit(boring_classes(fulgor).BoringModel())
    assert trainer.fit_loop.epoch_loop.batch_progress.total.ready == 2
    assert trainer.fit_loop.epoch_loop.done
