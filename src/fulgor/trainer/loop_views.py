"""Lightning's fit loop objects as read-only views (`trainer.fit_loop`, its `epoch_loop` and optimization loops): the
progress counters callbacks read, computed from the run's `TrainerState` when read (eval_loop_views.py has the
evaluation loops'). The phase says where a fit is; in a batch, the running hook says how far the counts moved."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fulgor.rank import rank_zero_info
from fulgor.trainer.eval_loop_views import EvaluationLoopView, PredictLoopView, loaded_progress
from fulgor.trainer.eval_loop_views import fx_name as _fx_name
from fulgor.trainer.loop_progress import (
    BatchProgress,
    FitProgress,
    Progress,
    ProgressCounts,
    ReadyCompletedCounts,
    fit_progress,
)
from fulgor.trainer.state import LoopPhase, RunningStage, TrainerFn, TrainerState, TrainerStatus

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


def _loaded(state: TrainerState) -> FitProgress | None:
    """The counters `fit_loop.load_state_dict` set, if any (shown until the next fit starts)."""
    return loaded_progress(state)


def _counters(state: TrainerState, source: RunSource) -> FitProgress | None:
    """The loaded counters; before any run, counters of zero that keep what is assigned to them (as Lightning's loop
    objects do before a fit); None while a run's own counters are to be read."""
    loaded = loaded_progress(state)
    if loaded is None and source() is None:
        loaded = state.loaded_loops = FitProgress.zeros()
    return loaded


class OptimizationView:
    """`epoch_loop.automatic_optimization` / `manual_optimization`: optimizer steps (and `zero_grad` calls) taken,
    over the fit and in this epoch.

    Args:
        steps: the optimizer step progress.
        zero_grad: the `zero_grad` progress (automatic optimization).
        state: the Trainer's state, whose loaded counters (`fit_loop.load_state_dict`) say whether it restarts.
    """

    def __init__(self, steps: Progress, zero_grad: Progress | None = None, state: TrainerState | None = None):
        self.steps = steps
        self.zero_grad = zero_grad if zero_grad is not None else Progress()
        self._state = state

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
        """Lightning's `optim_progress.optimizer` (this view: `.step` and `.zero_grad` are its progress)."""
        return self

    @property
    def step(self) -> Progress:
        return self.steps

    @property
    def optimizer_steps(self) -> int:
        """Optimizer steps taken in the whole fit (what `trainer.global_step` counts)."""
        return int(self.steps.total.completed)

    @property
    def restarting(self) -> bool:
        """Whether this loop restarts from loaded counters (`fit_loop.load_state_dict`)."""
        loaded = _loaded(self._state) if self._state is not None else None
        return loaded is not None and loaded.restarting["optim"]

    @restarting.setter
    def restarting(self, value: bool) -> None:
        loaded = _loaded(self._state) if self._state is not None else None
        if loaded is not None:
            loaded.restarting["optim"] = bool(value)


def _fitting(run: Run | None) -> bool:
    return run is not None and run.fn == TrainerFn.FITTING and run.state.status == TrainerStatus.RUNNING


