"""A run from start to end: attaching the model, the set-up every run shares (checks, hooks, data preparation, setup
hooks, checkpoint weights, device placement), a fit's optimizers and restored training state, and the ending
(finished or failed). The Trainer's entry points call these in order; the loops run in between."""

from __future__ import annotations

import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

from fulgor import checkpoint_restore
from fulgor.callbacks.callback import Callback
from fulgor.datamodule import LightningDataModule
from fulgor.hparams import merge_module_and_datamodule_hparams
from fulgor.module import LightningModule
from fulgor.optimizer import LightningOptimizer, validate_schedulers
from fulgor.overridden import is_overridden
from fulgor.profiler_base import is_active, set_profiled_module
from fulgor.rank import rank_zero_info
from fulgor.trainer import data, optimization
from fulgor.trainer.callback_list import check_unique_state_keys, merge_model_callbacks
from fulgor.trainer.checks import verify_loop_configuration
from fulgor.trainer.dispatch import call_hook, call_module, set_fx_name
from fulgor.trainer.hook_resolution import defines, profiled, resolve_hooks
from fulgor.trainer.legacy_hooks import resolve_legacy_hooks
from fulgor.trainer.log_store import attach_logging_functions
from fulgor.trainer.optimizer_idx_loop import parse_optimizers
from fulgor.trainer.state import LoopPhase, RunningStage, TrainerFn, TrainerStatus
from fulgor.trainer.to_loggers import metrics_to_cpu

if TYPE_CHECKING:
    from fulgor.trainer.run import Run

FIRST_STAGE = {
    TrainerFn.FITTING: RunningStage.TRAINING,
    TrainerFn.VALIDATING: RunningStage.VALIDATING,
    TrainerFn.TESTING: RunningStage.TESTING,
    TrainerFn.PREDICTING: RunningStage.PREDICTING,
}


def attach(run: Run) -> None:
    """Mark the run as running and connect the model (and datamodule) to the trainer and to this run."""
    state = run.state
    state.fn = run.fn
    state.status = TrainerStatus.RUNNING
    state.should_stop = False
    state.phase = LoopPhase.OUTSIDE_EPOCH  # a run interrupted mid-epoch left its phase behind
    # As in Lightning, the stage (and so the store `self.log` writes to) is set for the whole run.
    state.stage = FIRST_STAGE[run.fn]
    attach_module(run.module, run.trainer, run)
    run.strategy.connect(run.module)
    if run.datamodule is not None:
        run.datamodule.trainer = run.trainer
    if run.config.barebones:
        rank_zero_info(
            "`Trainer(barebones=True)` started running. The progress bar is disabled so you might want to"
            " manually print the progress in your model."
        )


def attach_module(module: LightningModule, trainer: Any, run: Run | None) -> None:
    """Connect `module` to `trainer` and its run: `self.log`, `manual_backward` and `optimizers()` reach the run
    through it."""
    module.trainer = trainer
    module.__dict__["_run"] = run


def model_callbacks(run: Run, callbacks: list[Callback]) -> list[Callback]:
    """`callbacks` merged with what `configure_callbacks()` returns (those replace callbacks of their type)."""
    return merge_model_callbacks(callbacks, call_module(run, "configure_callbacks"))


def setup(run: Run, ckpt_path: Any, weights_only: bool | None) -> None:
    """configure_callbacks (already merged), checks, prepare_data, setup, configure_model, [restore weights], device
    placement: common to every run."""
    trainer = run.trainer
    check_unique_state_keys(trainer.callbacks)
    attach_logging_functions(trainer.callbacks, run.module)  # `self.log` in a callback's hooks, as in Lightning
    verify_loop_configuration(run)
    profiler = trainer.profiler
    profiler.setup(run.fn.value, trainer.local_rank if trainer.world_size > 1 else None, trainer.log_dir)
    set_profiled_module(profiler, run.module)  # the PyTorch profiler labels its layers and reads the batch counts
    run.profiling = is_active(profiler)  # hooks and loop steps are timed only then (decided per run)
    run.hooks = resolve_hooks(trainer, trainer.callbacks, run.module, run.datamodule, profiler)
    _resolve_step_functions(run)
    _prepare_data(run)
    for logger in trainer.loggers:
        # Creates the log directory before setup hooks run; a logger may do that without starting its experiment
        # object (`_prepare_for_setup`: the TensorBoard logger, whose writer would import tensorboard).
        # Looked up on the class: a logger answering any attribute (a Mock) sees only the `experiment` read.
        prepare = getattr(type(logger), "_prepare_for_setup", None)
        _ = prepare(logger) if prepare is not None else getattr(logger, "experiment", None)
    call_hook(run, "setup", stage=run.fn)
    if is_overridden("configure_sharded_model", run.module):  # the 1.x name (deprecated: see checks.py)
        call_module(run, "configure_sharded_model")
    if is_overridden("configure_model", run.module):
        # Layers built here get the root device and the "*-true" precision's dtype, as in Lightning.
        with run.strategy.tensor_init_context(), run.precision.module_init_context():
            call_module(run, "configure_model")
    if ckpt_path is not None and run.strategy.restore_checkpoint_after_setup:
        run.ckpt_request = (ckpt_path, weights_only)  # loaded by `restore_after_setup`
    elif ckpt_path is not None:
        run.checkpoint_to_resume = checkpoint_restore.restore_before_setup(run, ckpt_path, weights_only)
    run.strategy.setup(run.trainer)  # the precision's conversion, then the strategy's wrapping and placement
    run.batch_to_device = make_batch_transfer(run)
    if not run.fitting:  # fit does these after `on_fit_start` (fit_loop.run_fit); the other runs here, as Lightning
        connect_precision(run)
        log_hyperparams(run)
        restore_after_setup(run)
        run.module.zero_grad()  # Lightning clears the gradients as every stage starts


