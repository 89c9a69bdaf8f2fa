"""Lightning's loop progress counters (ready/started/processed/completed, over the run and since the epoch began):
the count classes, the fit loop's counters computed from a run's `TrainerState` (the checkpoint's "loops" entry), and
a loaded copy of them (`trainer.fit_loop.load_state_dict`)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from fulgor.combined_loader import CombinedLoader
from fulgor.trainer.state import LoopPhase, RunningStage, TrainerFn, TrainerStatus

if TYPE_CHECKING:
    from fulgor.trainer.run import Run

__all__ = [
    "BatchProgress",
    "FitProgress",
    "Progress",
    "ProgressCounts",
    "ReadyCompletedCounts",
    "StartedCounts",
    "build_loops",
    "fit_progress",
]

_INF = float("inf")
# How far a batch has gone: 1 = ready (fetched), 2 = started (its step runs), 3 = processed.
_READY, _STARTED, _PROCESSED = 1, 2, 3


class _Counts:
    """What the count classes share: a dict of their fields, and Lightning's resets."""

    ready: int
    completed: int

    def state_dict(self) -> dict[str, int]:
        """The counts as a checkpoint stores them."""
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Set the counts from `state_dict` (as `state_dict()` returns it)."""
        for f in fields(self):  # type: ignore[arg-type]
            setattr(self, f.name, int(state_dict[f.name]))

    def reset(self) -> None:
        """Every count back to 0."""
        for f in fields(self):  # type: ignore[arg-type]
            setattr(self, f.name, 0)

    def reset_on_restart(self) -> None:
        """After a failure: every count back to `completed` (an item that did not complete runs again)."""
        for f in fields(self):  # type: ignore[arg-type]
            setattr(self, f.name, self.completed)


@dataclass
class ReadyCompletedCounts(_Counts):
    """Events ready to run and completed (optimizer steps, scheduler updates)."""

    ready: int = 0
    completed: int = 0


@dataclass
class StartedCounts(_Counts):
    """Events ready, started and completed (`zero_grad` calls)."""

    ready: int = 0
    started: int = 0
    completed: int = 0


@dataclass
class ProgressCounts(_Counts):
    """Items ready (fetched), started, processed and completed (batches, epochs)."""

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

    total: Any = field(default_factory=ProgressCounts)
    current: Any = field(default_factory=ProgressCounts)

    @classmethod
    def of(cls, kind: type[_Counts], state_dict: dict[str, Any]) -> Progress:
        """A progress with counts of `kind`, loaded from `state_dict`."""
        progress = cls(kind(), kind())
        progress.load_state_dict(state_dict)
        return progress

    def state_dict(self) -> dict[str, Any]:
        """`{"total": {...}, "current": {...}}` as a checkpoint stores it."""
        return {"total": self.total.state_dict(), "current": self.current.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.total.load_state_dict(state_dict["total"])
        self.current.load_state_dict(state_dict["current"])

    def reset(self) -> None:
        self.total.reset()
        self.current.reset()

    def reset_on_run(self) -> None:
        """A new epoch or evaluation: `current` starts again from 0."""
        self.current.reset()

    def reset_on_restart(self) -> None:
        """After a failure: `current` back to its completed count."""
        self.current.reset_on_restart()


@dataclass
class BatchProgress(Progress):
    """Batch counts, and whether the batch fetched last is the last one of the epoch or evaluation."""

    is_last_batch: bool = False

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "is_last_batch": self.is_last_batch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.is_last_batch = bool(state_dict["is_last_batch"])

    def reset_on_run(self) -> None:
        super().reset_on_run()
        self.is_last_batch = False


def _rc(total: int, current: int, ready_extra: int = 0) -> Progress:
    return Progress(
        ReadyCompletedCounts(total + ready_extra, total), ReadyCompletedCounts(current + ready_extra, current)
    )


def _started(total: int, current: int) -> Progress:
    return Progress(StartedCounts(total, total, total), StartedCounts(current, current, current))


@dataclass
class FitProgress:
    """Every counter of Lightning's fit loop (`checkpoint["loops"]["fit_loop"]`), and whether each loop restarts."""

    epoch_progress: Progress
    batch_progress: BatchProgress
    scheduler_progress: Progress
    optimizer_step: Progress
    zero_grad: Progress
    manual_step: Progress
    val_batch_progress: BatchProgress
    batches_that_stepped: int
    loop_state: dict[str, Any] = field(default_factory=dict)  # "combined_loader": the stateful loaders' states
    restarting: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(("fit", "epoch", "optim"), False))

    def state_dict(self) -> dict[str, Any]:
        """Lightning's `fit_loop.state_dict()`, keys in its order."""
        return {
            "state_dict": dict(self.loop_state),
            "epoch_progress": self.epoch_progress.state_dict(),
            "epoch_loop.state_dict": {"_batches_that_stepped": self.batches_that_stepped},
            "epoch_loop.batch_progress": self.batch_progress.state_dict(),
            "epoch_loop.scheduler_progress": self.scheduler_progress.state_dict(),
            "epoch_loop.automatic_optimization.state_dict": {},
            "epoch_loop.automatic_optimization.optim_progress": {
                "optimizer": {"step": self.optimizer_step.state_dict(), "zero_grad": self.zero_grad.state_dict()}
            },
            "epoch_loop.manual_optimization.state_dict": {},
            "epoch_loop.manual_optimization.optim_step_progress": self.manual_step.state_dict(),
            "epoch_loop.val_loop.state_dict": {},
            "epoch_loop.val_loop.batch_progress": self.val_batch_progress.state_dict(),
        }

    @classmethod
    def zeros(cls) -> FitProgress:
        """Counters before any fit (what the loop views show, and keep what is assigned to them, until one runs)."""
        return cls(
            epoch_progress=Progress(),
            batch_progress=BatchProgress(),
            scheduler_progress=_rc(0, 0),
            optimizer_step=_rc(0, 0),
            zero_grad=_started(0, 0),
            manual_step=_rc(0, 0),
            val_batch_progress=BatchProgress(),
            batches_that_stepped=0,
        )

    @classmethod
    def from_state_dict(cls, state_dict: dict[str, Any]) -> FitProgress:
        """The counters of a checkpoint's `loops/fit_loop` entry; every loop restarting, as after Lightning's load."""
        optimizer = state_dict["epoch_loop.automatic_optimization.optim_progress"]["optimizer"]
        epoch_loop_state = state_dict.get("epoch_loop.state_dict", {})
        batches, val = BatchProgress(), BatchProgress()
        batches.load_state_dict(state_dict["epoch_loop.batch_progress"])
        val.load_state_dict(state_dict["epoch_loop.val_loop.batch_progress"])
        return cls(
            epoch_progress=Progress.of(ProgressCounts, state_dict["epoch_progress"]),
            batch_progress=batches,
            scheduler_progress=Progress.of(ReadyCompletedCounts, state_dict["epoch_loop.scheduler_progress"]),
            optimizer_step=Progress.of(ReadyCompletedCounts, optimizer["step"]),
            zero_grad=Progress.of(StartedCounts, optimizer["zero_grad"]),
            manual_step=Progress.of(
                ReadyCompletedCounts, state_dict["epoch_loop.manual_optimization.optim_step_progress"]
            ),
            val_batch_progress=val,
            batches_that_stepped=int(epoch_loop_state.get("_batches_that_stepped", 0)),
            loop_state=dict(state_dict.get("state_dict", {})),
            restarting=dict.fromkeys(("fit", "epoch", "optim"), True),
        )

    def reset_fit(self) -> None:
        """Lightning's `fit_loop.reset()` on restart: a checkpoint taken as an epoch was about to start runs that
        epoch again; one taken in the last batch's `on_train_batch_end` restarts with that epoch complete."""
        epochs, batches = self.epoch_progress, self.batch_progress
        if self.restarting["fit"] and epochs.current.ready > epochs.current.started:
            epochs.reset_on_restart()
        saved_in_batch_end = batches.current.processed > batches.current.completed
        if self.restarting["fit"] and saved_in_batch_end and batches.is_last_batch:
            epochs.total.completed = epochs.total.processed = epochs.total.ready
            epochs.current.completed = epochs.current.processed = epochs.current.ready

    def reset_epoch(self, num_training_batches: int | float, accumulate_grad_batches: int) -> None:
        """Lightning's `epoch_loop.reset()` on restart: the logging step moves past a batch that stepped, the batch
        saved in `on_train_batch_end` counts as completed (a new epoch starts if it was the last); every unfinished
        count goes back to its completed value."""
        batches = self.batch_progress
        ready = batches.current.ready
        stepped = ready % accumulate_grad_batches == 0 or ready == num_training_batches or batches.is_last_batch
        if self.restarting["epoch"] and stepped:
            self.batches_that_stepped += 1
        if not self.restarting["epoch"]:
            batches.reset_on_run()
            self.scheduler_progress.reset_on_run()
            self.optimizer_step.reset_on_run()
            self.zero_grad.reset_on_run()
            return
        if batches.current.processed > batches.current.completed:
            batches.total.completed += 1
            batches.current.completed += 1
            if batches.current.completed >= num_training_batches:
                for progress in (batches, self.scheduler_progress, self.optimizer_step, self.zero_grad):
                    progress.reset_on_run()
                self.val_batch_progress.total.reset()
        for progress in (batches, self.scheduler_progress, self.optimizer_step, self.zero_grad):
            progress.reset_on_restart()


