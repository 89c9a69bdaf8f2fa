"""What a checkpoint holds: the dict in Lightning's layout and key order (weights, loops progress, callbacks,
optimizers, schedulers, hparams, datamodule state), built with the save hooks, and `Trainer.save_checkpoint`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fulgor.checkpoint_io import resume_record
from fulgor.rank import rank_zero_info
from fulgor.trainer import finite_guard, resume
from fulgor.trainer.dispatch import call_hook
from fulgor.trainer.state import LoopPhase, RunningStage, TrainerFn, TrainerStatus

if TYPE_CHECKING:
    from fulgor.trainer.run import Run

__all__ = [
    "FORMAT_VERSION",
    "build_checkpoint",
    "save_trainer_checkpoint",
]

# The layout version written under "pytorch-lightning_version": Lightning migrates checkpoints older than its own
# version, so fulgor writes the Lightning version whose layout it produces.
FORMAT_VERSION = "2.6.6"
VERSION_KEY = "pytorch-lightning_version"


def save_trainer_checkpoint(run: Run | None, filepath: Any, weights_only: bool | None, storage_options: Any) -> None:
    """`Trainer.save_checkpoint`: build the dict of the current (or last) `run` (running the save hooks on every rank)
    and write it on rank 0 through the strategy's checkpoint IO plugin (`TorchCheckpointIO`: atomic commit, with
    fulgor's exact-resume record beside Lightning's keys)."""
    if run is None:
        raise AttributeError(
            "Saving a checkpoint is only possible if a model is attached to the Trainer. Did you call"
            " `Trainer.save_checkpoint()` before calling `Trainer.{fit,validate,test,predict}`?"
        )
    finite_guard.check(run, "before writing a checkpoint")  # never a checkpoint of weights a NaN loss updated
    if weights_only is None:
        weights_only = False
        rank_zero_info("`weights_only` was not set, defaulting to `False`.")
    checkpoint = build_checkpoint(run, weights_only)
    extra = None if weights_only else resume.capture(run)  # exact-resume state, beside Lightning's keys
    with resume_record(checkpoint, None if extra is None else {resume.RESUME_KEY: extra}):
        run.strategy.save_checkpoint(checkpoint, filepath, storage_options=storage_options)
    run.strategy.barrier()


def build_checkpoint(run: Run, weights_only: bool) -> dict[str, Any]:
    """The checkpoint dict, keys in Lightning's order, with the hooks in Lightning's order."""
    module, datamodule, state = run.module, run.datamodule, run.state
    checkpoint: dict[str, Any] = {
        "epoch": state.epoch,
        "global_step": state.global_step,
        VERSION_KEY: FORMAT_VERSION,
        "state_dict": _module_state(run),
        "loops": build_loops(run),
    }
    if not weights_only:
        checkpoint["callbacks"] = {cb.state_key: s for cb in run.trainer.callbacks if (s := cb.state_dict())}
        checkpoint["optimizer_states"] = [_optimizer_state(run, opt) for opt in run.optimizers]
        checkpoint["lr_schedulers"] = [config.scheduler.state_dict() for config in run.lr_scheduler_configs]
        precision_state = run.precision.state_dict()
        if precision_state:
            checkpoint[run.precision.checkpoint_key] = precision_state
    for obj in (module, datamodule):
        _dump_hparams(obj, checkpoint)
    if datamodule is not None:
        dm_state = datamodule.state_dict()
        if dm_state:
            checkpoint[type(datamodule).__qualname__] = dm_state
    if weights_only:  # Lightning calls only the module's hook for weights-only checkpoints
        module.on_save_checkpoint(checkpoint)
    else:
        call_hook(run, "on_save_checkpoint", checkpoint)
    return checkpoint


def _module_state(run: Run) -> dict[str, Any]:
    # A sharding strategy (FSDP) gathers the full state dict; the others hold it whole in the module.
    gather = getattr(run.strategy, "lightning_module_state_dict", None)
    return gather() if gather is not None else run.module.state_dict()


def _optimizer_state(run: Run, optimizer: Any) -> dict[str, Any]:
    gather = getattr(run.strategy, "optimizer_state", None)
    return gather(optimizer) if gather is not None else optimizer.state_dict()  # type: ignore[no-any-return]


def _dump_hparams(obj: Any, checkpoint: dict[str, Any]) -> None:
    if obj is None:
        return
    hparams = obj.__dict__.get("_hparams")
    if not hparams:
        return
    if hasattr(obj, "_hparams_name"):
        checkpoint[obj.CHECKPOINT_HYPER_PARAMS_NAME] = obj._hparams_name
    checkpoint[obj.CHECKPOINT_HYPER_PARAMS_KEY] = dict(hparams)


def _progress(n_ready: int, n_started: int, n_processed: int, n_completed: int) -> dict[str, int]:
    return {"ready": n_ready, "started": n_started, "processed": n_processed, "completed": n_completed}


def _both(counts: dict[str, int], current: dict[str, int] | None = None) -> dict[str, dict[str, int]]:
    return {"total": dict(counts), "current": dict(current if current is not None else counts)}


def build_loops(run: Run) -> dict[str, Any]:
    """Lightning's nested `loops` progress, computed from `run.state` (Lightning resumes from it)."""
    state = run.state
    phase = _fit_phase(run)
    epoch = state.epoch
    if phase == LoopPhase.OUTSIDE_EPOCH:
        epochs = _progress(epoch, epoch, epoch, epoch)
    elif phase == LoopPhase.EPOCH_END:
        epochs = _progress(epoch + 1, epoch + 1, epoch + 1, epoch)
    else:
        epochs = _progress(epoch + 1, epoch + 1, epoch, epoch)
    # In on_train_batch_end the batch is processed but `batch_idx` has not moved yet (Lightning: processed > completed).
    in_batch_end = phase == LoopPhase.BATCH_END
    done, total = state.batch_idx, state.total_batch_idx
    extra = 1 if in_batch_end else 0
    batches = {
        "total": _progress(total + extra, total + extra, total + extra, total),
        "current": _progress(done + extra, done + extra, done + extra, done),
        "is_last_batch": bool(state.is_last_batch),
    }
    automatic = run.module.automatic_optimization
    steps = (state.global_step, _steps_this_epoch(run))
    auto = [n if automatic else 0 for n in steps]
    manual = [0 if automatic else n for n in steps]
    step_counts = _two({"ready": auto[0], "completed": auto[0]}, {"ready": auto[1], "completed": auto[1]})
    zero_grad = _two({"ready": auto[0], "completed": auto[0], "started": auto[0]},
                     {"ready": auto[1], "completed": auto[1], "started": auto[1]})  # fmt: skip
    manual_counts = _two({"ready": manual[0], "completed": manual[0]}, {"ready": manual[1], "completed": manual[1]})
    val_seen = state.val_batches_seen
    val_current = min(val_seen, int(sum(_finite(n) for n in run.limits.get(RunningStage.VALIDATING, []))))
    return {
        "fit_loop": {
            "state_dict": {},
            "epoch_progress": _both(epochs),
            "epoch_loop.state_dict": {"_batches_that_stepped": state.batches_that_stepped},
            "epoch_loop.batch_progress": batches,
            "epoch_loop.scheduler_progress": _scheduler_progress(run, epochs["processed"]),
            "epoch_loop.automatic_optimization.state_dict": {},
            "epoch_loop.automatic_optimization.optim_progress": {
                "optimizer": {"step": step_counts, "zero_grad": zero_grad}
            },
            "epoch_loop.manual_optimization.state_dict": {},
            "epoch_loop.manual_optimization.optim_step_progress": manual_counts,
            "epoch_loop.val_loop.state_dict": {},
            "epoch_loop.val_loop.batch_progress": {
                "total": _progress(val_seen, val_seen, val_seen, val_seen),
                "current": _progress(val_current, val_current, val_current, val_current),
                "is_last_batch": val_seen > 0,
            },
        },
        "validate_loop": _eval_loop_progress(),
        "test_loop": _eval_loop_progress(),
        "predict_loop": {"state_dict": {}, "batch_progress": _both(_progress(0, 0, 0, 0))},
    }