class TrainingEpochLoopView:
    """`trainer.fit_loop.epoch_loop`: the batches of the running epoch, the step counters and the validation loop."""

    def __init__(self, source: RunSource, trainer: Any) -> None:
        self._source = source
        self._trainer = trainer
        self._state: TrainerState = trainer.state
        self.val_loop = EvaluationLoopView(
            source, TrainerFn.FITTING, RunningStage.VALIDATING, verbose=False, inference_mode=False, state=self._state
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
        loaded = _counters(self._state, self._source)
        if loaded is not None:
            return loaded.batch_progress
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
        loaded = _counters(self._state, self._source)
        if loaded is not None:
            return loaded.scheduler_progress
        run = self._source()
        return fit_progress(run).scheduler_progress if run is not None else Progress(*_no_steps())

    @property
    def done(self) -> bool:
        """Whether the epoch is over: `max_steps` reached, the epoch's last batch fetched, or a stop requested that
        `min_epochs`/`min_steps` allow (else Lightning's "Training will continue..." message)."""
        global_step = _global_step(self._trainer, self._source)
        max_steps = self.max_steps
        if max_steps != -1 and global_step >= max_steps:
            return True
        batches = self.batch_progress
        if batches.current.ready == self._trainer.num_training_batches or batches.is_last_batch:
            return True
        if not self._trainer.should_stop:
            return False
        if _can_stop_early(self._trainer, self._source):
            return True
        rank_zero_info(
            f"Trainer was signaled to stop but the required `min_epochs={self._trainer.min_epochs!r}` or"
            f" `min_steps={self._trainer.min_steps!r}` has not been met. Training will continue..."
        )
        return False

    @property
    def restarting(self) -> bool:
        """Whether the epoch loop restarts: in the epoch a mid-epoch checkpoint resumed in, or after
        `fit_loop.load_state_dict` (settable)."""
        loaded = _loaded(self._state)
        return loaded.restarting["epoch"] if loaded is not None else _restarting(self._source())

    @restarting.setter
    def restarting(self, value: bool) -> None:
        _set_restarting(self._state, self._source(), "epoch", value)

    def reset(self) -> None:
        """Lightning's `epoch_loop.reset()` on loaded counters: what a restart leaves of them (see
        `loop_progress.FitProgress.reset_epoch`). Without loaded counters there is nothing to reset."""
        loaded = _loaded(self._state)
        if loaded is not None:
            loaded.reset_epoch(self._trainer.num_training_batches, int(self._trainer.accumulate_grad_batches))

    @property
    def batch_idx(self) -> int:
        """Index of the running (or last) batch in this epoch; -1 before the first."""
        return int(self.batch_progress.current.ready) - 1

    @property
    def total_batch_idx(self) -> int:
        """Index of the running (or last) batch counted over the whole fit; -1 before the first."""
        return int(self.batch_progress.total.ready) - 1

    def _optimizer_steps(self, automatic: bool) -> OptimizationView:
        loaded = _counters(self._state, self._source)
        run = self._source()
        progress = loaded if loaded is not None else (fit_progress(run) if run is not None else None)
        if progress is None:
            return OptimizationView(Progress(*_no_steps()), Progress(*_no_steps()), self._state)
        if automatic:
            return OptimizationView(progress.optimizer_step, progress.zero_grad, self._state)
        return OptimizationView(progress.manual_step, None, self._state)

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


def _no_steps() -> tuple[ReadyCompletedCounts, ReadyCompletedCounts]:
    return ReadyCompletedCounts(), ReadyCompletedCounts()


def _global_step(trainer: Any, source: RunSource) -> int:
    """Optimizer steps taken (`trainer.global_step`: before any run, what was assigned to the step progress)."""
    return int(trainer.global_step)


def _can_stop_early(trainer: Any, source: RunSource) -> bool:
    min_epochs, min_steps = trainer.min_epochs, trainer.min_steps
    loaded = _counters(trainer.state, source)
    epochs = int(loaded.epoch_progress.current.processed) if loaded is not None else int(trainer.current_epoch)
    met_epochs = epochs >= min_epochs if min_epochs else True
    return met_epochs and (_global_step(trainer, source) >= min_steps if min_steps else True)


def _restarting(run: Run | None) -> bool:
    """Whether a fit resumed from a checkpoint taken inside an epoch and is still in that epoch."""
    if run is None or run.fn != TrainerFn.FITTING or run.restarted_epoch is None:
        return False
    return run.restarted_epoch == run.state.epoch and run.state.status == TrainerStatus.RUNNING


def _set_restarting(state: TrainerState, run: Run | None, loop: str, value: bool) -> None:
    """`loop.restarting = value`: a flag of the loaded counters (counters of the run, loaded, when none are)."""
    loaded = _loaded(state)
    if loaded is None:
        if run is None:
            raise RuntimeError("`restarting` can be set only after a run, or once `fit_loop.load_state_dict` ran.")
        loaded = state.loaded_loops = fit_progress(run)
    loaded.restarting[loop] = bool(value)


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
        """Training batches per epoch (settable: a callback may shorten the epochs that follow)."""
        value: int | float = self._trainer.num_training_batches
        return value

    @max_batches.setter
    def max_batches(self, value: int | float) -> None:
        run = self._source()
        if run is not None:
            run.num_training_batches = value  # read as each epoch starts
        self._trainer.state.batch_counts["train"] = value

    @property
    def restarting(self) -> bool:
        """Whether this fit resumed from a checkpoint taken inside an epoch and is still in that epoch, or restarts
        from counters `load_state_dict` set (settable)."""
        loaded = _loaded(self._trainer.state)
        return loaded.restarting["fit"] if loaded is not None else _restarting(self._source())

    @restarting.setter
    def restarting(self, value: bool) -> None:
        _set_restarting(self._trainer.state, self._source(), "fit", value)

    @property
    def epoch_progress(self) -> Progress:
        """Epochs: ready when `on_train_epoch_start` is about to run, started after it, processed before
        `on_train_epoch_end`, completed after it."""
        loaded = _counters(self._trainer.state, self._source)
        if loaded is not None:
            return loaded.epoch_progress
        run = self._source()
        epoch = int(self._trainer.state.epoch)
        counts = ProgressCounts.at(epoch, _epoch_position(run) if _fitting(run) else 0)
        return Progress(counts, ProgressCounts(**counts.state_dict()))

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
        return bool(trainer.should_stop) and self._can_stop_early

    @property
    def _can_stop_early(self) -> bool:
        """Whether `min_epochs` and `min_steps` are met, so that a requested stop is honoured."""
        return _can_stop_early(self._trainer, self._source)

    def state_dict(self) -> dict[str, Any]:
        """The fit loop's progress as a checkpoint stores it under ``loops/fit_loop``."""
        loaded = _loaded(self._trainer.state)
        if loaded is not None:
            return loaded.state_dict()
        run = self._source()
        return (fit_progress(run) if run is not None else FitProgress.zeros()).state_dict()  # Lightning's layout

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a checkpoint's ``loops/fit_loop`` counters: the loop views and `state_dict()` show them (every loop
        `restarting`) until the next `fit` starts, which counts from its own checkpoint (`ckpt_path`) instead.

        Args:
            state_dict: what `state_dict()` returns, e.g. ``torch.load(path)["loops"]["fit_loop"]``.
        """
        try:
            self._trainer.state.loaded_loops = FitProgress.from_state_dict(state_dict)
        except (KeyError, TypeError) as error:
            raise ValueError(
                f"`fit_loop.load_state_dict` expects a checkpoint's `loops/fit_loop` entry; this one lacks {error}."
                " Pass `torch.load(path)['loops']['fit_loop']`."
            ) from error

    def reset(self) -> None:
        """Lightning's `fit_loop.reset()` on loaded counters (see `loop_progress.FitProgress.reset_fit`); without
        loaded counters there is nothing to reset."""
        loaded = _loaded(self._trainer.state)
        if loaded is not None:
            loaded.reset_fit()


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
