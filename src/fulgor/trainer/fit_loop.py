"""The fit loop as plain functions: run_fit() (optimizers, sanity check, epochs), train_epoch() (batches,
validation checks, epoch end) and the decisions they take (should_validate, fit_done). Each transition of the
batch cycle sets `state.phase`, which is what checkpoints read to know where the loop is."""

from __future__ import annotations

import time
from collections.abc import Iterator
from itertools import islice
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

import torch

from fulgor.profiler_base import profiled_next
from fulgor.rank import rank_zero_info, rank_zero_warn
from fulgor.seed import isolate_rng
from fulgor.stop_request import STOP
from fulgor.trainer import data, finite_guard, lifecycle, preemption, resume
from fulgor.trainer.dataloader_iter import DataLoaderIter, loader_triples, takes_dataloader_iter
from fulgor.trainer.dispatch import call_hook, call_module
from fulgor.trainer.eval_loop import run_evaluation
from fulgor.trainer.hook_resolution import profiled
from fulgor.trainer.input_checks import warn_none_batch
from fulgor.trainer.optimization import step_schedulers, train_batch
from fulgor.trainer.state import LoopPhase, RunningStage
from fulgor.trainer.to_loggers import log_metrics, save_loggers, should_log_step

if TYPE_CHECKING:
    from fulgor.trainer.run import Run

# The phases the batch cycle moves through, as module names: reading an Enum member costs ~70 ns, a global ~6, and
# these are read on every batch.
BETWEEN_BATCHES, BATCH_END = LoopPhase.BETWEEN_BATCHES, LoopPhase.BATCH_END
VALIDATING, VALIDATION_END = LoopPhase.VALIDATING, LoopPhase.VALIDATION_END


def run_fit(run: Run) -> None:
    """Everything `Trainer.fit` does after setup: optimizers, on_fit_start, sanity check, the epochs."""
    run.state.failed_batch = run.state.failed_eval_batch = 0
    run.state.stale_counts = {}  # set again by the checkpoint this fit resumes from, if it needs them
    run.state.loaded_loops = None  # counters loaded into the last run's views: this fit counts its own
    lifecycle.setup_optimizers(run)
    run.finite_guard = finite_guard.for_run(run)
    call_hook(run, "on_fit_start")
    lifecycle.log_hyperparams(run)
    lifecycle.restore_training_state(run)
    run.module.zero_grad()  # Lightning clears the gradients as every stage starts
    run_sanity_check(run)
    run.state.stage = RunningStage.TRAINING
    data.setup_train_data(run)
    if fit_done(run) or run.config.limit_train_batches == 0:
        return
    # The epoch-0 iterator is created here, before `on_train_start`, as Lightning does (random samplers draw then).
    iterator: Iterator[Any] | None = resume.epoch_iterator(run, run.train_loader)
    data.setup_val_data_for_fit(run)
    run.validation_enabled = data.validation_enabled(run)  # decided once, read on every batch
    _warn_eval_modules(run)
    call_hook(run, "on_train_start")
    run.own_fetches = takes_dataloader_iter(run.module.training_step)
    epoch_fn = train_epoch_with_iter if run.own_fetches else train_epoch
    run_epoch = _timed(run, epoch_fn, "run_training_epoch")
    try:
        while not fit_done(run):
            run_epoch(run, iterator)
            iterator = None
    except StopIteration:  # from an epoch's start or end hooks: as Lightning's fit loop, training ends there
        run.state.failed_batch = run.state.failed_eval_batch = 0  # not a failure (the counters stay where it was)
    call_hook(run, "on_train_end")


def run_sanity_check(run: Run) -> None:
    """A few validation batches before training, so a broken validation_step fails in seconds, not hours."""
    if not (data.validation_enabled(run) and run.config.num_sanity_val_steps > 0):
        return
    with isolate_rng():  # the sanity check must not change the random stream the training run sees
        run.state.stage = RunningStage.SANITY_CHECKING
        run.metrics.clear()
        call_hook(run, "on_sanity_check_start")
        with torch.no_grad():
            run_evaluation(run, RunningStage.SANITY_CHECKING)
        call_hook(run, "on_sanity_check_end")
        run.metrics.clear()
        run.state.stage = RunningStage.TRAINING