def restore_after_setup(run: Run) -> None:
    """Load the checkpoint a strategy with `restore_checkpoint_after_setup` asked to load late: after its
    `setup(trainer)`, the `on_fit_start` hooks and the hyperparameter logging (Lightning's order)."""
    request, run.ckpt_request = run.ckpt_request, None
    if request is not None:
        run.checkpoint_to_resume = checkpoint_restore.restore_before_setup(run, *request)


def _resolve_step_functions(run: Run) -> None:
    """Per-run lookups done once, so the per-batch path does not repeat them."""
    module = run.module
    step = run.strategy.step_fn(module, "training_step")
    if run.profiling:
        step = profiled(run.trainer.profiler, step, f"[Strategy]{type(run.strategy).__name__}.training_step")
    run.training_step = step
    run.step_takes_batch_idx = data.accepts_batch_idx(module.training_step)
    run.legacy = resolve_legacy_hooks(module)
    run.automatic = module.automatic_optimization
    run.clipping = defines(module, "configure_gradient_clipping", LightningModule) or bool(run.config.gradient_clip_val)
    run.autocast = run.precision.autocast if run.precision.changes_compute else None


def _prepare_data(run: Run) -> None:
    # Local rank 0 of each node prepares the data (downloads once per machine); the others wait for it.
    if run.trainer.local_rank == 0:
        call_hook(run, "prepare_data")
    run.strategy.barrier("prepare_data")


def make_batch_transfer(run: Run) -> Any:
    """The function that moves a batch to the device through the batch-transfer hooks, each from its owner (the
    datamodule's or the module's, see `data.batch_transfer_owners`), resolved once per run; None when nothing would
    change the batch (CPU, default hooks, no dtype conversion)."""
    owners = data.batch_transfer_owners(run)
    device = run.strategy.root_device
    convert = run.precision.convert_input
    custom = any(
        defines(owner, hook, LightningModule if owner is run.module else LightningDataModule)
        for owner, hook in zip(owners, data.BATCH_TRANSFER_HOOKS)
    )
    if not custom and device.type == "cpu" and not run.precision.converts_input and not run.profiling:
        return None  # batches stay as the loader made them: the loops skip the call
    module = run.module
    hooks = zip(owners, data.BATCH_TRANSFER_HOOKS)
    before, to_device, after = (_transfer_hook(run, owner, hook) for owner, hook in hooks)

    def transfer(batch: Any, dataloader_idx: int) -> Any:
        batch = convert(batch)
        set_fx_name(module, "on_before_batch_transfer")
        batch = before(batch, dataloader_idx)
        set_fx_name(module, "transfer_batch_to_device")
        batch = to_device(batch, device, dataloader_idx)
        set_fx_name(module, "on_after_batch_transfer")
        batch = after(batch, dataloader_idx)
        set_fx_name(module, None)
        return batch

    if run.profiling:  # the whole transfer timed as Lightning's strategy step of it
        return profiled(run.trainer.profiler, transfer, f"[Strategy]{type(run.strategy).__name__}.batch_to_device")
    return transfer


def _transfer_hook(run: Run, owner: Any, hook: str) -> Any:
    """`owner.hook`, timed under Lightning's name when the run has a real profiler."""
    fn = getattr(owner, hook)
    if not run.profiling:
        return fn
    kind = "LightningModule" if owner is run.module else "LightningDataModule"
    return profiled(run.trainer.profiler, fn, f"[{kind}]{type(owner).__name__}.{hook}")


