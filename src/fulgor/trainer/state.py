"""TrainerState: every loop counter of a run and where the loop is (its phase) in one dataclass, with the enums
Lightning exposes (`TrainerFn`, `RunningStage`, `TrainerStatus`) and fulgor's `LoopPhase`."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class TrainerFn(str, Enum):
    """The public entry point that is running."""

    FITTING = "fit"
    VALIDATING = "validate"
    TESTING = "test"
    PREDICTING = "predict"


class RunningStage(str, Enum):
    """The loop that is running right now (a fit alternates between training, sanity check and validation)."""

    TRAINING = "train"
    SANITY_CHECKING = "sanity_check"
    VALIDATING = "validate"
    TESTING = "test"
    PREDICTING = "predict"

    @property
    def evaluating(self) -> bool:
        return self in (RunningStage.VALIDATING, RunningStage.TESTING, RunningStage.SANITY_CHECKING)

    @property
    def dataloader_prefix(self) -> str:
        """The prefix of the `*_dataloader` method and `num_*_batches` attribute of this stage."""
        return {"sanity_check": "val", "validate": "val"}.get(self.value, self.value)


class TrainerStatus(str, Enum):
    """Whether the Trainer is idle, running, finished or interrupted."""

    INITIALIZING = "initializing"
    RUNNING = "running"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"

    @property
    def stopped(self) -> bool:
        return self in (TrainerStatus.FINISHED, TrainerStatus.INTERRUPTED)


class LoopPhase(str, Enum):
    """Where the fit loop is within an epoch's batch cycle, set by the loops at each transition. Checkpoints read it
    (Lightning's `loops` progress, fulgor's exact-resume record) to know what of the cycle is done."""

    OUTSIDE_EPOCH = "boundary"  # before the first epoch, between epochs, after training; also every non-fit run
    BETWEEN_BATCHES = "between_batches"  # in an epoch, up to `on_train_batch_end`: the batch runs again on resume
    BATCH_END = "batch_end"  # in `on_train_batch_end`: the batch is done, its counters not yet advanced
    VALIDATING = "in_validation"  # in a validation inside the epoch: it runs again on resume
    VALIDATION_END = "after_validation"  # from `on_validation_end` to the end of that batch cycle
    EPOCH_END = "epoch_end"  # in `on_train_epoch_end` and the epoch's last bookkeeping

    @property
    def in_epoch(self) -> bool:
        return self not in (LoopPhase.OUTSIDE_EPOCH, LoopPhase.EPOCH_END)


@dataclass
class TrainerState:
    """Where the Trainer is: which function and stage, and the loop counters that must survive a restart."""

    status: TrainerStatus = TrainerStatus.INITIALIZING
    fn: TrainerFn | None = None
    stage: RunningStage | None = None
    epoch: int = 0  # == trainer.current_epoch: epochs completed
    global_step: int = 0  # optimizer steps taken
    batches_that_stepped: int = 0  # the step number loggers see (Lightning's `_batches_that_stepped`)
    batch_idx: int = 0  # index of the next training batch within the epoch
    total_batch_idx: int = 0  # training batches seen in the whole fit (for `check_val_every_n_epoch=None`)
    is_last_batch: bool = False
    should_stop: bool = False
    val_batches_seen: int = 0  # validation batches run during this fit
    predict_batches: int = 0  # predict batches finished by every `predict` so far (`predict_loop.batch_progress`)
    phase: LoopPhase = LoopPhase.OUTSIDE_EPOCH
    # Exact resume (fulgor.trainer.resume): the restored position, waiting for the epoch's iterator; the random
    # streams and validation count before the running in-fit validation.
    resume_point: dict[str, Any] | None = None
    pre_validation: tuple[dict[str, Any], int] | None = None
    # How far the training (and evaluation) batch an exception interrupted had gone (1 fetched, 2 its step running;
    # 0: none), so that the loops progress of an `on_exception` checkpoint counts it as Lightning does.
    failed_batch: int = 0
    failed_eval_batch: int = 0
    # The fit loop's counters as `trainer.fit_loop.load_state_dict` set them (loop_progress.FitProgress): the loop
    # views and `fit_loop.state_dict()` show these instead of the run's until the next fit starts.
    loaded_loops: Any = None
    # After resuming from an `on_exception` checkpoint, Lightning's totals keep counting the interrupted batch as
    # fetched/started: "batch_ready", "batch_started", "step_ready", and for the resumed epoch's validation
    # "val_ready", "val_started" (with "val_epoch"). loop_progress adds them to the totals it reports.
    stale_counts: dict[str, int] = field(default_factory=dict)
    # The batch counts of each loop as last computed (`trainer.num_*_batches`), kept after the run as Lightning's
    # loops keep theirs: "train", "fit_val" (fit's validation), "validate", "test", "predict".
    batch_counts: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status == TrainerStatus.FINISHED

    @property
    def stopped(self) -> bool:
        return self.status.stopped

    def counters(self) -> dict[str, Any]:
        """The counters that must be restored to resume a fit."""
        return {
            "epoch": self.epoch,
            "global_step": self.global_step,
            "batches_that_stepped": self.batches_that_stepped,
            "batch_idx": self.batch_idx,
            "total_batch_idx": self.total_batch_idx,
            "val_batches_seen": self.val_batches_seen,
        }
