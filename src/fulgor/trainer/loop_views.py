"""Lightning's loop objects as read-only views (`trainer.fit_loop`, `validate_loop`, `test_loop`, `predict_loop`): the
progress counters callbacks read, computed from the run's `TrainerState` when read. The phase says where a fit is; in a
batch, the running hook (the name `self.log` checks) says how far Lightning's ready/started/processed counts moved."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fulgor.checkpoint_contents import build_loops
from fulgor.trainer.state import LoopPhase, RunningStage, TrainerFn, TrainerStatus

if TYPE_CHECKING:
    from fulgor.trainer.run import Run

__all__ = [
    "BatchProgress",
    "EvaluationLoopView",
    "FitLoopView",
    "OptimizationView",
    "PredictLoopView",
    "Progress",
    "ProgressCounts",
    "TrainingEpochLoopView",
]

RunSource = Callable[[], "Run | None"]

# How far a batch has gone when a hook runs: 1 = ready (fetched), 2 = started (its step runs), 3 = processed.
_READY, _STARTED, _PROCESSED = 1, 2, 3
# Hooks that run inside a training batch's step (after `on_train_batch_start`, before `on_train_batch_end`).
_TRAIN_STEP_HOOKS = frozenset(
    {
        "training_step",
        "on_before_backward",
        "backward",
        "on_after_backward",
        "on_before_optimizer_step",
        "configure_gradient_clipping",
        "optimizer_step",
        "on_before_zero_grad",
        "optimizer_zero_grad",
    }
)
_INF = float("inf")


@dataclass
class ProgressCounts:
    """How many items were ready (fetched), started, processed and completed (Lightning's `_ProgressCounts`)."""

    ready: int = 0
    started: int = 0
    processed: int = 0
    completed: int = 0

    @classmethod
    def at(cls, done: int, position: int) -> ProgressCounts:
        """The counts after `done` finished items, with the next one `position` steps in (0: not fetched yet)."""
        return cls(done + (position >= _READY), done + (position >= _STARTED), done + (position >= _PROCESSED), done)


@dataclass
class Progress:
    """Counts over the whole run (`total`) and since the current epoch or evaluation started (`current`)."""

    total: ProgressCounts = field(default_factory=ProgressCounts)
    current: ProgressCounts = field(default_factory=ProgressCounts)


@dataclass
class BatchProgress(Progress):
    """Batch counts, and whether the batch fetched last is the last one of the epoch or evaluation."""

    is_last_batch: bool = False


@dataclass
class OptimizationView:
    """`epoch_loop.automatic_optimization` / `manual_optimization`: optimizer steps taken (total and this epoch)."""

    steps: Progress

    @property
    def optim_progress(self) -> OptimizationView:
        """Lightning's `automatic_optimization.optim_progress` (this view itself)."""
        return self

    @property
    def optim_step_progress(self) -> Progress:
        """Lightning's `manual_optimization.optim_step_progress`."""
        return self.steps

    @property
    def optimizer(self) -> OptimizationView:
        """Lightning's `optim_progress.optimizer` (this view: `.step` is the step progress)."""
        return self

    @property
    def step(self) -> Progress:
        return self.steps

    @property
    def optimizer_steps(self) -> int:
        """Optimizer steps taken in the whole fit (what `trainer.global_step` counts)."""
        return self.steps.total.completed


def _fx_name(run: Run) -> str | None:
    name: str | None = run.module.__dict__.get("_current_fx_name")
    return name


def _fitting(run: Run | None) -> bool:
    return run is not None and run.fn == TrainerFn.FITTING and run.state.status == TrainerStatus.RUNNING


class EvaluationLoopView:
    """A validation or test loop (`trainer.validate_loop`, `trainer.test_loop`, `fit_loop.epoch_loop.val_loop`).

    Args:
        source: returns the Trainer's current (or last) run.
        fn: the entry point this loop belongs to (`FITTING` for the validation inside fit).
        stage: the stage it runs (validating or testing).
        verbose: whether the loop prints its results table.
        inference_mode: whether its batches run under `torch.inference_mode`.
    """

    def __init__(self, source: RunSource, fn: TrainerFn, stage: RunningStage, verbose: bool, inference_mode: bool):
        self._source = source
        self._fn = fn
        self._stage = stage
        self.verbose = verbose
        self.inference_mode = inference_mode

    @property
    def max_batches(self) -> list[int | float]:
        """Batches each dataloader runs (after the `limit_*_batches` flags)."""
        run = self._source()
        return list(run.limits.get(self._stage, [])) if run is not None else []

    @property
    def num_dataloaders(self) -> int:
        return len(self.max_batches)

    @property
    def batch_progress(self) -> BatchProgress:
        """Batches run by this loop (Lightning's counts at the point where it is read)."""
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
        fx = _fx_name(run)
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
        state = run.state
        seen = state.val_batches_seen
        validating = state.stage == RunningStage.VALIDATING
        position = self._position(run, "validation") if validating else 0
        total = ProgressCounts.at(seen, position)
        before = state.pre_validation[1] if state.pre_validation is not None else 0
        if validating or seen > before or state.pre_validation is None:
            current = ProgressCounts.at(seen - before, position)
            return BatchProgress(total, current, current.ready > 0 and current.ready == self._planned())
        # A new epoch has started and not validated yet: `current` still shows the last (whole) validation.
        last = self._planned()
        return BatchProgress(total, ProgressCounts.at(int(last) if last != _INF else 0, 0), True)


class TrainingEpochLoopView:
    """`trainer.fit_loop.epoch_loop`: the batches of the running epoch, the step counters and the validation loop."""

    def __init__(self, source: RunSource, trainer: Any) -> None:
        self._source = source
        self._trainer = trainer
        self.val_loop = EvaluationLoopView(
            source, TrainerFn.FITTING, RunningStage.VALIDATING, verbose=False, inference_mode=False
        )

    @property
    def min_steps(self) -> int | None:
        value: int | None = self._trainer.min_steps
        return value

    @min_steps.setter
    def min_steps(self, value: int | None) -> None:
        self._trainer.min_steps = value

    @property
    def max_steps(self) -> int:
        value: int = self._trainer.max_steps
        return value

    @max_steps.setter
    def max_steps(self, value: int) -> None:
        self._trainer.max_steps = value

    @property
    def global_step(self) -> int:
        """Optimizer steps taken (`trainer.global_step`)."""
        return int(self._trainer.state.global_step)

    @property
    def _batches_that_stepped(self) -> int:
        """The step loggers receive: batches after which the optimizer stepped (read by user callbacks)."""
        return int(self._trainer.state.batches_that_stepped)

    @property
    def batch_progress(self) -> BatchProgress:
        """Training batches: `total` over the fit, `current` in the running epoch."""
        run = self._source()
        state = self._trainer.state
        done, total_done = state.batch_idx, state.total_batch_idx
        position = _train_position(run) if _fitting(run) else 0
        if position < 0:  # `on_train_epoch_start` of a later epoch: Lightning still shows the last epoch's counts
            last = _last_epoch_batches(run, total_done)
            total = ProgressCounts.at(total_done, 0)
            return BatchProgress(total, ProgressCounts.at(last, 0), last > 0)
        total = ProgressCounts.at(total_done, position)
        return BatchProgress(total, ProgressCounts.at(done, position), bool(state.is_last_batch))

    @property
    def scheduler_progress(self) -> Progress:
        """Learning-rate scheduler updates (`total` over the fit, `current` in this epoch)."""
        run = self._source()
        if run is None:
            return Progress()
        counts = build_loops(run)["fit_loop"]["epoch_loop.scheduler_progress"]
        return Progress(
            ProgressCounts(counts["total"]["ready"], 0, 0, counts["total"]["completed"]),
            ProgressCounts(counts["current"]["ready"], 0, 0, counts["current"]["completed"]),
        )

    @property
    def batch_idx(self) -> int:
        """Index of the running (or last) batch in this epoch; -1 before the first."""
        return self.batch_progress.current.ready - 1

    @property
    def total_batch_idx(self) -> int:
        """Index of the running (or last) batch counted over the whole fit; -1 before the first."""
        return self.batch_progress.total.ready - 1

    def _optimizer_steps(self, automatic: bool) -> OptimizationView:
        run = self._source()
        module_automatic = run is None or bool(run.module.automatic_optimization)
        steps = self.global_step if automatic == module_automatic else 0
        in_epoch = _steps_this_epoch(run) if run is not None and steps else 0
        return OptimizationView(Progress(ProgressCounts.at(steps, 0), ProgressCounts.at(in_epoch, 0)))

    @property
    def automatic_optimization(self) -> OptimizationView:
        """Optimizer steps of automatic optimization (`optim_progress.optimizer_steps`, `optimizer.step`)."""
        return self._optimizer_steps(automatic=True)

    @property
    def manual_optimization(self) -> OptimizationView:
        """Optimizer steps of manual optimization (`optim_step_progress`)."""
        return self._optimizer_steps(automatic=False)


def _train_position(run: Run | None) -> int:
    """How far the running training batch has gone (-1 in a later epoch's `on_train_epoch_start`)."""
    assert run is not None
    state = run.state
    if state.phase == LoopPhase.BATCH_END:
        return _PROCESSED
    if state.phase != LoopPhase.BETWEEN_BATCHES:
        return 0
    fx = _fx_name(run)
    if fx == "on_train_batch_start":
        return _READY
    if fx in _TRAIN_STEP_HOOKS:
        return _STARTED
    if fx == "on_train_epoch_start" and state.epoch > 0:
        return -1
    return 0


def _last_epoch_batches(run: Run | None, total_done: int) -> int:
    """Batches of the epoch before the one starting (the epoch's full length unless the fit has seen fewer)."""
    n = run.num_training_batches if run is not None else _INF
    return total_done if n == _INF else min(int(n), total_done)


def _steps_this_epoch(run: Run) -> int:
    """Optimizer steps in the running epoch: one per `accumulate_grad_batches` batches, and one on the last."""
    state = run.state
    accumulate = int(run.config.accumulate_grad_batches)
    done = int(state.batch_idx)
    return done // accumulate + (1 if state.is_last_batch and done % accumulate else 0)


class FitLoopView:
    """`trainer.fit_loop`: the epoch limits (settable, as in Lightning: ``trainer.fit_loop.max_epochs = 20`` before
    resuming a fit trains to epoch 20), the epoch progress, and the epoch loop.

    Args:
        source: returns the Trainer's current (or last) run.
        trainer: the Trainer whose settings the limits read and assign.
    """

    def __init__(self, source: RunSource, trainer: Any) -> None:
        self._source = source
        self._trainer = trainer
        self.epoch_loop = TrainingEpochLoopView(source, trainer)

    @property
    def max_epochs(self) -> int | None:
        value: int | None = self._trainer.max_epochs
        return value

    @max_epochs.setter
    def max_epochs(self, value: int | None) -> None:
        self._trainer.max_epochs = value

    @property
    def min_epochs(self) -> int | None:
        value: int | None = self._trainer.min_epochs
        return value

    @min_epochs.setter
    def min_epochs(self, value: int | None) -> None:
        self._trainer.min_epochs = value

    @property
    def max_steps(self) -> int:
        return self.epoch_loop.max_steps

    @property
    def min_steps(self) -> int | None:
        return self.epoch_loop.min_steps

    @property
    def max_batches(self) -> int | float:
        """Training batches per epoch."""
        value: int | float = self._trainer.num_training_batches
        return value

    @property
    def restarting(self) -> bool:
        """Whether this fit resumed from a checkpoint taken inside an epoch and is still in that epoch."""
        run = self._source()
        if run is None or run.fn != TrainerFn.FITTING or run.restarted_epoch is None:
            return False
        return run.restarted_epoch == run.state.epoch and run.state.status == TrainerStatus.RUNNING

    @property
    def epoch_progress(self) -> Progress:
        """Epochs: ready when `on_train_epoch_start` is about to run, started after it, processed before
        `on_train_epoch_end`, completed after it."""
        run = self._source()
        epoch = int(self._trainer.state.epoch)
        counts = ProgressCounts.at(epoch, _epoch_position(run) if _fitting(run) else 0)
        return Progress(counts, ProgressCounts(**vars(counts)))

    @property
    def batch_idx(self) -> int:
        return self.epoch_loop.batch_idx

    @property
    def total_batch_idx(self) -> int:
        return self.epoch_loop.total_batch_idx

    @property
    def done(self) -> bool:
        """Whether the fit is over: no batches, `max_steps` or `max_epochs` reached, or a stop that may be honoured."""
        trainer = self._trainer
        if self.max_batches == 0:
            return True
        max_steps, max_epochs = trainer.max_steps, trainer.max_epochs
        if max_steps != -1 and trainer.global_step >= max_steps:
            return True
        if max_epochs not in (None, -1) and self.epoch_progress.current.processed >= max_epochs:
            return True
        return bool(trainer.should_stop) and self._can_stop_early()

    def _can_stop_early(self) -> bool:
        trainer = self._trainer
        min_epochs, min_steps = trainer.min_epochs, trainer.min_steps
        met_epochs = self.epoch_progress.current.processed >= min_epochs if min_epochs else True
        return met_epochs and (trainer.global_step >= min_steps if min_steps else True)

    def state_dict(self) -> dict[str, Any]:
        """The fit loop's progress as a checkpoint stores it under ``loops/fit_loop``."""
        run = self._source()
        return build_loops(run)["fit_loop"] if run is not None else {}


def _epoch_position(run: Run | None) -> int:
    """How far the running epoch has gone: ready in `on_train_epoch_start`, started after it, processed from
    `on_train_epoch_end` on."""
    assert run is not None
    phase = run.state.phase
    if phase == LoopPhase.OUTSIDE_EPOCH:
        return 0
    if phase == LoopPhase.EPOCH_END:
        return _PROCESSED
    if phase == LoopPhase.BETWEEN_BATCHES and _fx_name(run) == "on_train_epoch_start":
        return _READY
    return _STARTED


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
    def max_batches(self) -> list[int | float]:
        run = self._source()
        return list(run.limits.get(RunningStage.PREDICTING, [])) if run is not None else []

    @property
    def num_dataloaders(self) -> int:
        return len(self.max_batches)