def setup_optimizers(run: Run) -> None:
    """`configure_optimizers`, parsed and checked; the optimizers wrapped for `optimizer_step` and `optimizers()`."""
    module = run.module
    # Also chooses Lightning 1.x's `optimizer_idx` loop when the module is written for it (else 2.x's errors).
    optimizers, configs = parse_optimizers(run, call_module(run, "configure_optimizers"))
    validate_schedulers(optimizers, configs, module)
    run.optimizers = optimizers
    run.lr_scheduler_configs = configs
    connect_precision(run)
    run.lightning_optimizers = [LightningOptimizer(optimizer, run) for optimizer in run.optimizers]
    run.plain = optimization.plain_steps(run)


def connect_precision(run: Run) -> None:
    """`Precision.connect` once the run's model and optimizers are set up (in every stage, as Lightning calls it); a
    plugin may return wrapped ones, which the run then uses."""
    strategy = run.strategy
    if strategy.model is not None:
        strategy.model, run.optimizers, run.lr_scheduler_configs = run.precision.connect(
            strategy.model, run.optimizers, run.lr_scheduler_configs
        )


def log_hyperparams(run: Run) -> None:
    """Send the merged module/datamodule hyperparameters (and the graph) to every logger."""
    loggers = run.trainer.loggers
    if not (run.config.enable_autolog_hparams and loggers):
        return
    hparams = merge_module_and_datamodule_hparams(run.module, run.datamodule)
    for logger in loggers:
        if hparams is not None:
            logger.log_hyperparams(hparams)
        logger.log_graph(run.module)
        logger.save()


def restore_training_state(run: Run) -> None:
    """Optimizers, schedulers, precision and loop counters of the checkpoint `fit(ckpt_path=...)` loaded (Lightning
    restores them after `on_fit_start` and the hyperparameter logging), after the weights when a strategy loads them
    only then (`restore_checkpoint_after_setup`)."""
    restore_after_setup(run)
    checkpoint, run.checkpoint_to_resume = run.checkpoint_to_resume, None
    if checkpoint is not None:
        checkpoint_restore.restore_training_state(run, checkpoint)


def finish(run: Run) -> None:
    """on_fit_end (fit only), teardown hooks, loggers finalized with "success"."""
    trainer = run.trainer
    run.strategy.teardown()
    data.shutdown_workers(run)
    metrics_to_cpu(run.metrics)
    if run.fitting:
        call_hook(run, "on_fit_end")
    call_hook(run, "teardown", stage=run.fn)
    set_fx_name(run.module, None)
    for logger in trainer.loggers:
        logger.finalize("success")
    trainer.profiler.describe()  # the report (a no-op for the default PassThroughProfiler); closes its file
    run.state.status = TrainerStatus.FINISHED
    run.state.stage = None


def fail(run: Run, exception: BaseException) -> None:
    """A run interrupted by `exception`: `on_exception`, loggers finalized with "failed", the strategy torn down.

    A KeyboardInterrupt (Ctrl+C) is Lightning's graceful shutdown: further Ctrl+C are ignored while it runs, and the
    process then exits with `SystemExit(1)` instead of the KeyboardInterrupt.
    """
    if not isinstance(exception, KeyboardInterrupt):
        _interrupt(run, exception)
        run.state.stage = None
        return
    rank_zero_info("\nDetected KeyboardInterrupt, attempting graceful shutdown ...")
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        _interrupt(run, exception)  # the strategy's teardown also stops the ranks this process started
    finally:
        if previous is not None:  # None: the handler was not set from Python (nothing to restore)
            signal.signal(signal.SIGINT, previous)
    sys.exit(1)  # the stage stays as it was, as Lightning leaves it


def _interrupt(run: Run, exception: BaseException) -> None:
    trainer = run.trainer
    run.state.status = TrainerStatus.INTERRUPTED
    try:
        call_hook(run, "on_exception", exception)
    except Exception as hook_error:  # the loggers are still finalized; the user's exception stays the one raised
        _chain(exception, hook_error)
    run.strategy.on_exception(exception)
    for logger in trainer.loggers:
        logger.finalize("failed")
    trainer.profiler.teardown(run.fn.value)
    run.strategy.teardown()
    data.shutdown_workers(run)


def _chain(exception: BaseException, hook_error: Exception) -> None:
    """Attach the error an `on_exception` hook raised to the exception being handled: as its context (Python prints it
    with the traceback) and as a note naming it."""
    if exception.__context__ is None:
        exception.__context__ = hook_error
    exception.add_note(f"While handling it, an `on_exception` hook raised {type(hook_error).__name__}: {hook_error}")
