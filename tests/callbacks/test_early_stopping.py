"""EarlyStopping: the measured schedules of the reference (§5.3) with stop epochs, wait counts, best scores and
messages, against pytorch-lightning 2.6.6; thresholds, NaN, strict errors, where it checks, state, and `-1`."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import fulgor
from fulgor.callbacks.early_stopping import EarlyStopping, EarlyStoppingReason
from fulgor.errors import MisconfigurationException


def scored_class(base: type, scores: list[float]) -> type:
    """A module whose validation logs `val_loss = scores[check]` (one value per validation run)."""

    class Scored(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)
            self.checks = 0

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            return self.layer(batch[0]).sum()

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self.log("val_loss", torch.tensor(scores[min(self.checks, len(scores) - 1)]))

        def on_validation_epoch_end(self) -> None:
            self.checks += 1

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    return Scored


def data(n: int = 4) -> DataLoader[Any]:
    return DataLoader(TensorDataset(torch.ones(n, 2)), batch_size=2)


def fit(
    lib: Any, root: Path, scores: list[float], es: Any, max_epochs: int = 10, n: int = 4, ckpt_path: Any = None,
    **kw: Any,
) -> Any:  # fmt: skip
    """Fit the scored module for `max_epochs` on `n` training samples (batch size 2) with callback `es`."""
    kw = {"num_sanity_val_steps": 0, "enable_progress_bar": False, "enable_model_summary": False, "logger": False,
          "enable_checkpointing": False, **kw}  # fmt: skip
    trainer = lib.Trainer(default_root_dir=str(root), max_epochs=max_epochs, callbacks=[es], **kw)
    trainer.fit(scored_class(lib.LightningModule, scores)(), data(n), data(), ckpt_path=ckpt_path)
    return trainer


def outcome(trainer: Any, es: Any) -> dict[str, Any]:
    return {
        "current_epoch": trainer.current_epoch,
        "stopped_epoch": es.stopped_epoch,
        "wait_count": es.wait_count,
        "best_score": round(float(es.best_score), 6),
        "reason": es.stopping_reason.value,
        "message": es.stopping_reason_message,
    }


SCHEDULES: list[tuple[str, list[float], dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    (
        "patience",
        [1.0, 0.9, 0.95, 0.91, 0.8],
        {"patience": 2},
        {},
        {"current_epoch": 4, "stopped_epoch": 3, "wait_count": 2, "best_score": 0.9, "reason": 3,
         "message": "Monitored metric val_loss did not improve in the last 2 records. Best score: 0.900."
                    " Signaling Trainer to stop."},
    ),
    (
        "min_delta",
        [1.0, 0.96, 0.9, 0.88, 0.87, 0.86],
        {"patience": 2, "min_delta": 0.05},
        {},
        {"current_epoch": 5, "stopped_epoch": 4, "wait_count": 2, "best_score": 0.9, "reason": 3,
         "message": "Monitored metric val_loss did not improve in the last 2 records. Best score: 0.900."
                    " Signaling Trainer to stop."},
    ),
    (
        "mode_max",
        [0.1, 0.2, 0.2, 0.2],
        {"patience": 2, "mode": "max"},
        {},
        {"current_epoch": 4, "stopped_epoch": 3, "wait_count": 2, "best_score": 0.2, "reason": 3,
         "message": "Monitored metric val_loss did not improve in the last 2 records. Best score: 0.200."
                    " Signaling Trainer to stop."},
    ),
    (
        "min_epochs",
        [1.0] * 10,
        {"patience": 1},
        {"min_epochs": 5},
        {"current_epoch": 5, "stopped_epoch": 4, "wait_count": 4, "best_score": 1.0, "reason": 3,
         "message": "Monitored metric val_loss did not improve in the last 4 records. Best score: 1.000."
                    " Signaling Trainer to stop."},
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "scores", "kwargs", "trainer_kw", "expected"), SCHEDULES, ids=[s[0] for s in SCHEDULES]
)
def test_measured_schedules(
    tmp_path: Path, name: str, scores: list[float], kwargs: dict[str, Any], trainer_kw: dict[str, Any],
    expected: dict[str, Any],
) -> None:  # fmt: skip
    es = EarlyStopping(monitor="val_loss", **kwargs)
    trainer = fit(fulgor, tmp_path, scores, es, **trainer_kw)
    assert outcome(trainer, es) == expected


@pytest.mark.oracle
@pytest.mark.parametrize(
    ("name", "scores", "kwargs", "trainer_kw", "expected"), SCHEDULES, ids=[s[0] for s in SCHEDULES]
)
def test_schedules_match_lightning(
    tmp_path: Path, name: str, scores: list[float], kwargs: dict[str, Any], trainer_kw: dict[str, Any],
    expected: dict[str, Any],
) -> None:  # fmt: skip
    pl = pytest.importorskip("pytorch_lightning")
    pl_es = pl.callbacks.EarlyStopping(monitor="val_loss", **kwargs)
    pl_outcome = outcome(fit(pl, tmp_path / "pl", scores, pl_es, **trainer_kw), pl_es)
    es = EarlyStopping(monitor="val_loss", **kwargs)
    assert outcome(fit(fulgor, tmp_path / "fulgor", scores, es, **trainer_kw), es) == pl_outcome == expected


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def verbose_messages(lib: Any, root: Path, scores: list[float], **kw: Any) -> list[str]:
    """The INFO messages EarlyStopping(verbose=True) logs, read from its own logger."""
    cls = EarlyStopping if lib is fulgor else lib.callbacks.EarlyStopping
    logger = logging.getLogger(cls.__module__)
    handler, level = ListHandler(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        fit(lib, root, scores, cls(monitor="val_loss", verbose=True, **kw), max_epochs=len(scores))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return handler.messages


def test_verbose_messages_of_each_decision(tmp_path: Path) -> None:
    messages = verbose_messages(fulgor, tmp_path, [1.0, 0.9, 0.95, 0.91], patience=2, min_delta=0.05)
    assert messages == [
        "Metric val_loss improved. New best score: 1.000",
        "Metric val_loss improved by 0.100 >= min_delta = 0.05. New best score: 0.900",
        "Monitored metric val_loss did not improve in the last 2 records. Best score: 0.900."
        " Signaling Trainer to stop.",
    ]


@pytest.mark.oracle
def test_verbose_messages_match_lightning(tmp_path: Path) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    scores = [1.0, 0.9, 0.95, 0.5, float("nan")]
    expected = verbose_messages(pl, tmp_path / "pl", scores, patience=3, min_delta=0.05)
    assert verbose_messages(fulgor, tmp_path / "f", scores, patience=3, min_delta=0.05) == expected
    assert expected[-1] == (
        "Monitored metric val_loss = nan is not finite. Previous best value was 0.500. Signaling Trainer to stop."
    )


def test_stopping_threshold(tmp_path: Path) -> None:
    es = EarlyStopping(monitor="val_loss", stopping_threshold=0.2, patience=10)
    trainer = fit(fulgor, tmp_path, [1.0, 0.5, 0.1, 0.05], es)
    assert (trainer.current_epoch, es.stopped_epoch, es.stopping_reason) == (
        3,
        2,
        EarlyStoppingReason.STOPPING_THRESHOLD,
    )
    assert es.stopping_reason_message == (
        "Stopping threshold reached: val_loss = 0.10000000149011612 < 0.2. Signaling Trainer to stop."
    )
    assert float(es.best_score) == 0.5  # threshold stops do not touch best/wait
    assert es.wait_count == 0


def test_divergence_threshold_prints_lightnings_comparator(tmp_path: Path) -> None:
    es = EarlyStopping(monitor="val_loss", divergence_threshold=5.0, patience=10)
    trainer = fit(fulgor, tmp_path, [1.0, 6.0, 0.1], es)
    assert (trainer.current_epoch, es.stopping_reason) == (2, EarlyStoppingReason.DIVERGENCE_THRESHOLD)
    assert (
        es.stopping_reason_message == "Divergence threshold reached: val_loss = 6.0 < 5.0. Signaling Trainer to stop."
    )


def test_equal_to_threshold_does_not_stop(tmp_path: Path) -> None:
    es = EarlyStopping(monitor="val_loss", stopping_threshold=0.5, divergence_threshold=2.0, patience=10)
    trainer = fit(fulgor, tmp_path, [2.0, 0.5, 0.5], es, max_epochs=3)
    assert (trainer.current_epoch, es.stopping_reason, es.wait_count) == (3, EarlyStoppingReason.NOT_STOPPED, 1)


@pytest.mark.oracle
def test_thresholds_match_lightning(tmp_path: Path) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    for i, (kw, scores) in enumerate([
        ({"stopping_threshold": 0.2}, [1.0, 0.5, 0.1]),
        ({"divergence_threshold": 5.0}, [1.0, 6.0]),
        ({"divergence_threshold": 0.5, "mode": "max"}, [1.0, 0.7, 0.25]),
        ({"stopping_threshold": 0.9, "mode": "max"}, [0.1, 0.95]),
    ]):  # fmt: skip
        pl_es, es = pl.callbacks.EarlyStopping("val_loss", **kw), EarlyStopping("val_loss", **kw)
        expected = outcome(fit(pl, tmp_path / f"pl{i}", scores, pl_es), pl_es)
        assert outcome(fit(fulgor, tmp_path / f"f{i}", scores, es), es) == expected


def test_nan_stops_immediately_and_check_finite_false_keeps_going(tmp_path: Path) -> None:
    es = EarlyStopping(monitor="val_loss", patience=5)
    trainer = fit(fulgor, tmp_path / "a", [1.0, float("nan"), 0.5], es)
    assert (trainer.current_epoch, es.stopping_reason) == (2, EarlyStoppingReason.NON_FINITE_METRIC)
    assert es.stopping_reason_message == (
        "Monitored metric val_loss = nan is not finite. Previous best value was 1.000. Signaling Trainer to stop."
    )
    es = EarlyStopping(monitor="val_loss", patience=2, check_finite=False)
    trainer = fit(fulgor, tmp_path / "b", [1.0, float("nan"), float("nan"), 0.5], es)
    assert (trainer.current_epoch, es.stopping_reason, es.wait_count) == (3, EarlyStoppingReason.PATIENCE_EXHAUSTED, 2)


def test_missing_metric_strict_error_and_non_strict_skip(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError) as info:
        fit(fulgor, tmp_path / "a", [1.0], EarlyStopping(monitor="nope"))
    assert str(info.value) == (
        "Early stopping conditioned on metric `nope` which is not available. Pass in or modify your `EarlyStopping`"
        " callback to use any of the following: `val_loss`"
    )
    es = EarlyStopping(monitor="nope", strict=False)
    trainer = fit(fulgor, tmp_path / "b", [1.0], es, max_epochs=3)
    assert (trainer.current_epoch, es.wait_count, es.stopping_reason) == (3, 0, EarlyStoppingReason.NOT_STOPPED)


def test_bad_mode() -> None:
    with pytest.raises(MisconfigurationException, match="`mode` can be min, max, got maximum"):
        EarlyStopping(monitor="val_loss", mode="maximum")


def test_state_key_and_state_round_trip() -> None:
    es = EarlyStopping(monitor="val_loss", mode="min", patience=2)
    assert es.state_key == "EarlyStopping{'monitor': 'val_loss', 'mode': 'min'}"
    for value in (1.0, 0.9, 0.95, 0.97):
        es._evaluate_stopping_criteria(torch.tensor(value))
    state = es.state_dict()
    assert state == {"wait_count": 2, "stopped_epoch": 0, "best_score": torch.tensor(0.9), "patience": 2,
                     "stopping_reason": 3, "stopping_reason_message": None}  # fmt: skip
    restored = EarlyStopping(monitor="val_loss", patience=7)
    restored.load_state_dict(state)
    assert restored.state_dict() == state
    assert restored.stopping_reason is EarlyStoppingReason.PATIENCE_EXHAUSTED


@pytest.mark.oracle
def test_state_key_matches_lightning() -> None:
    pl = pytest.importorskip("pytorch_lightning")
    for kw in ({"monitor": "val_loss"}, {"monitor": "acc", "mode": "max"}):
        assert EarlyStopping(**kw).state_key == pl.callbacks.EarlyStopping(**kw).state_key


def test_state_is_saved_in_checkpoints_and_restored(tmp_path: Path) -> None:
    es = EarlyStopping(monitor="val_loss", patience=3)
    trainer = fit(fulgor, tmp_path, [1.0, 0.9, 0.95], es, max_epochs=3)
    path = tmp_path / "es.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    state = checkpoint["callbacks"]["EarlyStopping{'monitor': 'val_loss', 'mode': 'min'}"]
    assert (state["wait_count"], float(state["best_score"]), state["patience"]) == (1, pytest.approx(0.9), 3)
    resumed = EarlyStopping(monitor="val_loss", patience=3)
    fit(fulgor, tmp_path, [0.99, 0.99, 0.99], resumed, max_epochs=10, ckpt_path=str(path))
    # wait 1 restored: two more checks without improvement exhaust patience 3, at epoch index 4.
    assert (resumed.stopped_epoch, resumed.wait_count) == (4, 3)


def test_check_on_train_epoch_end_is_decided_in_setup(tmp_path: Path) -> None:
    es = EarlyStopping(monitor="val_loss")
    fit(fulgor, tmp_path / "a", [1.0], es, max_epochs=1)
    assert es._check_on_train_epoch_end is True
    es = EarlyStopping(monitor="val_loss")
    fit(fulgor, tmp_path / "b", [1.0], es, max_epochs=1, val_check_interval=0.5)
    assert es._check_on_train_epoch_end is False


@pytest.mark.parametrize("on_train_epoch_end", [None, True, False])
def test_with_two_validations_per_epoch(tmp_path: Path, on_train_epoch_end: bool | None) -> None:
    """val_check_interval=0.5 with 4 batches: two validation runs per epoch. Checking after each validation counts
    each run; checking at the train epoch end sees only the last value of the epoch."""
    scores = [1.0, 0.9, 0.95, 0.96, 0.97, 0.98, 0.99, 0.99]
    es = EarlyStopping(monitor="val_loss", patience=2, check_on_train_epoch_end=on_train_epoch_end)
    trainer = fit(fulgor, tmp_path, scores, es, max_epochs=5, val_check_interval=0.5, n=8)
    if on_train_epoch_end:  # epoch-end values: 0.9, 0.96, 0.98 -> stops after epoch 2
        assert (es.stopped_epoch, trainer.current_epoch, es.wait_count) == (2, 3, 2)
    else:  # per validation: 1.0, 0.9, 0.95, 0.96 -> second run of epoch 1
        assert (es.stopped_epoch, trainer.current_epoch, es.wait_count) == (1, 2, 2)


@pytest.mark.oracle
@pytest.mark.parametrize("on_train_epoch_end", [None, True, False])
def test_with_two_validations_per_epoch_matches_lightning(tmp_path: Path, on_train_epoch_end: bool | None) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    scores = [1.0, 0.9, 0.95, 0.96, 0.97, 0.98, 0.99, 0.99]
    kw = {"max_epochs": 5, "val_check_interval": 0.5, "n": 8}
    pl_es = pl.callbacks.EarlyStopping(monitor="val_loss", patience=2, check_on_train_epoch_end=on_train_epoch_end)
    es = EarlyStopping(monitor="val_loss", patience=2, check_on_train_epoch_end=on_train_epoch_end)
    expected = outcome(fit(pl, tmp_path / "pl", scores, pl_es, **kw), pl_es)
    assert outcome(fit(fulgor, tmp_path / "f", scores, es, **kw), es) == expected


def test_runs_after_the_modules_on_train_epoch_end(tmp_path: Path) -> None:
    """A metric logged in `on_train_epoch_end` is visible to EarlyStopping in the same epoch."""

    class Logged(scored_class(fulgor.LightningModule, [1.0])):  # type: ignore[misc]
        def on_train_epoch_end(self) -> None:
            self.log("epoch_metric", torch.tensor(float(self.current_epoch)))

    es = EarlyStopping(monitor="epoch_metric", mode="min", patience=2)
    trainer = fulgor.Trainer(default_root_dir=str(tmp_path), max_epochs=10, callbacks=[es], logger=False,
                             enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                             num_sanity_val_steps=0)  # fmt: skip
    trainer.fit(Logged(), data(), data())
    assert (es.stopped_epoch, float(es.best_score)) == (2, 0.0)


def test_skipped_in_sanity_check_and_fast_dev_run(tmp_path: Path) -> None:
    es = EarlyStopping(monitor="val_loss", patience=1)
    fit(fulgor, tmp_path / "a", [1.0] * 5, es, max_epochs=1, num_sanity_val_steps=2)
    assert es.wait_count == 0  # the sanity check's value was not a check: one real check, an improvement
    es = EarlyStopping(monitor="val_loss", patience=1)
    fit(fulgor, tmp_path / "b", [1.0], es, fast_dev_run=True)
    assert (es.wait_count, math.isinf(float(es.best_score))) == (0, True)


def test_on_train_batch_start_returning_minus_one_ends_the_epoch(tmp_path: Path) -> None:
    """The seed's first early-stopping method: return -1 from `on_train_batch_start` to skip the rest of the epoch."""
    seen: list[tuple[int, int]] = []

    class Skipping(scored_class(fulgor.LightningModule, [1.0])):  # type: ignore[misc]
        def on_train_batch_start(self, batch: Any, batch_idx: int) -> int | None:
            return -1 if batch_idx == 1 else None

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            seen.append((self.current_epoch, batch_idx))
            return super().training_step(batch, batch_idx)

    trainer = fulgor.Trainer(default_root_dir=str(tmp_path), max_epochs=2, logger=False, enable_progress_bar=False,
                             enable_model_summary=False, enable_checkpointing=False,
                             num_sanity_val_steps=0)  # fmt: skip
    model = Skipping()
    trainer.fit(model, data(6), data())
    assert seen == [(0, 0), (1, 0)]
    assert (trainer.current_epoch, trainer.global_step, model.checks) == (2, 2, 0)  # no validation in skipped epochs


def test_seed_section_2_3_example_stops_early(tmp_path: Path) -> None:
    """examples/s2_3_early_stopping.py: the notes' code as written stops both runs long before 1000 epochs."""
    import os
    import re
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "examples" / "s2_3_early_stopping.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, str(script), "--root", str(tmp_path)], capture_output=True, text=True,
                          timeout=120, env=env, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    runs = re.findall(r"stopped at epoch (\d+) \(epochs run: (\d+)\).*reason (\w+)", proc.stdout)
    assert runs == [("6", "7", "PATIENCE_EXHAUSTED"), ("4", "5", "PATIENCE_EXHAUSTED")]
