"""The fit loop as plain functions: run_fit() (optimizers, sanity check, epochs), train_epoch() (batches,
validation checks, epoch end) and the decisions they take (should_validate, fit_done)."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import TYPE_CHECKING, Any

import torch

from fulgor.rank import rank_zero_info, rank_zero_warn
from fulgor.trainer import data, preemption, resume
from fulgor.trainer.dispatch import call_hook, call_module
from fulgor.trainer.eval_loop import run_evaluation
from fulgor.trainer.optimization import step_schedulers, train_batch
from fulgor.trainer.preemption import STOP
from fulgor.trainer.state import RunningStage

if TYPE_CHECKING:
    from fulgor.trainer.trainer import Trainer


def run_fit(trainer: Trainer) -> None:
    """Everything `Trainer.fit` does after setup: optimizers, on_fit_start, sanity check, the epochs."""
    trainer._setup_optimizers()
    call_hook(trainer, "on_fit_start")
    trainer._log_hyperparams()
    run_sanity_check(trainer)
    trainer._stage(RunningStage.TRAINING)
    data.setup_train_data(trainer, create_iterator=False)
    if fit_done(trainer) or trainer.limit_train_batches == 0:
        return
    # The epoch-0 iterator is created here, before `on_train_start`, as Lightning does (random samplers draw then).
    iterator: Iterator[Any] | None = resume.epoch_iterator(trainer, trainer._train_loader)
    data.setup_val_data_for_fit(trainer)
    trainer._validation_enabled = trainer.enable_validation  # decided once, read on every batch
    _warn_eval_modules(trainer)
    call_hook(trainer, "on_train_start")
    run_epoch = _timed(trainer, train_epoch, "run_training_epoch")
    while not fit_done(trainer):
        run_epoch(trainer, iterator)
        iterator = None
    call_hook(trainer, "on_train_end")


def run_sanity_check(trainer: Trainer) -> None:
    """A few validation batches before training, so a broken validation_step fails in seconds, not hours."""
    if not (trainer.enable_validation and trainer.num_sanity_val_steps > 0):
        return
    from fulgor.seed import isolate_rng

    with isolate_rng():  # the sanity check must not change the random stream the training run sees
        trainer._stage(RunningStage.SANITY_CHECKING)
        trainer._metrics.clear()
        call_hook(trainer, "on_sanity_check_start")
        with torch.no_grad():
            run_evaluation(trainer, RunningStage.SANITY_CHECKING)
        call_hook(trainer, "on_sanity_check_end")
        trainer._metrics.clear()
        trainer._stage(RunningStage.TRAINING)
        trainer._results = trainer._train_store


def fit_done(trainer: Trainer) -> bool:
    """Whether fit is over (max_steps, max_epochs, no batches, or a permitted stop), with Lightning's messages."""
    state = trainer.state
    if trainer.num_training_batches == 0:
        rank_zero_info("`Trainer.fit` stopped: No training batches.")
        return True
    if trainer.max_steps != -1 and state.global_step >= trainer.max_steps:
        rank_zero_info(f"`Trainer.fit` stopped: `max_steps={trainer.max_steps!r}` reached.")
        return True
    if trainer.max_epochs is not None and trainer.max_epochs != -1 and state.epoch >= trainer.max_epochs:
        rank_zero_info(f"`Trainer.fit` stopped: `max_epochs={trainer.max_epochs!r}` reached.")
        return True
    return state.should_stop and can_stop_early(trainer)


def can_stop_early(trainer: Trainer) -> bool:
    """A requested stop is honoured only once `min_epochs` and `min_steps` are met."""
    state = trainer.state
    met_epochs = state.epoch >= trainer.min_epochs if trainer.min_epochs else True
    met_steps = state.global_step >= trainer.min_steps if trainer.min_steps else True
    return met_epochs and met_steps