def fit_done(run: Run) -> bool:
    """Whether fit is over (max_steps, max_epochs, no batches, or a permitted stop), with Lightning's messages."""
    state, config = run.state, run.config
    if run.num_training_batches == 0:
        rank_zero_info("`Trainer.fit` stopped: No training batches.")
        return True
    if config.max_steps != -1 and state.global_step >= config.max_steps:
        rank_zero_info(f"`Trainer.fit` stopped: `max_steps={config.max_steps!r}` reached.")
        return True
    if config.max_epochs is not None and config.max_epochs != -1 and state.epoch >= config.max_epochs:
        rank_zero_info(f"`Trainer.fit` stopped: `max_epochs={config.max_epochs!r}` reached.")
        return True
    return state.should_stop and can_stop_early(run)


def can_stop_early(run: Run) -> bool:
    """A requested stop is honoured only once `min_epochs` and `min_steps` are met."""
    state, config = run.state, run.config
    met_epochs = state.epoch >= config.min_epochs if config.min_epochs else True
    met_steps = state.global_step >= config.min_steps if config.min_steps else True
    return met_epochs and met_steps


def train_epoch(run: Run, iterator: Iterator[Any] | None) -> None:
    """One training epoch: each batch with its hooks, validation when due, then the epoch-end hooks and logging."""
    batches = _start_epoch(run, iterator)
    try:
        _train_batches(run, batches)
    except StopIteration:
        _data_ended_inside(run)
    _end_epoch(run)


def _train_batches(run: Run, batches: Iterator[Any]) -> None:
    """The epoch's batches, each with its hooks and the validation due after it."""
    state = run.state
    # Per-batch hooks nobody overrides are not even dispatched (resolved once per run, see hook_resolution.py).
    batch_start, batch_end = ("on_train_batch_start" in run.hooks), ("on_train_batch_end" in run.hooks)
    transfer, legacy, store, guard = run.batch_to_device, run.legacy, run.train_store, run.finite_guard
    run_batch = _timed(run, train_batch, "run_training_batch")
    position = 0  # how far the running batch has gone: read only if an exception leaves the loop
    try:
        while not _epoch_done(run):
            if STOP.pending or STOP.sync_every:  # two attribute reads per batch; a signal only sets the flag
                preemption.safe_point(run)
            batch = next(batches, _END)
            if batch is _END:
                break
            position = 1
            batch_idx = state.batch_idx
            if transfer is not None:
                batch = transfer(batch, 0)
            store.start_batch(batch)
            stepping = run.config.accumulate_grad_batches == 1 or _will_step(run)
            if batch is None:  # Lightning skips the step (and `on_train_batch_start`); the batch's end still runs
                warn_none_batch(state.epoch)
                output = None
            else:
                if batch_start and call_hook(run, "on_train_batch_start", batch, batch_idx) == -1:
                    state.is_last_batch = True  # skip the rest of the epoch; schedulers step as on a last batch
                    _step_schedulers_after_batch(run, batch_idx, stepping=True)
                    break
                position = 2
                output = run_batch(run, batch, batch_idx, stepping)
            position = 0
            if guard is not None:  # the loss stays on the device until the guard's read (every logging interval)
                loss = output.get("loss") if output and not isinstance(output, list) else None  # list: optimizer_idx
                guard.seen.append((loss, state.global_step, state.epoch, batch_idx, stepping))
            if legacy is not None:  # collected only when a 1.x `training_epoch_end` is defined
                legacy.collect_train(output)
            if run.lr_scheduler_configs:
                _step_schedulers_after_batch(run, batch_idx, stepping)
            if batch_end:
                state.phase = BATCH_END
                call_hook(run, "on_train_batch_end", output, batch, batch_idx)
            finish_batch_cycle(run, BATCH_END, stepping)
    except BaseException:
        state.failed_batch = position  # 0 when it came from a validation (which records its own batch)
        raise