# ---------------------------------------------------------------------------------------------------------------------
# computed from the run


def _fit_phase(run: Run) -> LoopPhase:
    """The loop's phase as Lightning's counters see it: outside an epoch unless a fit is running or was interrupted
    (an `on_exception` checkpoint shows where the exception stopped it)."""
    state = run.state
    if run.fn != TrainerFn.FITTING or state.status not in (TrainerStatus.RUNNING, TrainerStatus.INTERRUPTED):
        return LoopPhase.OUTSIDE_EPOCH
    return state.phase


def fit_progress(run: Run) -> FitProgress:
    """The fit loop's counters as Lightning's would be at this point of `run` (the loaded ones after
    `fit_loop.load_state_dict`)."""
    if run.state.loaded_loops is not None:
        return run.state.loaded_loops  # type: ignore[no-any-return]
    state = run.state
    phase = _fit_phase(run)
    interrupted = state.status == TrainerStatus.INTERRUPTED
    failed = state.failed_batch if interrupted else 0
    in_batch = phase == LoopPhase.BETWEEN_BATCHES
    position = _PROCESSED if phase == LoopPhase.BATCH_END else (failed if in_batch else 0)
    done = state.batch_idx
    stale = state.stale_counts
    total = ProgressCounts.at(state.total_batch_idx, position)
    if stale:
        total.ready += stale.get("batch_ready", 0)
        total.started += stale.get("batch_started", 0)
    batches = BatchProgress(total, ProgressCounts.at(done, position), bool(state.is_last_batch))
    processed = done + (position == _PROCESSED)
    last_done = bool(state.is_last_batch) and not in_batch  # the epoch's last batch has run (schedulers stepped)
    accumulate = int(run.config.accumulate_grad_batches)
    steps_now = processed // accumulate + (1 if last_done and processed % accumulate else 0)
    zero_grads_now = -(-processed // accumulate)
    stepping = accumulate == 1 or (done + 1) % accumulate == 0 or bool(state.is_last_batch)
    step_ready = 1 if in_batch and failed >= _STARTED and stepping else 0
    earlier = state.global_step - steps_now  # steps of the epochs before this one
    automatic = bool(run.module.automatic_optimization)
    auto, manual = (1, 0) if automatic else (0, 1)
    return FitProgress(
        epoch_progress=_epoch_progress(state.epoch, phase),
        batch_progress=batches,
        # Manual optimization: the user steps the schedulers, and the step count's `current` is never reset.
        scheduler_progress=_scheduler_progress(run, phase, steps_now, last_done) if automatic else _rc(0, 0),
        optimizer_step=_with_stale_ready(
            _rc(state.global_step * auto, steps_now * auto, step_ready * auto), stale.get("step_ready", 0) * auto
        ),
        zero_grad=_started((earlier + zero_grads_now) * auto, zero_grads_now * auto),
        manual_step=_rc(state.global_step * manual, state.global_step * manual),
        val_batch_progress=_fit_validation_progress(
            run, state.failed_eval_batch if interrupted and phase == LoopPhase.VALIDATING else 0
        ),
        batches_that_stepped=state.batches_that_stepped,
        loop_state=_loader_states(run.train_loader),
    )


def stateful_loaders(loader: Any) -> list[Any]:
    """The training loader's iterables (each of a CombinedLoader's) that have `state_dict`/`load_state_dict`."""
    iterables = loader.flattened if isinstance(loader, CombinedLoader) else [] if loader is None else [loader]
    return [it for it in iterables if callable(getattr(it, "state_dict", None)) and hasattr(it, "load_state_dict")]


def _loader_states(loader: Any) -> dict[str, Any]:
    """Lightning's `fit_loop` "state_dict": the states of the stateful training iterables, if there are any."""
    states = [it.state_dict() for it in stateful_loaders(loader)]
    return {"combined_loader": states} if states else {}


def _epoch_progress(epoch: int, phase: LoopPhase) -> Progress:
    if phase == LoopPhase.OUTSIDE_EPOCH:
        counts = ProgressCounts(epoch, epoch, epoch, epoch)
    elif phase == LoopPhase.EPOCH_END:
        counts = ProgressCounts(epoch + 1, epoch + 1, epoch + 1, epoch)
    else:
        counts = ProgressCounts(epoch + 1, epoch + 1, epoch, epoch)
    return Progress(counts, ProgressCounts(**counts.state_dict()))


def _scheduler_progress(run: Run, phase: LoopPhase, steps_now: int, last_done: bool) -> Progress:
    """Scheduler updates in the fit (`total`) and this epoch (`current`)."""
    intervals = {config.interval for config in run.lr_scheduler_configs}
    state = run.state
    by_step, by_epoch = "step" in intervals, "epoch" in intervals
    epoch_now = 1 if by_epoch and last_done else 0
    current = (steps_now if by_step else 0) + epoch_now
    earlier_epochs = state.epoch if by_epoch else 0
    in_epoch = phase != LoopPhase.OUTSIDE_EPOCH
    total = (state.global_step if by_step else 0) + earlier_epochs + (epoch_now if in_epoch else 0)
    return _rc(total, current)


def planned_validation_batches(run: Run) -> int | float:
    """Batches one validation inside fit runs (all its dataloaders)."""
    return sum(n for n in run.limits.get(RunningStage.VALIDATING, []) if n != _INF) or _INF


def _fit_validation_progress(run: Run, position: int) -> BatchProgress:
    """The validation inside fit: `total` counts this epoch's validation batches, `current` those of the running (or
    last) validation; `position`: how far an interrupted validation batch had gone."""
    state = run.state
    seen = state.val_batches_seen
    planned = planned_validation_batches(run)
    before = state.pre_validation[1] if state.pre_validation is not None else 0
    if state.pre_validation is not None and seen <= before and state.phase != LoopPhase.VALIDATING:
        # A new epoch has not validated yet: `current` still shows the last whole validation.
        last = ProgressCounts.at(int(planned) if planned != _INF else 0, 0)
        return BatchProgress(ProgressCounts.at(seen, 0), last, True)
    total = ProgressCounts.at(seen, position)
    stale = state.stale_counts
    val_epoch = stale.get("val_epoch", -2)
    if state.epoch == val_epoch or (state.epoch == val_epoch + 1 and state.phase == LoopPhase.OUTSIDE_EPOCH):
        total.ready += stale.get("val_ready", 0)
        total.started += stale.get("val_started", 0)
    current = ProgressCounts.at(seen - before, position)
    return BatchProgress(total, current, current.ready > 0 and current.ready == planned)


def _with_stale_ready(progress: Progress, extra: int) -> Progress:
    progress.total.ready += extra
    return progress


def stale_counts(fit_loop: dict[str, Any], epoch: int) -> dict[str, int]:
    """What of a checkpoint's `loops/fit_loop` totals Lightning keeps as stale after resuming from it: the counts of
    a batch an exception interrupted (fetched or started, never processed). Empty for every other checkpoint."""
    batches = fit_loop["epoch_loop.batch_progress"]["total"]
    step = fit_loop["epoch_loop.automatic_optimization.optim_progress"]["optimizer"]["step"]["total"]
    val = fit_loop["epoch_loop.val_loop.batch_progress"]["total"]
    found = {
        "batch_ready": batches["ready"] - batches["processed"],
        "batch_started": batches["started"] - batches["processed"],
        "step_ready": step["ready"] - step["completed"],
        "val_ready": val["ready"] - val["processed"],
        "val_started": val["started"] - val["processed"],
    }
    found = {name: n for name, n in found.items() if n > 0}
    if found:
        found["val_epoch"] = epoch
    return found


def build_loops(run: Run) -> dict[str, Any]:
    """Lightning's `checkpoint["loops"]`: the fit loop's counters, and the other loops' (untouched during a fit)."""
    return {
        "fit_loop": fit_progress(run).state_dict(),
        "validate_loop": _eval_loop_progress(),
        "test_loop": _eval_loop_progress(),
        "predict_loop": {"state_dict": {}, "batch_progress": Progress().state_dict()},
    }


def _eval_loop_progress() -> dict[str, Any]:
    return {"state_dict": {}, "batch_progress": BatchProgress().state_dict()}
