"""`trainer.fit_loop` / `validate_loop` / `test_loop` / `predict_loop`: the progress counters user callbacks read,
recorded from a callback at every hook of a fit (and of validate/test) under fulgor and under pytorch-lightning 2.6.6,
and `fit_loop.max_epochs = n` before resuming."""

from __future__ import annotations

import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

import fulgor
from helpers.boring import boring_classes

HOOKS = (
    "on_fit_start", "on_train_start", "on_train_epoch_start", "on_train_batch_start", "on_before_backward",
    "on_before_optimizer_step", "on_train_batch_end", "on_validation_start", "on_validation_batch_start",
    "on_validation_batch_end", "on_validation_end", "on_train_epoch_end", "on_train_end", "on_fit_end",
)  # fmt: skip


def _counts(progress: Any) -> list[int]:
    return [progress.ready, progress.started, progress.processed, progress.completed]


def snapshot(trainer: Any) -> dict[str, Any]:
    fit = trainer.fit_loop
    epoch_loop = fit.epoch_loop
    val = epoch_loop.val_loop.batch_progress
    batches = epoch_loop.batch_progress
    return {
        "epochs": _counts(fit.epoch_progress.total) + _counts(fit.epoch_progress.current),
        "batches": _counts(batches.total) + _counts(batches.current) + [batches.is_last_batch],
        "val": _counts(val.total) + _counts(val.current) + [val.is_last_batch],
        "stepped": epoch_loop._batches_that_stepped,
        "global_step": epoch_loop.global_step,
        "optimizer_steps": epoch_loop.automatic_optimization.optim_progress.optimizer_steps,
        "idx": [fit.total_batch_idx, fit.batch_idx, epoch_loop.total_batch_idx, epoch_loop.batch_idx],
        "limits": [fit.max_epochs, fit.min_epochs, fit.max_steps, fit.min_steps, epoch_loop.max_steps],
    }