def _data_ended_inside(run: Run) -> None:
    """A StopIteration raised inside the epoch (by a step, a hook, or the validation it runs) ends the epoch, as
    Lightning's epoch loop takes it for the end of the data (raised by the epoch's start or end hooks, it ends the
    fit: `run_fit`). An interrupted validation is left as training resumes (Lightning leaves the module in eval mode
    and the stage at validating; fulgor puts both back, eval_loop the mode)."""
    state = run.state
    state.failed_batch = state.failed_eval_batch = 0  # not a failure: nothing was interrupted
    if state.stage != RunningStage.TRAINING:
        run.eval_store.reset()
        state.stage = RunningStage.TRAINING
    state.phase = BETWEEN_BATCHES


def _start_epoch(run: Run, iterator: Iterator[Any] | None) -> Iterator[Any]:
    """`on_train_epoch_start`, then the epoch's batches: positioned after those a resumed checkpoint had run, limited
    to `num_training_batches`, each setting `state.is_last_batch` as it is fetched."""
    loader, iterator, start = _open_epoch(run, iterator)
    iterator = data.epoch_batches(loader, iterator)  # a CombinedLoader's items carry their indices
    n_batches = run.num_training_batches
    limited = iterator if n_batches == inf else islice(iterator, max(int(n_batches) - start, 0))
    limited = _timed_fetches(run, limited, n_batches - start)
    return _with_last_flag(limited, run.state, n_batches, start)


def _open_epoch(run: Run, iterator: Iterator[Any] | None) -> tuple[Any, Iterator[Any], int]:
    """`on_train_epoch_start` and the epoch's started pass over the training loader (after a resumed checkpoint's
    batch cycle is finished): the loader, its pass and how many of its batches already ran."""
    state = run.state
    loader = data.reload_train_data_if_due(run)
    data.set_sampler_epoch(loader, state.epoch)
    state.batch_idx = 0
    state.is_last_batch = False
    state.phase = BETWEEN_BATCHES
    if not resume.continues_epoch(run):  # a resumed epoch already started (Lightning does not call it again)
        call_hook(run, "on_train_epoch_start")
    state.val_batches_seen = 0  # in-fit validation progress counts per epoch (the hook still sees the last epoch's)
    data.check_train_mode(loader)
    if iterator is None:
        iterator = resume.epoch_iterator(run, loader)
    start = _continue_interrupted_cycle(run) if state.resume_point is not None else 0
    return loader, iterator, start


def train_epoch_with_iter(run: Run, iterator: Iterator[Any] | None) -> None:
    """One training epoch of a `training_step(dataloader_iter)`: the step is called until the data is exhausted (or
    it raises StopIteration); the batch hooks receive the batch fetched last (Lightning's)."""
    state = run.state
    loader, started, start = _open_epoch(run, iterator)
    n_batches = run.num_training_batches
    triples = _timed_fetches(run, loader_triples(loader, started, n_batches - start), n_batches - start)
    fetcher = DataLoaderIter(triples, run.batch_to_device)
    run_batch = _timed(run, train_batch, "run_training_batch")
    while not fetcher.done and not _epoch_done(run):
        batch_idx = state.batch_idx
        if call_hook(run, "on_train_batch_start", fetcher.batch, fetcher.batch_idx) == -1:
            state.is_last_batch = True
            _step_schedulers_after_batch(run, batch_idx, stepping=True)
            break
        stepping = _will_step(run)
        run.train_store.start_batch(fetcher.batch)
        try:
            output = run_batch(run, fetcher, batch_idx, stepping)
        except StopIteration:  # the step says the epoch's data is over
            break
        state.is_last_batch = fetcher.done
        if run.lr_scheduler_configs:
            _step_schedulers_after_batch(run, batch_idx, stepping)
        state.phase = BATCH_END
        call_hook(run, "on_train_batch_end", output, fetcher.batch, fetcher.batch_idx)
        finish_batch_cycle(run, BATCH_END, stepping)
    _end_epoch(run)


