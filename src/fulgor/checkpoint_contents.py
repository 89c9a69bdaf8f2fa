"""What a checkpoint holds: the dict in Lightning's layout and key order (weights, loops progress, callbacks,
optimizers, schedulers, hparams, datamodule state), built with the save hooks, and `Trainer.save_checkpoint`."""

from __future__ import annotations

from typing import Any

from fulgor.checkpointing import atomic_save
from fulgor.rank import rank_zero_info

__all__ = [
    "FORMAT_VERSION",
    "build_checkpoint",
    "save_trainer_checkpoint",
]

# The layout version written under "pytorch-lightning_version": Lightning migrates checkpoints older than its own
# version, so fulgor writes the Lightning version whose layout it produces.
FORMAT_VERSION = "2.6.6"
VERSION_KEY = "pytorch-lightning_version"


def save_trainer_checkpoint(trainer: Any, filepath: Any, weights_only: bool | None, storage_options: Any) -> None:
    """`Trainer.save_checkpoint`: build the dict (running the save hooks on every rank) and commit it on rank 0."""
    if getattr(trainer, "lightning_module_", None) is None:
        raise AttributeError(
            "Saving a checkpoint is only possible if a model is attached to the Trainer. Did you call"
            " `Trainer.save_checkpoint()` before calling `Trainer.{fit,validate,test,predict}`?"
        )
    if storage_options is not None:
        raise TypeError(
            f"`Trainer.save_checkpoint(..., storage_options={storage_options!r})` is not supported: fulgor writes"
            " local files only. Remove `storage_options`."
        )
    if weights_only is None:
        weights_only = False
        rank_zero_info("`weights_only` was not set, defaulting to `False`.")
    checkpoint = build_checkpoint(trainer, weights_only)
    from fulgor.trainer import resume

    extra = None if weights_only else resume.capture(trainer)  # exact-resume state, beside Lightning's keys
    if trainer.is_global_zero:
        atomic_save(checkpoint, filepath, None if extra is None else {resume.RESUME_KEY: extra})
    trainer.strategy.barrier()


def build_checkpoint(trainer: Any, weights_only: bool) -> dict[str, Any]:
    """The checkpoint dict, keys in Lightning's order, with the hooks in Lightning's order."""
    module = trainer.lightning_module
    datamodule = trainer.datamodule
    checkpoint: dict[str, Any] = {
        "epoch": trainer.current_epoch,
        "global_step": trainer.global_step,
        VERSION_KEY: FORMAT_VERSION,
        "state_dict": _module_state(trainer, module),
        "loops": build_loops(trainer),
    }
    if not weights_only:
        checkpoint["callbacks"] = {cb.state_key: s for cb in trainer.callbacks if (s := cb.state_dict())}
        checkpoint["optimizer_states"] = [_optimizer_state(trainer, opt) for opt in trainer.optimizers]
        checkpoint["lr_schedulers"] = [config.scheduler.state_dict() for config in trainer.lr_scheduler_configs]
        precision_state = trainer.precision_plugin.state_dict()
        if precision_state:
            checkpoint[trainer.precision_plugin.checkpoint_key] = precision_state
    for obj in (module, datamodule):
        _dump_hparams(obj, checkpoint)
    if datamodule is not None:
        dm_state = datamodule.state_dict()
        if dm_state:
            checkpoint[type(datamodule).__qualname__] = dm_state
    from fulgor.trainer.dispatch import call_hook

    if weights_only:  # Lightning calls only the module's hook for weights-only checkpoints
        module.on_save_checkpoint(checkpoint)
    else:
        call_hook(trainer, "on_save_checkpoint", checkpoint)
    return checkpoint


def _module_state(trainer: Any, module: Any) -> dict[str, Any]:
    # A sharding strategy (FSDP) gathers the full state dict; the others hold it whole in the module.
    gather = getattr(getattr(trainer, "strategy", None), "lightning_module_state_dict", None)
    return gather() if gather is not None else module.state_dict()  # type: ignore[no-any-return]


def _optimizer_state(trainer: Any, optimizer: Any) -> dict[str, Any]:
    gather = getattr(getattr(trainer, "strategy", None), "optimizer_state", None)
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


