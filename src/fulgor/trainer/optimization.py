"""One training batch: Lightning's closure contract (training_step runs inside `optimizer.step(closure)`),
accumulation, backward with its hooks, gradient clipping, manual optimization and LR scheduler stepping."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import Tensor
from torch.optim import Optimizer
from torch.optim import optimizer as optimizer_module

from fulgor.errors import MisconfigurationException
from fulgor.module import is_overridden
from fulgor.rank import rank_zero_warn, warn_once
from fulgor.strategies.strategy import Strategy
from fulgor.trainer.batch_hints import dict_batch_hint
from fulgor.trainer.dispatch import call_hook, call_module, set_fx_name

if TYPE_CHECKING:
    from fulgor.trainer.run import Run

# torch's own optimizers that call `closure` exactly once, before they update (all but LBFGS, which re-evaluates it):
# for them `optimizer.step(closure)` and `closure(); optimizer.step()` do the same math.
# The base `Strategy.backward`, taken at import: a strategy that overrides it (or a test that wraps it) is called.
_STRATEGY_BACKWARD = Strategy.backward
_CLOSURE_ONCE = frozenset(
    cls
    for name in torch.optim.__all__
    if isinstance(cls := getattr(torch.optim, name), type)
    and issubclass(cls, Optimizer)
    and cls not in (Optimizer, torch.optim.LBFGS)
)


class PlainSteps(NamedTuple):
    """Which parts of a batch can run as plain PyTorch because no hook, override or AMP scaler needs them
    (decided once per run; Lightning's defaults do exactly these calls, so the result is the same)."""

    zero_grad: bool  # optimizer.zero_grad(): no `on_before_zero_grad` receiver, `optimizer_zero_grad` not overridden
    backward: bool  # loss.backward(): no backward hooks, `backward` not overridden, no loss scaling
    before_step: bool  # nothing between backward and step: no receiver, no clipping, no unscaling
    optimizer_step: bool  # optimizer.step(closure): `optimizer_step` not overridden, no AMP scaler
    # The closure run first, then optimizer.step(): the optimizer is one of `_CLOSURE_ONCE` with no step pre-hooks
    # (which would run before the closure otherwise), and no profiler times the step. The raw loop's calls exactly.
    direct_step: bool


def plain_steps(run: Run) -> PlainSteps:
    """Resolve `PlainSteps` for this run from the hook table, the module's overrides and the optimizer (once the
    optimizers exist)."""
    module, hooks = run.module, run.hooks
    no_scaler = run.precision.scaler is None
    optimizer_step = no_scaler and not is_overridden("optimizer_step", module)
    return PlainSteps(
        zero_grad="on_before_zero_grad" not in hooks and not is_overridden("optimizer_zero_grad", module),
        backward=no_scaler
        and not hooks.keys() & {"on_before_backward", "on_after_backward"}
        and not is_overridden("backward", module)
        and type(run.strategy).backward is _STRATEGY_BACKWARD,
        before_step=no_scaler and "on_before_optimizer_step" not in hooks and not run.clipping,
        optimizer_step=optimizer_step,
        direct_step=optimizer_step and not run.profiling and _steps_after_one_closure_call(run.optimizers),
    )


def _steps_after_one_closure_call(optimizers: list[Optimizer]) -> bool:
    if len(optimizers) != 1 or type(optimizers[0]) not in _CLOSURE_ONCE:
        return False
    # Step pre-hooks (per optimizer or global) would run before the closure with `step(closure)`; a torch without these
    # attributes counts as having hooks.
    own = getattr(optimizers[0], "_optimizer_step_pre_hooks", None)
    shared = getattr(optimizer_module, "_global_optimizer_pre_hooks", None)
    return own is not None and shared is not None and not own and not shared


def train_batch(run: Run, batch: Any, batch_idx: int, stepping: bool) -> Mapping[str, Any] | list[Any] | None:
    """Run `training_step` and, when `stepping`, the optimizer step around it; return what
    `on_train_batch_end` receives (``{"loss": loss / accumulate_grad_batches, **extra}``; with Lightning 1.x's
    `optimizer_idx` loop, the list of those of each optimizer)."""
    if run.optimizer_loop is not None:
        return run.optimizer_loop.train_batch(batch, batch_idx, stepping)
    if not run.automatic:
        return _manual_batch(run, batch, batch_idx)
    optimizer = run.optimizers[0]
    zero_grad = batch_idx % run.config.accumulate_grad_batches == 0
    args = (batch, batch_idx) if run.step_takes_batch_idx else (batch,)
    result: list[Any] = [None, None, False]  # [loss (detached), extra outputs, whether the closure ran]

    def closure() -> Tensor | None:
        # An optimizer may call its closure under no_grad, and backward needs grad; torch's own optimizers enable it
        # first, so the usual case costs one check. (Not a retry through `closure` itself: a closure referring to
        # itself is a reference cycle that keeps every batch and loss alive until the next garbage collection.)
        result[2] = True
        grad_off = not torch.is_grad_enabled()
        if grad_off:
            torch.set_grad_enabled(True)
        try:
            loss = _training_step(run, args, result)
            _zero_grad_and_backward(run, optimizer, loss, batch_idx, zero_grad, stepping)
        finally:
            if grad_off:
                torch.set_grad_enabled(False)
        result[0] = None if loss is None else loss.detach()
        return result[0]  # type: ignore[no-any-return]

    plain = run.plain
    if not stepping:
        with run.strategy.no_backward_sync():
            closure()
    elif plain.direct_step:
        closure()
        optimizer.step()
    elif plain.optimizer_step:
        optimizer.step(closure=closure)  # type: ignore[arg-type]  # torch types the closure as returning float
    else:
        module = run.module
        # Called inline rather than through `call_module`: one frame less between `fit` and `training_step`.
        module.__dict__["_current_fx_name"] = "optimizer_step"
        module.optimizer_step(run.state.epoch, batch_idx, run.lightning_optimizers[0], closure)
        module.__dict__["_current_fx_name"] = None
    if not result[2]:  # an `optimizer_step` override, or an optimizer, that did not call the closure
        raise MisconfigurationException(_CLOSURE_NOT_RUN)
    if stepping:
        run.state.global_step += 1
    loss, extra, _ = result  # the loss detached once, for the optimizer and for `on_train_batch_end`
    return {} if loss is None else {"loss": loss, **extra}


_CLOSURE_NOT_RUN = (
    "The closure hasn't been executed. HINT: did you call `optimizer_closure()` in your `optimizer_step` hook? It could"
    " also happen because the `optimizer.step(optimizer_closure)` call did not execute it internally."
)


_SKIP_IN_DISTRIBUTED = (
    "Skipping the `training_step` by returning None in distributed training is not supported. It is recommended that"
    " you rewrite your training logic to avoid having to skip the step in the first place."
)


def _training_step(run: Run, args: tuple[Any, ...], result: list[Any]) -> Tensor | None:
    """`training_step(*args)` with `self.log` context and the precision's autocast (entered only when it does
    something), then 1.x `training_step_end`; returns the loss to back-propagate, keeps the extra outputs."""
    step = run.training_step
    assert step is not None
    fx = run.module.__dict__  # `_current_fx_name` is set directly: nn.Module.__setattr__ is slow per step
    previous = fx["_current_fx_name"]
    fx["_current_fx_name"] = "training_step"
    try:
        if run.autocast is None:
            output = step(*args)
        else:
            with run.autocast():
                output = step(*args)
    except (TypeError, ValueError) as error:  # a dict batch unpacked as a tuple: say so first
        hinted = dict_batch_hint(error, "training_step", args[0] if args else None)
        if hinted is None:
            raise
        raise hinted from error
    fx["_current_fx_name"] = previous
    if output is None and run.trainer.world_size > 1:
        raise RuntimeError(_SKIP_IN_DISTRIBUTED)  # the other processes would wait forever in the gradient all-reduce
    if run.legacy is not None:  # 1.x `training_step_end`
        output = run.legacy.after_step("training_step", output)
    loss, result[1] = parse_step_output(output, run.config.accumulate_grad_batches)
    return loss


def _zero_grad_and_backward(
    run: Run, optimizer: Optimizer, loss: Tensor | None, batch_idx: int, zero_grad: bool, stepping: bool
) -> None:
    """The closure after `training_step`: zero_grad (first batch of a window), backward, the before-step work."""
    plain = run.plain
    if loss is None:
        warn_once("`training_step` returned `None`. If this was on purpose, ignore this warning...")
    if zero_grad:
        if plain.zero_grad:
            optimizer.zero_grad()
        else:
            call_hook(run, "on_before_zero_grad", optimizer)
            call_module(run, "optimizer_zero_grad", run.state.epoch, batch_idx, optimizer)
    if loss is not None:
        if plain.backward:
            loss.backward()  # type: ignore[no-untyped-call]
        else:
            run.strategy.backward(loss, optimizer)
    if stepping and not plain.before_step:
        before_optimizer_step(run, optimizer, unscale=loss is not None)


def parse_step_output(output: Any, accumulate: int) -> tuple[Tensor | None, dict[str, Any]]:
    """Split what `training_step` returned (automatic optimization) into the loss, divided by `accumulate`, and the
    other outputs; `(None, {})` when it returned None (the step is skipped)."""
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


def before_optimizer_step(run: Run, optimizer: Optimizer, unscale: bool) -> None:
    """Unscale AMP gradients, then `on_before_optimizer_step` and the module's gradient clipping."""
    if unscale:  # a GradScaler cannot unscale gradients no backward produced
        run.precision.unscale_gradients(optimizer)
    call_hook(run, "on_before_optimizer_step", optimizer)
    if run.clipping:
        config = run.config
        call_module(  # by keyword, as Lightning passes them: an override must use these two names
            run,
            "configure_gradient_clipping",
            optimizer,
            gradient_clip_val=config.gradient_clip_val,
            gradient_clip_algorithm=config.gradient_clip_algorithm,
        )


def run_backward(run: Run, loss: Tensor, *args: Any, **kwargs: Any) -> None:
    """on_before_backward → LightningModule.backward (AMP-scaled loss) → on_after_backward."""
    loss = run.precision.scale_loss(loss)
    call_hook(run, "on_before_backward", loss)
    call_module(run, "backward", loss, *args, **kwargs)
    call_hook(run, "on_after_backward")


def _manual_batch(run: Run, batch: Any, batch_idx: int) -> dict[str, Any] | None:
    module = run.module
    step = run.training_step
    assert step is not None
    set_fx_name(module, "training_step")
    with run.precision.autocast():
        output = step(batch, batch_idx) if run.step_takes_batch_idx else step(batch)
    set_fx_name(module, None)
    if run.legacy is not None:  # 1.x `training_step_end`
        output = run.legacy.after_step("training_step", output)
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


def step_schedulers(run: Run, interval: str, plateau: bool, batch_idx: int) -> None:
    """Step the LR schedulers of `interval` ("step"/"epoch") whose frequency is due (plateau ones separately)."""
    if not run.module.automatic_optimization:
        return
    loop = run.optimizer_loop
    for config in run.lr_scheduler_configs:
        if config.reduce_on_plateau != plateau or config.interval != interval:
            continue
        if loop is not None and not loop.steps_scheduler(config):
            continue  # 1.x: only the schedulers of the optimizers that were active at the last batch
        index = (batch_idx if interval == "step" else run.state.epoch) + 1
        if index % config.frequency:
            continue
        metric = None
        if config.reduce_on_plateau:
            metrics = run.trainer.callback_metrics
            metric = metrics.get(config.monitor or "")
            if metric is None:
                if config.strict:
                    raise MisconfigurationException(
                        f"ReduceLROnPlateau conditioned on metric {config.monitor}"
                        f" which is not available. Available metrics are: {list(metrics)}."
                        " Condition can be set using `monitor` key in lr scheduler dict"
                    )
                rank_zero_warn(
                    f"ReduceLROnPlateau conditioned on metric {config.monitor}"
                    " which is not available but strict is set to `False`."
                    " Skipping learning rate update.",
                    RuntimeWarning,
                )
                continue
        args = (config.scheduler, metric) if loop is None else loop.scheduler_args(config, metric)
        call_module(run, "lr_scheduler_step", *args)