_END = object()
inf = float("inf")


def _timed_fetches(run: Run, batches: Iterator[Any], n_batches: int | float) -> Iterator[Any]:
    """`batches`, each fetch timed as Lightning's `[_TrainingEpochLoop].train_dataloader_next` when the run has a
    real profiler."""
    if not run.profiling:
        return batches
    return profiled_next(run.trainer.profiler, batches, "[_TrainingEpochLoop].train_dataloader_next", n_batches)


def finish_batch_cycle(run: Run, phase: LoopPhase, stepping: bool) -> None:
    """What follows a batch's `on_train_batch_end`, from `phase` on: step logging and the counters (from
    BATCH_END), validation when due (VALIDATING: run it again), plateau schedulers and the logging step (from
    VALIDATION_END). Also how a resumed run finishes the cycle its checkpoint was taken in."""
    state = run.state
    guard = run.finite_guard
    if guard is not None and len(guard.seen) >= guard.interval:  # the non-finite guard's read, once per interval
        guard.read("at the logging interval")
    if phase == BATCH_END:
        run.train_store.flush(run.metrics)
        state.batch_idx += 1
        state.total_batch_idx += 1
        if stepping and (should_log_step(run) or run.config.fast_dev_run):
            log_metrics(run, run.train_store.step_log_metrics(), state.batches_that_stepped)
        phase = VALIDATING if run.validation_enabled and should_validate(run) else VALIDATION_END
    if phase == VALIDATING:
        _validate_in_fit(run, stepping)
    if run.lr_scheduler_configs and stepping:
        step_schedulers(run, "step", plateau=True, batch_idx=state.batch_idx - 1)
    if stepping:
        state.batches_that_stepped += 1
    if state.should_stop:
        save_loggers(run)
    state.phase = BETWEEN_BATCHES


def _continue_interrupted_cycle(run: Run) -> int:
    """After the epoch's iterator exists: restore a mid-epoch checkpoint's position and finish the batch cycle it
    was taken in; return how many batches of the epoch are already done."""
    cycle = resume.continue_epoch(run)
    if cycle is None:
        return 0
    if cycle.phase in (BATCH_END, VALIDATING, VALIDATION_END):
        finish_batch_cycle(run, cycle.phase, cycle.stepping)
    return cycle.consumed


def _timed(run: Run, fn: Any, action: str) -> Any:
    """`fn`, or `fn` timed as Lightning's `action` when the run has a real profiler (decided per run)."""
    return profiled(run.trainer.profiler, fn, action) if run.profiling else fn


def _will_step(run: Run) -> bool:
    """False while accumulating: the optimizer steps every `accumulate_grad_batches` and on the last batch."""
    state = run.state
    accumulate = run.config.accumulate_grad_batches
    return accumulate == 1 or (state.batch_idx + 1) % accumulate == 0 or _is_last_ready(run)


def _is_last_ready(run: Run) -> bool:
    state = run.state
    return state.batch_idx + 1 == run.num_training_batches or state.is_last_batch


def _step_schedulers_after_batch(run: Run, batch_idx: int, stepping: bool) -> None:
    if stepping:
        step_schedulers(run, "step", plateau=False, batch_idx=batch_idx)
    if _is_last_ready(run):
        step_schedulers(run, "epoch", plateau=False, batch_idx=batch_idx)


def _epoch_done(run: Run) -> bool:
    """Before each batch: stop at max_steps or after the last batch, or on a stop request that may be honoured."""
    state, config = run.state, run.config
    if (config.max_steps != -1 and state.global_step >= config.max_steps) or state.is_last_batch:
        return True
    if state.should_stop:
        if can_stop_early(run):
            return True
        _info_once(
            run,
            f"Trainer was signaled to stop but the required `min_epochs={config.min_epochs!r}` or"
            f" `min_steps={config.min_steps!r}` has not been met. Training will continue...",
        )
    return False