def record_fit(lib: ModuleType, root: Path, **flags: Any) -> list[tuple[str, dict[str, Any]]]:
    """Fit the boring model with a callback that snapshots the loop views at every hook of `HOOKS`."""
    records: list[tuple[str, dict[str, Any]]] = []

    class Recorder(lib.Callback):  # type: ignore[misc,name-defined]
        pass

    for hook in HOOKS:

        def record(self: Any, trainer: Any, *args: Any, _hook: str = hook) -> None:
            records.append((_hook, snapshot(trainer)))

        setattr(Recorder, hook, record)
    settings: dict[str, Any] = {
        "max_epochs": 2,
        "limit_train_batches": 3,
        "limit_val_batches": 2,
        "num_sanity_val_steps": 0,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "logger": False,
        "default_root_dir": root,
        "callbacks": [Recorder()],
    }
    settings.update(flags)
    torch.manual_seed(0)
    trainer = lib.Trainer(**settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(boring_classes(lib).BoringModel())
    records.append(("after fit", snapshot(trainer)))
    return records


def _diff(ours: list[Any], theirs: list[Any]) -> str:
    return "\n".join(f"{'  ' if a == b else '!!'} {a}\n   {b}" for a, b in zip(ours, theirs))


SCENARIOS = {
    "epoch-end validation": {},
    "accumulation, validation every 2 batches": {
        "accumulate_grad_batches": 2,
        "val_check_interval": 2,
        "limit_train_batches": 5,
    },
    "max_steps, min_epochs": {"max_epochs": -1, "max_steps": 4, "min_epochs": 1, "limit_train_batches": 3},
}


@pytest.mark.oracle
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_fit_loop_counters_equal_lightnings_at_every_hook(scenario: str, tmp_path: Path) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    ours = record_fit(fulgor, tmp_path / "fulgor", **SCENARIOS[scenario])
    theirs = record_fit(pl, tmp_path / "pl", **SCENARIOS[scenario])
    assert [h for h, _ in ours] == [h for h, _ in theirs]
    assert ours == theirs, _diff(ours, theirs)


def test_fit_loop_counters_at_chosen_points(tmp_path: Path) -> None:
    """Without the oracle: the numbers at a few points of a 2-epoch fit of 3 batches (Lightning's, recorded)."""
    records = dict(record_fit(fulgor, tmp_path))
    first = record_fit(fulgor, tmp_path)
    batch_end = [snap for hook, snap in first if hook == "on_train_batch_end"]
    assert batch_end[0]["batches"] == [1, 1, 1, 0, 1, 1, 1, 0, False]
    assert batch_end[4]["batches"] == [5, 5, 5, 4, 2, 2, 2, 1, False]
    assert records["on_train_epoch_end"]["epochs"] == [2, 2, 2, 1, 2, 2, 2, 1]
    assert records["on_train_epoch_end"]["stepped"] == 6
    assert records["after fit"]["epochs"] == [2] * 8
    assert records["after fit"]["idx"] == [5, 2, 5, 2]
    assert records["on_fit_start"]["idx"] == [-1, -1, -1, -1]
    starts = [snap["epochs"] for hook, snap in first if hook == "on_train_epoch_start"]
    assert starts == [[1, 0, 0, 0, 1, 0, 0, 0], [2, 1, 1, 1, 2, 1, 1, 1]]
    val_ends = [snap["val"] for hook, snap in first if hook == "on_validation_batch_end"]
    assert val_ends[1] == [2, 2, 2, 1, 2, 2, 2, 1, True]


def _record_eval(lib: ModuleType, fn: str) -> list[Any]:
    name = {"validate": "validation", "test": "test"}[fn]
    loop_name = {"validate": "validate_loop", "test": "test_loop"}[fn]
    records: list[Any] = []

    class Recorder(lib.Callback):  # type: ignore[misc,name-defined]
        pass

    for hook in (f"on_{name}_start", f"on_{name}_batch_start", f"on_{name}_batch_end", f"on_{name}_end"):

        def record(self: Any, trainer: Any, *args: Any, _hook: str = hook) -> None:
            progress = getattr(trainer, loop_name).batch_progress
            records.append((_hook, _counts(progress.total) + _counts(progress.current) + [progress.is_last_batch]))

        setattr(Recorder, hook, record)

    class Model(boring_classes(lib).BoringModel):  # type: ignore[misc]
        def validation_step(self, batch: Any, batch_idx: int) -> Any:
            records.append(("step", _counts(self.trainer.validate_loop.batch_progress.current)))
            return super().validation_step(batch, batch_idx)

    trainer = lib.Trainer(
        limit_val_batches=3, limit_test_batches=2, enable_progress_bar=False, logger=False, callbacks=[Recorder()]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        getattr(trainer, fn)(Model(), verbose=False)
    loop = getattr(trainer, loop_name)
    records.append(("after", _counts(loop.batch_progress.total), loop.max_batches, loop.num_dataloaders))
    return records


@pytest.mark.oracle
@pytest.mark.parametrize("fn", ["validate", "test"])
def test_validate_and_test_loop_counters_equal_lightnings(fn: str) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    ours, theirs = _record_eval(fulgor, fn), _record_eval(pl, fn)
    assert ours == theirs, _diff(ours, theirs)


def test_validate_loop_counts_each_batch() -> None:
    records = _record_eval(fulgor, "validate")
    assert records[:4] == [
        ("on_validation_start", [0, 0, 0, 0, 0, 0, 0, 0, False]),
        ("on_validation_batch_start", [1, 0, 0, 0, 1, 0, 0, 0, False]),
        ("step", [1, 1, 0, 0]),
        ("on_validation_batch_end", [1, 1, 1, 0, 1, 1, 1, 0, False]),
    ]
    assert records[-1] == ("after", [3, 3, 3, 3], [3], 1)


def _fit_then_resume(lib: ModuleType, root: Path) -> tuple[int, int, int]:
    classes = boring_classes(lib)
    quiet: dict[str, Any] = {"enable_progress_bar": False, "enable_model_summary": False, "logger": False}
    limits: dict[str, Any] = {"limit_train_batches": 2, "limit_val_batches": 1, "default_root_dir": root}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = lib.Trainer(max_epochs=2, **limits, **quiet)
        first.fit(classes.BoringModel())
        first.save_checkpoint(root / "two.ckpt")
        second = lib.Trainer(max_epochs=2, **limits, **quiet)
        second.fit_loop.max_epochs = 4  # a common way to train a finished run further
        second.fit(classes.BoringModel(), ckpt_path=root / "two.ckpt")
    return second.current_epoch, second.global_step, second.fit_loop.max_epochs


def test_setting_fit_loop_max_epochs_continues_a_finished_fit(tmp_path: Path) -> None:
    assert _fit_then_resume(fulgor, tmp_path) == (4, 8, 4)


@pytest.mark.oracle
def test_setting_fit_loop_max_epochs_matches_lightning(tmp_path: Path) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    assert _fit_then_resume(fulgor, tmp_path / "f") == _fit_then_resume(pl, tmp_path / "l")


def test_loop_views_exist_before_any_run_and_limits_are_settable() -> None:
    trainer = fulgor.Trainer(max_epochs=3, max_steps=10, logger=False, enable_progress_bar=False)
    fit = trainer.fit_loop
    assert (fit.max_epochs, fit.max_steps, fit.min_steps, fit.epoch_progress.current.completed) == (3, 10, None, 0)
    assert fit.epoch_loop.batch_progress.total.ready == 0
    assert fit.total_batch_idx == -1
    assert trainer.validate_loop.batch_progress.current.ready == 0
    assert trainer.test_loop.max_batches == []
    assert trainer.predict_loop.predictions == []
    assert trainer.predict_loop.epoch_batch_indices == []
    fit.max_epochs = 5
    fit.min_epochs = 2
    fit.epoch_loop.max_steps = 20
    assert (trainer.max_epochs, trainer.min_epochs, trainer.max_steps) == (5, 2, 20)
    state = fit.state_dict()  # Lightning's layout, every count 0 (as its loop objects give before a fit)
    assert state["epoch_progress"]["total"] == {"ready": 0, "started": 0, "processed": 0, "completed": 0}
    assert state["epoch_loop.automatic_optimization.optim_progress"]["optimizer"]["step"]["total"] == {
        "ready": 0,
        "completed": 0,
    }
    assert len(state) == 11


def test_fit_loop_done_and_state_dict_after_fit(tmp_path: Path) -> None:
    trainer = fulgor.Trainer(
        max_epochs=1, limit_train_batches=2, limit_val_batches=1, logger=False, enable_progress_bar=False,
        default_root_dir=tmp_path,
    )  # fmt: skip
    assert not trainer.fit_loop.done or trainer.fit_loop.max_batches == 0
    trainer.fit(boring_classes(fulgor).BoringModel())
    assert trainer.fit_loop.done
    state = trainer.fit_loop.state_dict()
    assert state["epoch_progress"]["current"]["completed"] == 1
    assert state["epoch_loop.state_dict"] == {"_batches_that_stepped": 2}


def test_predict_loop_view_holds_the_predictions() -> None:
    trainer = fulgor.Trainer(limit_predict_batches=3, logger=False, enable_progress_bar=False)
    out = trainer.predict(boring_classes(fulgor).BoringModel())
    assert out is not None
    assert len(out) == 3
    loop = trainer.predict_loop
    assert len(loop.predictions) == 3
    assert torch.equal(loop.predictions[0], out[0])
    assert loop.max_batches == [3]
    assert loop.num_dataloaders == 1


def test_fit_loop_restarting_is_true_only_in_the_epoch_a_mid_epoch_checkpoint_resumes(tmp_path: Path) -> None:
    boring = boring_classes(fulgor)

    class Watch(fulgor.Callback):
        def __init__(self) -> None:
            self.seen: list[tuple[int, bool]] = []

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            # Read at each epoch's first batch: a resumed epoch gets no `on_train_epoch_start` (as in Lightning).
            if not self.seen or self.seen[-1][0] != trainer.current_epoch:
                self.seen.append((trainer.current_epoch, trainer.fit_loop.restarting))

    def fit(watch: Watch, *callbacks: Any, ckpt_path: str | None = None) -> None:
        trainer = fulgor.Trainer(
            default_root_dir=tmp_path, max_epochs=2, limit_train_batches=4, limit_val_batches=0, logger=False,
            enable_progress_bar=False, enable_model_summary=False, callbacks=[watch, *callbacks],
        )  # fmt: skip
        trainer.fit(boring.BoringModel(), ckpt_path=ckpt_path)

    first, resumed = Watch(), Watch()
    fit(first, fulgor.callbacks.ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=3, save_top_k=-1))
    assert first.seen == [(0, False), (1, False)]  # a fresh fit never restarts
    fit(resumed, ckpt_path=str(tmp_path / "epoch=0-step=3.ckpt"))
    assert resumed.seen == [(0, True), (1, False)]


@pytest.mark.oracle
def test_fresh_trainers_fit_loop_state_dict_is_lightnings_zero_layout() -> None:
    pl = pytest.importorskip("pytorch_lightning")
    flags: dict[str, Any] = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False}
    ours = fulgor.Trainer(**flags).fit_loop.state_dict()
    theirs = pl.Trainer(**flags).fit_loop.state_dict()
    assert ours == theirs
    assert ours["epoch_progress"]["current"] == {"ready": 0, "started": 0, "processed": 0, "completed": 0}