def _epoch_phase(trainer: Any) -> str:
    """Where the fit is when saving: "boundary" (between epochs), "end" (in on_train_epoch_end), or "inside"."""
    state = trainer.state
    if _value(state.fn) != "fit" or _value(state.status) != "running":
        return "boundary"
    fx = trainer.lightning_module._current_fx_name
    if fx == "on_train_epoch_end":
        return "end"
    if _value(state.stage) in ("train", "validate") and fx not in _OUTSIDE_EPOCH_HOOKS:
        return "inside"
    return "boundary"


_OUTSIDE_EPOCH_HOOKS = frozenset({"on_train_start", "on_train_end", "on_fit_start", "on_fit_end", "teardown", "setup"})


def build_loops(trainer: Any) -> dict[str, Any]:
    """Lightning's nested `loops` progress, computed from `trainer.state` (Lightning resumes from it)."""
    state = trainer.state
    phase = _epoch_phase(trainer)
    epoch = state.epoch
    if phase == "boundary":
        epochs = _progress(epoch, epoch, epoch, epoch)
    elif phase == "end":
        epochs = _progress(epoch + 1, epoch + 1, epoch + 1, epoch)
    else:
        epochs = _progress(epoch + 1, epoch + 1, epoch, epoch)
    # In on_train_batch_end the batch is processed but `batch_idx` has not moved yet (Lightning: processed > completed).
    in_batch_end = phase == "inside" and trainer.lightning_module._current_fx_name == "on_train_batch_end"
    done, total = state.batch_idx, state.total_batch_idx
    extra = 1 if in_batch_end else 0
    batches = {
        "total": _progress(total + extra, total + extra, total + extra, total),
        "current": _progress(done + extra, done + extra, done + extra, done),
        "is_last_batch": bool(state.is_last_batch),
    }
    automatic = trainer.lightning_module.automatic_optimization
    steps = (state.global_step, _steps_this_epoch(trainer))
    auto = [n if automatic else 0 for n in steps]
    manual = [0 if automatic else n for n in steps]
    step_counts = _two({"ready": auto[0], "completed": auto[0]}, {"ready": auto[1], "completed": auto[1]})
    zero_grad = _two({"ready": auto[0], "completed": auto[0], "started": auto[0]},
                     {"ready": auto[1], "completed": auto[1], "started": auto[1]})  # fmt: skip
    manual_counts = _two({"ready": manual[0], "completed": manual[0]}, {"ready": manual[1], "completed": manual[1]})
    val_seen = state.val_batches_seen
    val_current = min(val_seen, int(sum(_finite(n) for n in _num_val(trainer))))
    return {
        "fit_loop": {
            "state_dict": {},
            "epoch_progress": _both(epochs),
            "epoch_loop.state_dict": {"_batches_that_stepped": state.batches_that_stepped},
            "epoch_loop.batch_progress": batches,
            "epoch_loop.scheduler_progress": _scheduler_progress(trainer, epochs["processed"]),
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


def _steps_this_epoch(trainer: Any) -> int:
    """Optimizer steps taken in the current epoch (every `accumulate_grad_batches` batches and at the last one)."""
    state = trainer.state
    accumulate = int(getattr(trainer, "accumulate_grad_batches", 1))
    done = int(state.batch_idx)
    return done // accumulate + (1 if state.is_last_batch and done % accumulate else 0)


def _eval_loop_progress() -> dict[str, Any]:
    return {"state_dict": {}, "batch_progress": {**_both(_progress(0, 0, 0, 0)), "is_last_batch": False}}


def _num_val(trainer: Any) -> list[int | float]:
    try:
        return list(trainer.num_val_batches)
    except Exception:
        return []


def _finite(n: int | float) -> int | float:
    return 0 if n == float("inf") else n


def _scheduler_progress(trainer: Any, epochs: int) -> dict[str, dict[str, int]]:
    """Scheduler updates in the fit (`total`) and this epoch (`current`); Lightning only reports these."""
    intervals = {getattr(config, "interval", "epoch") for config in trainer.lr_scheduler_configs}
    state = trainer.state
    by_step, by_epoch = "step" in intervals, "epoch" in intervals
    total = (state.global_step if by_step else 0) + (epochs if by_epoch else 0)
    current = (state.batch_idx if by_step else 0) + (1 if by_epoch and state.is_last_batch else 0)
    return {"total": {"ready": total, "completed": total}, "current": {"ready": current, "completed": current}}


# Shared with checkpoint_restore (the trainer's fn/stage/status are str enums).
def _value(member: Any) -> Any:
    """The plain value of a str enum member (`TrainerFn.FITTING` -> "fit"), None stays None."""
    return getattr(member, "value", member)