# The messages each Trainer has shown: Lightning shows these once per Trainer, not at every batch that asks again.
_shown: WeakKeyDictionary[Any, set[str]] = WeakKeyDictionary()


def _info_once(run: Run, message: str) -> None:
    shown = _shown.setdefault(run.trainer, set())
    if message not in shown:
        shown.add(message)
        rank_zero_info(message)


def should_validate(run: Run) -> bool:
    """Lightning's validation schedule: the epoch filter, then the batch interval (per epoch or across epochs)."""
    if not _validation_epoch(run):
        return False
    state, config = run.state, run.config
    if state.is_last_batch and (run.val_check_batch == inf or run.own_fetches):  # own fetches: steps != batches
        return True
    if state.should_stop and can_stop_early(run):
        return True
    if config.val_check_time_interval is not None:
        return _time_for_validation(run, config.val_check_time_interval)
    if isinstance(config.limit_train_batches, int) and run.val_check_batch == inf:
        return state.batch_idx % config.limit_train_batches == 0
    if run.val_check_batch != inf:
        current = state.total_batch_idx if config.check_val_every_n_epoch is None else state.batch_idx
        return current % int(run.val_check_batch) == 0
    return state.is_last_batch


def _validation_epoch(run: Run) -> bool:
    every = run.config.check_val_every_n_epoch
    return run.validation_enabled and (every is None or (run.state.epoch + 1) % every == 0)


def _time_for_validation(run: Run, interval: float) -> bool:
    now = time.monotonic()
    if now - run.last_val_time >= interval:
        run.last_val_time = now
        return True
    return False


def _validate_in_fit(run: Run, stepping: bool) -> None:
    state = run.state
    state.phase = VALIDATING
    resume.before_validation(run)  # a checkpoint taken inside this validation resumes by running it again
    if stepping:
        call_module(run, "on_validation_model_zero_grad")
    state.stage = RunningStage.VALIDATING
    data.reload_val_data_if_due(run)
    with torch.no_grad():
        run_evaluation(run, RunningStage.VALIDATING)
    state.stage = RunningStage.TRAINING
    state.phase = VALIDATION_END


def _end_epoch(run: Run) -> None:
    """Epoch-end hooks (monitoring callbacks after the module), epoch schedulers, epoch-level logging."""
    state = run.state
    store = run.train_store
    store.in_epoch_phase = True
    state.phase = LoopPhase.EPOCH_END
    finite_guard.check(run, "at the end of the epoch")
    if run.legacy is not None:  # 1.x `training_epoch_end(outputs)` runs before the epoch-end hooks
        run.legacy.epoch_end("train")
    call_hook(run, "on_train_epoch_end")
    store.flush(run.metrics)
    if run.lr_scheduler_configs and (state.batch_idx == run.num_training_batches or state.is_last_batch):
        step_schedulers(run, "epoch", plateau=True, batch_idx=state.batch_idx)
    # Epoch rows carry the step of the epoch's last batch: `batches_that_stepped` has already moved past it.
    log_metrics(run, store.epoch_metrics(None, run.metrics), state.batches_that_stepped - 1)
    store.reset()
    state.epoch += 1
    state.phase = LoopPhase.OUTSIDE_EPOCH


def _with_last_flag(batches: Iterator[Any], state: Any, n_batches: int | float, start: int = 0) -> Iterator[Any]:
    """Yield batches, setting `state.is_last_batch` before each one (with one batch of look-ahead if unsized);
    `start` batches of the epoch were run before a resume."""
    if n_batches != inf:
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


def _warn_eval_modules(run: Run) -> None:
    count = sum(1 for m in run.module.modules() if not m.training)
    if count:
        rank_zero_warn(
            f"Found {count} module(s) in eval mode at the start of training."
            " This may lead to unexpected behavior during training. If this is intentional,"
            " you can ignore this warning."
        )
