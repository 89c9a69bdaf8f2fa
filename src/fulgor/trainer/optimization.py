"""One training batch: Lightning's closure contract (training_step runs inside `optimizer.step(closure)`),
accumulation, backward with its hooks, gradient clipping, manual optimization and LR scheduler stepping."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from fulgor.errors import MisconfigurationException
from fulgor.rank import rank_zero_warn, warn_once
from fulgor.trainer.dispatch import call_hook, call_module, set_fx_name

if TYPE_CHECKING:
    from fulgor.trainer.trainer import Trainer


def train_batch(trainer: Trainer, batch: Any, batch_idx: int, stepping: bool) -> Mapping[str, Any] | None:
    """Run `training_step` and, when `stepping`, the optimizer step around it; return what
    `on_train_batch_end` receives (``{"loss": loss / accumulate_grad_batches, **extra}``)."""
    module = trainer.lightning_module
    if not module.automatic_optimization:
        return _manual_batch(trainer, batch, batch_idx)
    optimizer = trainer.optimizers[0]
    accumulate = trainer.accumulate_grad_batches
    zero_grad = batch_idx % accumulate == 0
    step = trainer._training_step
    autocast = trainer.precision_plugin.autocast
    result: list[Any] = [None, None]  # [loss, extra]

    def closure() -> Tensor | None:
        previous = module._current_fx_name
        set_fx_name(module, "training_step")
        with autocast():
            output = step(batch, batch_idx) if trainer._step_takes_batch_idx else step(batch)
        set_fx_name(module, previous)
        loss, result[1] = _parse_output(output, accumulate)
        result[0] = loss
        if loss is None:
            warn_once(
                "`training_step` returned `None`. If this was on purpose, ignore this warning...",
            )
        if zero_grad:
            call_hook(trainer, "on_before_zero_grad", optimizer)
            call_module(trainer, "optimizer_zero_grad", trainer.current_epoch, batch_idx, optimizer)
        if loss is not None:
            run_backward(trainer, loss)
        if stepping:
            _before_optimizer_step(trainer, optimizer, unscale=loss is not None)
        return None if loss is None else loss.detach()

    if stepping:
        # Called inline rather than through `call_module`: one frame less between `fit` and `training_step`.
        set_fx_name(module, "optimizer_step")
        module.optimizer_step(trainer.current_epoch, batch_idx, trainer._lightning_optimizer, closure)
        set_fx_name(module, None)
        trainer.state.global_step += 1
    else:
        with trainer.strategy.no_backward_sync():
            closure()
    loss, extra = result
    if loss is None:
        return {}
    return {"loss": loss.detach(), **extra}


def _parse_output(output: Any, accumulate: int) -> tuple[Tensor | None, dict[str, Any]]:
    if output is None:
        return None, {}
    if isinstance(output, Tensor):
        loss: Tensor = output
        extra: dict[str, Any] = {}
    elif isinstance(output, Mapping):
        value = output.get("loss")
        if not isinstance(value, Tensor):
            raise MisconfigurationException(
                "In automatic_optimization, when `training_step` returns a dict, the 'loss' key needs to be present"
            )
        loss, extra = value, {k: v for k, v in output.items() if k != "loss"}
    else:
        raise MisconfigurationException(
            "In automatic optimization, `training_step` must return a Tensor, a dict, or None (where the step"
            " will be skipped)."
        )
    # Dividing by 1 would allocate a tensor per step for nothing.
    return (loss / accumulate if accumulate != 1 else loss), extra


def _before_optimizer_step(trainer: Trainer, optimizer: Optimizer, unscale: bool) -> None:
    """Unscale AMP gradients, then `on_before_optimizer_step` and the module's gradient clipping."""
    if unscale:  # a GradScaler cannot unscale gradients no backward produced
        trainer.precision_plugin.unscale_gradients(optimizer)
    call_hook(trainer, "on_before_optimizer_step", optimizer)
    if trainer._clipping_hook_active:
        call_module(
            trainer,
            "configure_gradient_clipping",
            optimizer,
            trainer.gradient_clip_val,
            trainer.gradient_clip_algorithm,
        )