def train_epoch(trainer: Trainer, iterator: Iterator[Any] | None) -> None:
    """One training epoch: each batch with its hooks, validation when due, then the epoch-end hooks and logging."""
    state = trainer.state
    loader = data.reload_train_data_if_due(trainer)
    _set_sampler_epoch(loader, state.epoch)
    state.batch_idx = 0
    state.is_last_batch = False
    state.val_batches_seen = 0  # Lightning's in-fit validation progress counts per training epoch
    store = trainer._train_store
    call_hook(trainer, "on_train_epoch_start")
    if iterator is None:
        iterator = resume.epoch_iterator(trainer, loader)
    start = resume.continue_epoch(trainer) if state.resume_point is not None else 0
    n_batches = trainer.num_training_batches
    limited = iterator if n_batches == inf else islice(iterator, max(int(n_batches) - start, 0))
    batches = _with_last_flag(limited, state, n_batches, start)
    # Per-batch hooks nobody overrides are not even dispatched (resolved once per run, see dispatch.py).
    batch_start, batch_end = ("on_train_batch_start" in trainer._hooks), ("on_train_batch_end" in trainer._hooks)
    transfer = trainer._batch_to_device
    run_batch = _timed(trainer, train_batch, "run_training_batch")
    while not _epoch_done(trainer):
        if STOP.pending or STOP.sync_every:  # two attribute reads per batch; a signal only sets the flag
            preemption.safe_point(trainer, "between_batches")
        batch = next(batches, _END)
        if batch is _END:
            break
        batch_idx = state.batch_idx
        if transfer is not None:
            batch = transfer(batch, 0)
        store.start_batch(batch)
        stepping = _will_step(trainer)
        if batch_start and call_hook(trainer, "on_train_batch_start", batch, batch_idx) == -1:
            state.is_last_batch = True  # skip the rest of the epoch; schedulers still step as on a last batch
            _step_schedulers_after_batch(trainer, batch_idx, stepping=True)
            break
        output = run_batch(trainer, batch, batch_idx, stepping)
        if trainer._legacy is not None:  # collected only when a 1.x `training_epoch_end` is defined
            trainer._legacy.collect_train(output)
        if trainer.lr_scheduler_configs:
            _step_schedulers_after_batch(trainer, batch_idx, stepping)
        if batch_end:
            call_hook(trainer, "on_train_batch_end", output, batch, batch_idx)
        _after_batch(trainer, batch_idx, stepping)
    _end_epoch(trainer)


_END = object()
inf = float("inf")


def _timed(trainer: Trainer, fn: Any, action: str) -> Any:
    """`fn`, or `fn` timed as Lightning's `action` when the run has a real profiler (decided per run/epoch)."""
    if not getattr(trainer, "_profiling", False):
        return fn
    from fulgor.trainer.dispatch import profiled

    return profiled(trainer.profiler, fn, action)


def _after_batch(trainer: Trainer, batch_idx: int, stepping: bool) -> None:
    """Step logging, validation when due, plateau schedulers, and the counters, after `on_train_batch_end`."""
    state = trainer.state
    store = trainer._train_store
    store.flush(trainer._metrics)
    state.batch_idx += 1
    state.total_batch_idx += 1
    if stepping and (trainer._should_log_step() or trainer.fast_dev_run):
        trainer._log_metrics(store.step_log_metrics())
    if should_validate(trainer):
        _validate_in_fit(trainer, stepping)
    _after_validation(trainer, batch_idx, stepping)


def _after_validation(trainer: Trainer, batch_idx: int, stepping: bool) -> None:
    """The end of a batch cycle after its validation check: plateau schedulers, the logging step, loggers on stop."""
    state = trainer.state
    if trainer.lr_scheduler_configs and stepping:
        step_schedulers(trainer, "step", plateau=True, batch_idx=batch_idx)
    if stepping:
        state.batches_that_stepped += 1
    if state.should_stop:
        trainer._save_loggers()


def _will_step(trainer: Trainer) -> bool:
    """False while accumulating: the optimizer steps every `accumulate_grad_batches` and on the last batch."""
    state = trainer.state
    accumulate = trainer.accumulate_grad_batches
    return accumulate == 1 or (state.batch_idx + 1) % accumulate == 0 or _is_last_ready(trainer)


def _is_last_ready(trainer: Trainer) -> bool:
    state = trainer.state
    return state.batch_idx + 1 == trainer.num_training_batches or state.is_last_batch


def _step_schedulers_after_batch(trainer: Trainer, batch_idx: int, stepping: bool) -> None:
    if not trainer.lr_scheduler_configs:
        return
    if stepping:
        step_schedulers(trainer, "step", plateau=False, batch_idx=batch_idx)
    if _is_last_ready(trainer):
        step_schedulers(trainer, "epoch", plateau=False, batch_idx=batch_idx)