def _two(total: dict[str, int], current: dict[str, int]) -> dict[str, dict[str, int]]:
    return {"total": total, "current": current}


def _fit_phase(run: Run) -> LoopPhase:
    """The loop's phase as Lightning's progress counters see it: outside an epoch unless a fit is running."""
    state = run.state
    if run.fn != TrainerFn.FITTING or state.status != TrainerStatus.RUNNING:
        return LoopPhase.OUTSIDE_EPOCH
    return state.phase


def _steps_this_epoch(run: Run) -> int:
    """Optimizer steps taken in the current epoch (every `accumulate_grad_batches` batches and at the last one)."""
    state = run.state
    accumulate = int(run.config.accumulate_grad_batches)
    done = int(state.batch_idx)
    return done // accumulate + (1 if state.is_last_batch and done % accumulate else 0)


def _eval_loop_progress() -> dict[str, Any]:
    return {"state_dict": {}, "batch_progress": {**_both(_progress(0, 0, 0, 0)), "is_last_batch": False}}


def _finite(n: int | float) -> int | float:
    return 0 if n == float("inf") else n


def _scheduler_progress(run: Run, epochs: int) -> dict[str, dict[str, int]]:
    """Scheduler updates in the fit (`total`) and this epoch (`current`); Lightning only reports these."""
    intervals = {config.interval for config in run.lr_scheduler_configs}
    state = run.state
    by_step, by_epoch = "step" in intervals, "epoch" in intervals
    total = (state.global_step if by_step else 0) + (epochs if by_epoch else 0)
    current = (state.batch_idx if by_step else 0) + (1 if by_epoch and state.is_last_batch else 0)
    return {"total": {"ready": total, "completed": total}, "current": {"ready": current, "completed": current}}
