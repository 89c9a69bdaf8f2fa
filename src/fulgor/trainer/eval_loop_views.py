"""The evaluation loops as read-only views (`trainer.validate_loop`, `test_loop`, `fit_loop.epoch_loop.val_loop`,
`predict_loop`): their batch limits and progress, computed from the run when read."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fulgor.trainer.loop_progress import (
    BatchProgress,
    FitProgress,
    Progress,
    ProgressCounts,
    fit_progress,
    planned_validation_batches,
)
from fulgor.trainer.state import RunningStage, TrainerFn, TrainerState

if TYPE_CHECKING:
    from fulgor.trainer.run import Run

__all__ = ["EvaluationLoopView", "PredictLoopView"]

RunSource = Callable[[], "Run | None"]

# How far a batch has gone when a hook runs: 1 = ready (fetched), 2 = started (its step runs), 3 = processed.
_READY, _STARTED, _PROCESSED = 1, 2, 3
_INF = float("inf")


def loaded_progress(state: TrainerState) -> FitProgress | None:
    """The counters `fit_loop.load_state_dict` set, if any (shown until the next fit starts)."""
    loaded: FitProgress | None = state.loaded_loops
    return loaded


def fx_name(run: Run) -> str | None:
    """The hook running now (the name `self.log` checks), which says how far the running batch has gone."""
    name: str | None = run.module.__dict__.get("_current_fx_name")
    return name


class EvaluationLoopView:
    """A validation or test loop (`trainer.validate_loop`, `trainer.test_loop`, `fit_loop.epoch_loop.val_loop`).

    Args:
        source: returns the Trainer's current (or last) run.
        fn: the entry point this loop belongs to (`FITTING` for the validation inside fit).
        stage: the stage it runs (validating or testing).
        verbose: whether the loop prints its results table.
        inference_mode: whether its batches run under `torch.inference_mode`.
    """

    def __init__(
        self,
        source: RunSource,
        fn: TrainerFn,
        stage: RunningStage,
        verbose: bool,
        inference_mode: bool,
        state: TrainerState | None = None,
    ):
        self._source = source
        self._state = state
        self._fn = fn
        self._stage = stage
        self.verbose = verbose
        self.inference_mode = inference_mode

    @property
    def max_batches(self) -> list[int | float]:
        """Batches each dataloader runs (after the `limit_*_batches` flags)."""
        run = self._source()
        return list(run.limits.get(self._stage, [])) if run is not None else []

    @max_batches.setter
    def max_batches(self, value: list[int | float]) -> None:
        """Set the batches each dataloader runs for the rest of this run (as a callback may, in Lightning)."""
        run = self._source()
        if run is None:
            raise RuntimeError("`max_batches` can be set only once the loop has data (during or after a run).")
        run.limits[self._stage] = list(value)

    @property
    def num_dataloaders(self) -> int:
        return len(self.max_batches)

    @property
    def batch_progress(self) -> BatchProgress:
        """Batches run by this loop (Lightning's counts at the point where it is read)."""
        loaded = loaded_progress(self._state) if self._state is not None else None
        if loaded is not None and self._fn == TrainerFn.FITTING:
            return loaded.val_batch_progress
        run = self._source()
        if run is None:
            return BatchProgress()
        if self._fn == TrainerFn.FITTING:
            return self._fit_validation_progress(run)
        if run.fn != self._fn:
            return BatchProgress()
        name = "validation" if self._stage == RunningStage.VALIDATING else "test"
        done = sum(count for (stage, _), count in run.eval_steps_logged.items() if stage == name)
        counts = ProgressCounts.at(done, self._position(run, name))
        return BatchProgress(counts, counts, counts.ready == self._planned())

    def _position(self, run: Run, name: str) -> int:
        """How far the running batch has gone, from the hook that is running."""
        fx = fx_name(run)
        if fx == f"on_{name}_batch_start":
            return _READY
        if fx == f"{name}_step":
            return _STARTED
        return _PROCESSED if fx == f"on_{name}_batch_end" else 0

    def _planned(self) -> int | float:
        """Batches one run of this loop goes through (all dataloaders)."""
        return sum(n for n in self.max_batches if n != _INF) or _INF

    def _fit_validation_progress(self, run: Run) -> BatchProgress:
        """The validation inside fit: `total` counts this training epoch's validation batches, `current` those of
        the running (or last) validation."""
        validating = run.state.stage == RunningStage.VALIDATING
        position = self._position(run, "validation") if validating else 0
        if not position:
            return fit_progress(run).val_batch_progress
        state = run.state
        before = state.pre_validation[1] if state.pre_validation is not None else 0
        current = ProgressCounts.at(state.val_batches_seen - before, position)
        is_last = current.ready > 0 and current.ready == planned_validation_batches(run)
        return BatchProgress(ProgressCounts.at(state.val_batches_seen, position), current, is_last)


class PredictLoopView:
    """`trainer.predict_loop`: what prediction writers and users read during and after `predict`: the predictions
    so far and the dataset indices of each batch (empty before any `predict`)."""

    def __init__(self, source: RunSource) -> None:
        self._source = source

    def _record(self) -> Any:
        run = self._source()
        return run.predict_view if run is not None else None

    @property
    def predictions(self) -> list[Any]:
        """The outputs of `predict_step` (a list per dataloader when there are several)."""
        record = self._record()
        return record.predictions if record is not None else []

    @property
    def epoch_batch_indices(self) -> list[Any]:
        """Per dataloader, the dataset indices of each batch run so far (recorded when a writer is attached)."""
        record = self._record()
        return record.epoch_batch_indices if record is not None else []

    @property
    def current_batch_indices(self) -> Any:
        """The dataset indices of the running batch (recorded when a writer is attached)."""
        record = self._record()
        return record.current_batch_indices if record is not None else []

    @property
    def batch_progress(self) -> Progress:
        """Predict batches run: `current` by the running (or last) `predict`, `total` by every `predict` of the
        Trainer (Lightning's counts at the point where it is read; read-only: a copy computed from the run)."""
        run = self._source()
        if run is None:
            return Progress()
        record = run.predict_view
        if record is None:  # another entry point runs now: the counts of the last `predict`
            return Progress(ProgressCounts.at(run.state.predict_batches, 0), ProgressCounts())
        position = _predict_position(run) if run.fn == TrainerFn.PREDICTING else 0
        total = run.state.predict_batches
        current = ProgressCounts.at(total - record.batches_before, position)
        return Progress(ProgressCounts.at(total, position), current)

    @property
    def max_batches(self) -> list[int | float]:
        run = self._source()
        return list(run.limits.get(RunningStage.PREDICTING, [])) if run is not None else []

    @property
    def num_dataloaders(self) -> int:
        return len(self.max_batches)


def _predict_position(run: Run) -> int:
    """How far the running predict batch has gone, from the hook that is running."""
    fx = fx_name(run)
    if fx == "on_predict_batch_start":
        return _READY
    if fx == "predict_step":
        return _STARTED
    return _PROCESSED if fx == "on_predict_batch_end" else 0
