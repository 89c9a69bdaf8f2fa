"""What a checkpoint holds: the dict in Lightning's layout and key order (weights, loops progress, callbacks,
optimizers, schedulers, hparams, datamodule state), built with the save hooks, and `Trainer.save_checkpoint`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fulgor.checkpoint_io import resume_record
from fulgor.profiler_base import profile_section
from fulgor.rank import rank_zero_info
from fulgor.trainer import finite_guard, resume
from fulgor.trainer.dispatch import call_hook
from fulgor.trainer.hook_resolution import resolve_hooks
from fulgor.trainer.loop_progress import build_loops
from fulgor.trainer.run import Run
from fulgor.trainer.state import TrainerFn

if TYPE_CHECKING:
    from fulgor.module import LightningModule
    from fulgor.trainer.config import TrainerConfig
    from fulgor.trainer.log_store import MetricDicts

__all__ = [
    "FORMAT_VERSION",
    "build_checkpoint",
    "connected_run",
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


def connected_run(trainer: Any, config: TrainerConfig, metrics: MetricDicts, module: LightningModule) -> Run:
    """A run for saving a model that was given to `trainer.strategy.connect(model)` before any fit/validate/test/
    predict: nothing has run, so the checkpoint holds the weights, the callbacks' states and zeroed counters (as
    Lightning saves it); the save hooks are called as in a run."""
    run = Run(
        trainer=trainer, config=config, state=trainer.state, metrics=metrics, fn=trainer.state.fn or TrainerFn.FITTING,
        module=module, datamodule=None, sources={}, strategy=trainer.strategy, precision=trainer.precision_plugin,
    )  # fmt: skip
    run.hooks = resolve_hooks(trainer, trainer.callbacks, module, None)
    return run


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
        action = f"[LightningDataModule]{type(datamodule).__name__}.state_dict"  # a profiler's name for it
        with profile_section(run.trainer.profiler if run.profiling else None, action):
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
