"""`fulgor describe` / `fulgor run --describe`: the resolved plan of a Trainer and a model, printed without training
(devices, precision, callbacks in call order, overridden hooks, checkpoint policy and paths, loop limits)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from fulgor.callbacks.model_checkpoint import ModelCheckpoint
from fulgor.datamodule import LightningDataModule
from fulgor.hooks import HOOKS
from fulgor.trainer.hook_resolution import resolve_hooks
from fulgor.trainer.legacy_hooks import EPOCH_END, STEP_END
from fulgor.trainer.trainer import Trainer

__all__ = ["DescribedRun", "describe", "intercept_runs"]


def describe(trainer: Any, model: Any, datamodule: Any = None, fn: str = "fit") -> str:
    """The plan `trainer.<fn>(model, datamodule=datamodule)` would follow, as text; nothing is trained or written.

    Args:
        trainer: a constructed `Trainer`.
        model: the LightningModule.
        datamodule: the LightningDataModule, if any.
        fn: "fit", "validate", "test" or "predict".

    Returns:
        The plan, one section per aspect, ending with a newline.
    """
    lines = [f"fulgor plan: Trainer.{fn}({type(model).__name__}" + (f", {type(datamodule).__name__})" if datamodule
             else ")")]  # fmt: skip
    lines += _devices(trainer)
    lines += _limits(trainer, fn)
    lines += _callbacks(trainer)
    lines += _hooks(trainer, model, datamodule)
    lines += _legacy(model)
    lines += _files(trainer)
    return "\n".join(lines) + "\n"


def _devices(trainer: Any) -> list[str]:
    strategy = type(trainer.strategy).__name__
    ids = list(trainer.device_ids)
    accelerator = trainer.accelerator
    return [
        "devices:",
        f"  accelerator: {accelerator}    devices: {ids} ({len(ids)} per node)    num_nodes: {trainer.num_nodes}",
        f"  strategy: {strategy}    precision: {trainer.precision}",
    ]


def _limits(trainer: Any, fn: str) -> list[str]:
    max_epochs = trainer.max_epochs
    if fn == "fit" and max_epochs is None:
        max_epochs = "-1 (max_steps is set)" if trainer.max_steps != -1 else "1000 (not set: Lightning's default)"
    fit = [
        f"  max_epochs: {max_epochs}    min_epochs: {trainer.min_epochs}    max_steps: {trainer.max_steps}"
        f"    min_steps: {trainer.min_steps}",
        f"  limit_train_batches: {trainer.limit_train_batches}    limit_val_batches: {trainer.limit_val_batches}"
        f"    val_check_interval: {trainer.val_check_interval}"
        f"    check_val_every_n_epoch: {trainer.check_val_every_n_epoch}",
        f"  num_sanity_val_steps: {trainer.num_sanity_val_steps}"
        f"    accumulate_grad_batches: {trainer.accumulate_grad_batches}"
        f"    gradient_clip_val: {trainer.gradient_clip_val}    log_every_n_steps: {trainer.log_every_n_steps}",
    ]
    limit = {"validate": "limit_val_batches", "test": "limit_test_batches", "predict": "limit_predict_batches"}
    body = fit if fn == "fit" else [f"  {limit[fn]}: {getattr(trainer, limit[fn])}"]
    return ["loop:", *body, f"  fast_dev_run: {trainer.fast_dev_run}"]


def _callbacks(trainer: Any) -> list[str]:
    lines = ["callbacks (call order):"]
    for i, callback in enumerate(trainer.callbacks, 1):
        note = "  [monitors metrics: its on_train_epoch_end runs after the module's]" if getattr(
            callback, "monitors_metrics", False) else ""  # fmt: skip
        lines.append(f"  {i}. {type(callback).__name__}{note}")
    if len(lines) == 1:
        lines.append("  (none)")
    return lines


def _hooks(trainer: Any, model: Any, datamodule: Any) -> list[str]:
    """Which receivers run each hook, resolved exactly as a run resolves them (`hook_resolution.resolve_hooks`)."""
    table = resolve_hooks(trainer, trainer.callbacks, model, datamodule, trainer.profiler)
    lines = ["hooks overridden (receivers in call order; every other hook costs nothing):"]
    for name in HOOKS:
        receivers = table.get(name)
        if receivers is None:
            continue
        names = [_owner(fn) for fn in receivers.before]
        names += [type(model).__name__] if receivers.module is not None else []
        names += [_owner(fn) for fn in receivers.after]
        lines.append(f"  {name}: {', '.join(names)}")
    if len(lines) == 1:
        lines.append("  (none)")
    return lines


def _owner(fn: Callable[..., Any]) -> str:
    bound = getattr(fn, "func", fn)  # callbacks are bound as partial(method, trainer, module)
    return type(getattr(bound, "__self__", fn)).__name__


def _legacy(model: Any) -> list[str]:
    defined = [h for h in (*STEP_END.values(), *EPOCH_END.values()) if callable(getattr(model, h, None))]
    if not defined:
        return []
    return ["1.x hooks (called where Lightning 1.9.5 called them; outputs kept only for *_epoch_end):",
            *(f"  {h}" for h in defined)]  # fmt: skip


def _files(trainer: Any) -> list[str]:
    lines = ["files:", f"  default_root_dir: {trainer.default_root_dir}"]
    for logger in trainer.loggers:
        lines.append(f"  logger {type(logger).__name__}: {logger.log_dir or logger.save_dir}")
    if not trainer.loggers:
        lines.append("  loggers: none")
    checkpoints = [cb for cb in trainer.callbacks if isinstance(cb, ModelCheckpoint)]
    for cb in checkpoints:
        lines.append(f"  checkpoint: {_checkpoint_policy(cb)}")
        lines.append(f"    into {_checkpoint_dir(trainer, cb)}")
    if not checkpoints:
        lines.append("  checkpoint: none (no ModelCheckpoint)")
    return lines


def _checkpoint_policy(cb: Any) -> str:
    if cb._every_n_train_steps:
        when = f"every {cb._every_n_train_steps} training steps"
    elif cb._train_time_interval is not None:
        when = f"every {cb._train_time_interval}"
    else:
        when = f"every {cb._every_n_epochs} epoch(s)"
    what = f"best {cb.save_top_k} by {cb.monitor} ({cb.mode})" if cb.monitor else "the latest"
    if cb.save_top_k == -1:
        what = "all" + (f", ranked by {cb.monitor}" if cb.monitor else "")
    last = ", plus last.ckpt" if cb.save_last else ""
    name = cb.filename or "{epoch}-{step}"
    return f"{type(cb).__name__}: {when}, keeps {what}{last}, named {name}.ckpt"


def _checkpoint_dir(trainer: Any, cb: Any) -> str:
    if cb.dirpath:
        return str(cb.dirpath)
    if trainer.loggers:
        logger = trainer.loggers[0]
        base = logger.log_dir or logger.save_dir or trainer.default_root_dir
        return os.path.join(base, "checkpoints")
    return os.path.join(trainer.default_root_dir, "checkpoints")


class DescribedRun(SystemExit):
    """Raised by an intercepted `fit`/`validate`/`test`/`predict` after printing the plan: the script stops there."""


@contextmanager
def intercept_runs(print_fn: Callable[[str], Any] = print) -> Iterator[None]:
    """Within the block, `Trainer.fit/validate/test/predict` print the plan and stop the script (exit status 0)
    instead of running. Used by `fulgor run --describe SCRIPT`."""
    originals = {fn: getattr(Trainer, fn) for fn in ("fit", "validate", "test", "predict")}

    def make(fn: str) -> Callable[..., Any]:
        def described(self: Any, model: Any = None, *args: Any, datamodule: Any = None, **kwargs: Any) -> Any:
            if datamodule is None:
                datamodule = next((a for a in args if isinstance(a, LightningDataModule)), None)
            print_fn(describe(self, model if model is not None else self.lightning_module, datamodule, fn))
            raise DescribedRun(0)

        return described

    for fn in originals:
        setattr(Trainer, fn, make(fn))
    try:
        yield
    finally:
        for fn, original in originals.items():
            setattr(Trainer, fn, original)