def run_backward(trainer: Trainer, loss: Tensor, *args: Any, **kwargs: Any) -> None:
    """on_before_backward → LightningModule.backward (AMP-scaled loss) → on_after_backward."""
    loss = trainer.precision_plugin.scale_loss(loss)
    call_hook(trainer, "on_before_backward", loss)
    call_module(trainer, "backward", loss, *args, **kwargs)
    call_hook(trainer, "on_after_backward")


def _manual_batch(trainer: Trainer, batch: Any, batch_idx: int) -> dict[str, Any] | None:
    module = trainer.lightning_module
    set_fx_name(module, "training_step")
    with trainer.precision_plugin.autocast():
        step = trainer._training_step
        output = step(batch, batch_idx) if trainer._step_takes_batch_idx else step(batch)
    set_fx_name(module, None)
    if output is None:
        return {}
    if isinstance(output, Tensor):
        return {"loss": output.detach()}
    if isinstance(output, Mapping):
        extra = dict(output)
        if isinstance(extra.get("loss"), Tensor):
            extra["loss"] = extra["loss"].detach()
        return extra
    raise MisconfigurationException(
        "In manual optimization, `training_step` must either return a Tensor or have no return."
    )


def clip_gradients(trainer: Trainer, optimizer: Optimizer, clip_val: float | None, algorithm: str | None) -> None:
    """`LightningModule.clip_gradients`: check the values against the Trainer's, then clip by norm or value."""
    if clip_val is None:
        clip_val = trainer.gradient_clip_val or 0.0
    elif trainer.gradient_clip_val is not None and trainer.gradient_clip_val != clip_val:
        raise MisconfigurationException(
            f"You have set `Trainer(gradient_clip_val={trainer.gradient_clip_val!r})`"
            f" and have passed `clip_gradients(gradient_clip_val={clip_val!r})`."
            " Please use only one of them."
        )
    if algorithm is None:
        algorithm = trainer.gradient_clip_algorithm or "norm"
    else:
        algorithm = algorithm.lower()
        if trainer.gradient_clip_algorithm is not None and trainer.gradient_clip_algorithm != algorithm:
            raise MisconfigurationException(
                f"You have set `Trainer(gradient_clip_algorithm={trainer.gradient_clip_algorithm!r})`"
                f" and have passed `clip_gradients(gradient_clip_algorithm={algorithm!r})"
                " Please use only one of them."
            )
    if not isinstance(clip_val, (int, float)):
        raise TypeError(f"`gradient_clip_val` should be an int or a float. Got {clip_val}.")
    if algorithm not in ("norm", "value"):
        raise MisconfigurationException(
            f"`gradient_clip_algorithm` {algorithm} is invalid. Allowed algorithms: ['value', 'norm']."
        )
    if clip_val <= 0:
        return
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if algorithm == "value":
        torch.nn.utils.clip_grad_value_(params, clip_val)
    else:
        torch.nn.utils.clip_grad_norm_(params, clip_val)


def step_schedulers(trainer: Trainer, interval: str, plateau: bool, batch_idx: int) -> None:
    """Step the LR schedulers of `interval` ("step"/"epoch") whose frequency is due (plateau ones separately)."""
    if not trainer.lightning_module.automatic_optimization:
        return
    for config in trainer.lr_scheduler_configs:
        if config.reduce_on_plateau != plateau or config.interval != interval:
            continue
        index = (batch_idx if interval == "step" else trainer.current_epoch) + 1
        if index % config.frequency:
            continue
        metric = None
        if config.reduce_on_plateau:
            metric = trainer.callback_metrics.get(config.monitor or "")
            if metric is None:
                if config.strict:
                    raise MisconfigurationException(
                        f"ReduceLROnPlateau conditioned on metric {config.monitor}"
                        f" which is not available. Available metrics are: {list(trainer.callback_metrics)}."
                        " Condition can be set using `monitor` key in lr scheduler dict"
                    )
                rank_zero_warn(
                    f"ReduceLROnPlateau conditioned on metric {config.monitor}"
                    " which is not available but strict is set to `False`."
                    " Skipping learning rate update.",
                    RuntimeWarning,
                )
                continue
        call_module(trainer, "lr_scheduler_step", config.scheduler, metric)