def _epoch_done(trainer: Trainer) -> bool:
    """Before each batch: stop at max_steps or after the last batch, or on a stop request that may be honoured."""
    state = trainer.state
    if (trainer.max_steps != -1 and state.global_step >= trainer.max_steps) or state.is_last_batch:
        return True
    if state.should_stop:
        if can_stop_early(trainer):
            return True
        rank_zero_info(
            f"Trainer was signaled to stop but the required `min_epochs={trainer.min_epochs!r}` or"
            f" `min_steps={trainer.min_steps!r}` has not been met. Training will continue..."
        )
    return False


def should_validate(trainer: Trainer) -> bool:
    """Lightning's validation schedule: the epoch filter, then the batch interval (per epoch or across epochs)."""
    if not _validation_epoch(trainer):
        return False
    state = trainer.state
    if state.is_last_batch and trainer.val_check_batch == float("inf"):
        return True
    if state.should_stop and can_stop_early(trainer):
        return True
    if trainer._val_check_time_interval is not None:
        return trainer._time_for_validation()
    if isinstance(trainer.limit_train_batches, int) and trainer.val_check_batch == float("inf"):
        return state.batch_idx % trainer.limit_train_batches == 0
    if trainer.val_check_batch != float("inf"):
        current = state.total_batch_idx if trainer.check_val_every_n_epoch is None else state.batch_idx
        return current % int(trainer.val_check_batch) == 0
    return state.is_last_batch


def _validation_epoch(trainer: Trainer) -> bool:
    every = trainer.check_val_every_n_epoch
    return trainer._validation_enabled and (every is None or (trainer.current_epoch + 1) % every == 0)


def _validate_in_fit(trainer: Trainer, stepping: bool) -> None:
    resume.before_validation(trainer)  # a checkpoint taken inside this validation resumes by running it again
    if stepping:
        call_module(trainer, "on_validation_model_zero_grad")
    trainer._stage(RunningStage.VALIDATING)
    data.reload_val_data_if_due(trainer)
    with torch.no_grad():
        run_evaluation(trainer, RunningStage.VALIDATING)
    trainer._stage(RunningStage.TRAINING)
    trainer._results = trainer._train_store


def _end_epoch(trainer: Trainer) -> None:
    """Epoch-end hooks (monitoring callbacks after the module), epoch schedulers, epoch-level logging."""
    state = trainer.state
    store = trainer._train_store
    store.in_epoch_phase = True
    if trainer._legacy is not None:  # 1.x `training_epoch_end(outputs)` runs before the epoch-end hooks
        trainer._legacy.epoch_end("train")
    call_hook(trainer, "on_train_epoch_end")
    store.flush(trainer._metrics)
    if trainer.lr_scheduler_configs and (state.batch_idx == trainer.num_training_batches or state.is_last_batch):
        step_schedulers(trainer, "epoch", plateau=True, batch_idx=state.batch_idx)
    # Epoch rows carry the step of the epoch's last batch (and the epoch number), as Lightning's loggers expect.
    state.batches_that_stepped -= 1
    trainer._log_metrics(store.epoch_metrics(None, trainer._metrics))
    state.batches_that_stepped += 1
    store.reset()
    state.epoch += 1


def _with_last_flag(batches: Iterator[Any], state: Any, n_batches: int | float, start: int = 0) -> Iterator[Any]:
    """Yield batches, setting `state.is_last_batch` before each one (with one batch of look-ahead if unsized);
    `start` batches of the epoch were run before a resume."""
    if n_batches != float("inf"):
        for i, batch in enumerate(batches, start):
            state.is_last_batch = i + 1 == n_batches
            yield batch
        return
    iterator = iter(batches)
    try:
        batch = next(iterator)
    except StopIteration:
        return
    for upcoming in iterator:
        state.is_last_batch = False
        yield batch
        batch = upcoming
    state.is_last_batch = True
    yield batch


def _set_sampler_epoch(loader: Any, epoch: int) -> None:
    """Tell samplers that shuffle per epoch (e.g. DistributedSampler) which epoch this is."""
    for obj in (getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
        set_epoch = getattr(obj, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)


def _warn_eval_modules(trainer: Trainer) -> None:
    count = sum(1 for m in trainer.lightning_module.modules() if not m.training)
    if count:
        rank_zero_warn(
            f"Found {count} module(s) in eval mode at the start of training."
            " This may lead to unexpected behavior during training. If this is intentional,"
            " you can ignore this warning."
        )
