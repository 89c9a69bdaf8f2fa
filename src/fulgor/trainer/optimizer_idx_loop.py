"""Lightning 1.x automatic optimization with several optimizers (`training_step(batch, batch_idx, optimizer_idx)`),
run as 1.9.5 ran it: each active optimizer in turn (the optimizer-dict `frequency` key picks them), its parameters
toggled, one closure each, and the 1.x hook signatures where the module's overrides declare them."""

from __future__ import annotations

import bisect
import inspect
import warnings
from collections.abc import Callable, Sequence
from itertools import accumulate
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from fulgor.hook_signature import is_param_in_hook_signature
from fulgor.lightning_errors import LightningDeprecationWarning
from fulgor.module import LightningModule, is_overridden
from fulgor.optimizer import optimizer_frequencies, parse_configure_optimizers
from fulgor.rank import rank_zero_warn
from fulgor.trainer.dispatch import call_hook, call_module, set_fx_name
from fulgor.trainer.optimization import before_optimizer_step, parse_step_output, run_backward

if TYPE_CHECKING:
    from fulgor.optimizer import LRSchedulerConfig
    from fulgor.trainer.run import Run

__all__ = ["OptimizerIdxLoop", "check_optimizer_idx", "parse_optimizers", "takes_optimizer_idx"]


def takes_optimizer_idx(module: Any) -> bool:
    """Whether `training_step` names an `optimizer_idx` parameter (the 1.x multiple-optimizer signature)."""
    return is_param_in_hook_signature(module.training_step, "optimizer_idx", explicit=True)


def parse_optimizers(run: Run, output: Any) -> tuple[list[Optimizer], list[LRSchedulerConfig]]:
    """What `configure_optimizers` returned, parsed, and the way the optimizers run chosen (`check_optimizer_idx`).

    A module written for the 1.x loop gives its optimizer dicts a `frequency` key, which that loop uses: 2.x's
    "unsupported keys" warning about that key alone would be wrong there, so it is left out.
    """
    with warnings.catch_warnings():
        if takes_optimizer_idx(run.module):
            warnings.filterwarnings("ignore", _FREQUENCY_ONLY, RuntimeWarning)
        optimizers, configs, _monitor = parse_configure_optimizers(output)
    check_optimizer_idx(run, optimizers, optimizer_frequencies(output))
    return optimizers, configs


_FREQUENCY_ONLY = r"Found unsupported keys in the optimizer configuration: \{'frequency'\}$"


def check_optimizer_idx(run: Run, optimizers: Sequence[Optimizer], frequencies: Sequence[int]) -> None:
    """Choose, once per fit, how the optimizers run: the 2.x paths (nothing to do), or the 1.x `optimizer_idx` loop
    (set on the run), or Lightning 2.6.6's errors for the combinations neither 1.9.5 nor 2.x ran.

    Raises:
        RuntimeError: `training_step` takes `optimizer_idx` but there is one optimizer or manual optimization; or
            several optimizers in automatic optimization without `optimizer_idx` (2.6.6's messages first).
        ValueError: `frequency` given for some optimizers but not all (1.9.5's message).
    """
    module = run.module
    if takes_optimizer_idx(module):
        if len(optimizers) > 1 and module.automatic_optimization:
            if frequencies and len(frequencies) != len(optimizers):
                raise ValueError("A frequency must be given to each optimizer.")
            rank_zero_warn(
                f"`{type(module).__name__}.training_step` takes `optimizer_idx` and `configure_optimizers` returned"
                f" {len(optimizers)} optimizers: fulgor runs them as Lightning 1.x did (each optimizer in turn with"
                " its parameters toggled, one closure each). Lightning 2.0 removed this; its replacement is manual"
                " optimization.",
                LightningDeprecationWarning,
            )
            run.optimizer_loop = OptimizerIdxLoop(run, optimizers, frequencies)
            return
        raise RuntimeError(
            "Training with multiple optimizers is only supported with manual optimization. Remove the `optimizer_idx`"
            " argument from `training_step`, set `self.automatic_optimization = False` and access your optimizers"
            " in `training_step` with `opt1, opt2, ... = self.optimizers()`. (fulgor still runs Lightning 1.x's"
            " `optimizer_idx` loop when `configure_optimizers` returns several optimizers in automatic optimization.)"
        )
    if len(optimizers) > 1 and module.automatic_optimization:
        raise RuntimeError(
            "Training with multiple optimizers is only supported with manual optimization. Set"
            " `self.automatic_optimization = False`, then access your optimizers in `training_step` with"
            " `opt1, opt2, ... = self.optimizers()`. (Or, as in Lightning 1.x, add an `optimizer_idx` argument to"
            " `training_step`: fulgor then calls it once per optimizer.)"
        )


def _declares(module: LightningModule, hook: str, param: str) -> bool:
    """The module overrides `hook` with its 1.x signature (a parameter named `param`)."""
    return is_overridden(hook, module) and is_param_in_hook_signature(getattr(module, hook), param, explicit=True)


class OptimizerIdxLoop:
    """One training batch over several optimizers, as 1.9.5's optimizer loop ran it.

    For each active optimizer (all of them, or with `frequency` the one whose turn it is at this `batch_idx`):
    `toggle_optimizer`, then `optimizer_step` with a closure that runs `training_step(batch, batch_idx, idx)`,
    `training_step_end`, zero_grad (first batch of an accumulation window), backward and the before-step hooks, then
    `untoggle_optimizer`. Every optimizer step counts one `global_step`, as in 1.9.5.
    """

    def __init__(self, run: Run, optimizers: Sequence[Optimizer], frequencies: Sequence[int]) -> None:
        module = run.module
        self.run = run
        self.count = len(optimizers)
        self.cycle = list(accumulate(frequencies))  # empty: every optimizer at every batch
        self.total_batch_idx = 0  # of the last batch run: 1.9.5 picks the schedulers to step by it
        self.step_args = _step_arguments(module)
        self.idx_in = {
            hook: _declares(module, hook, param)
            for hook, param in (
                ("optimizer_step", "optimizer_idx"),
                ("optimizer_zero_grad", "optimizer_idx"),
                ("backward", "optimizer_idx"),
                ("lr_scheduler_step", "optimizer_idx"),
                ("untoggle_optimizer", "optimizer_idx"),
                ("configure_gradient_clipping", "optimizer_idx"),
            )
        }
        receivers = run.hooks.get("on_before_optimizer_step")
        takes_idx = receivers is not None and any(
            fn is not None and _takes_extra_argument(fn, 1)
            for fn in (*receivers.before, receivers.module, *receivers.after)
        )
        self.legacy_before_step = takes_idx or self.idx_in["configure_gradient_clipping"]
        toggle = module.toggle_optimizer
        self.toggle_takes_idx = len(inspect.signature(toggle).parameters) >= 2

    def active(self, batch_idx: int) -> list[int]:
        """The indices of the optimizers that run at `batch_idx` (1.9.5's `_get_active_optimizers`)."""
        if not self.cycle:
            return list(range(self.count))
        return [bisect.bisect_right(self.cycle, batch_idx % self.cycle[-1])]

    def train_batch(self, batch: Any, batch_idx: int, stepping: bool) -> list[dict[str, Any]]:
        """Run the active optimizers on one batch; return what `on_train_batch_end` receives in 1.9.5: the outputs
        (``{"loss": ..., **extra}``) of the optimizers whose `training_step` returned a loss, in optimizer order."""
        run = self.run
        self.total_batch_idx = run.state.total_batch_idx
        outputs = []
        for idx in self.active(batch_idx):
            output = self._run_optimizer(idx, batch, batch_idx, stepping)
            if output is not None:
                outputs.append(output)
        return outputs

    def _run_optimizer(self, idx: int, batch: Any, batch_idx: int, stepping: bool) -> dict[str, Any] | None:
        run = self.run
        module = run.module
        optimizer = run.optimizers[idx]
        if self.toggle_takes_idx:
            module.toggle_optimizer(optimizer, idx)  # type: ignore[call-arg]  # the 1.x signature
        else:
            module.toggle_optimizer(optimizer)
        result: list[Any] = [None, {}]
        closure = self._closure(idx, batch, batch_idx, stepping, result)
        if not stepping:
            with run.strategy.no_backward_sync():
                closure()
        else:
            self._optimizer_step(idx, batch_idx, closure)
            run.state.global_step += 1
        untoggle: Any = module.untoggle_optimizer
        untoggle(idx if self.idx_in["untoggle_optimizer"] else optimizer)
        loss, extra = result
        return None if loss is None else {"loss": loss, **extra}

    def _closure(
        self, idx: int, batch: Any, batch_idx: int, stepping: bool, result: list[Any]
    ) -> Callable[[], Tensor | None]:
        run = self.run
        optimizer = run.optimizers[idx]
        args = (batch, batch_idx, idx) if self.step_args == 3 else (batch, idx)
        zero_grad = batch_idx % run.config.accumulate_grad_batches == 0

        def closure() -> Tensor | None:
            with torch.enable_grad():  # an optimizer may call its closure under no_grad
                loss = self._training_step(args, result)
                if zero_grad:
                    call_hook(run, "on_before_zero_grad", optimizer)
                    epoch = run.state.epoch
                    extra_args = (idx,) if self.idx_in["optimizer_zero_grad"] else ()
                    call_module(run, "optimizer_zero_grad", epoch, batch_idx, optimizer, *extra_args)
                if loss is not None:
                    run_backward(run, loss, *((optimizer, idx) if self.idx_in["backward"] else ()))
                if stepping:
                    self._before_step(idx, optimizer, unscale=loss is not None)
            result[0] = None if loss is None else loss.detach()
            return result[0]  # type: ignore[no-any-return]

        return closure

    def _before_step(self, idx: int, optimizer: Optimizer, unscale: bool) -> None:
        """`before_optimizer_step`, with `optimizer_idx` for the receivers that take it: 1.x's
        `on_before_optimizer_step(optimizer, optimizer_idx)` and `configure_gradient_clipping(optimizer, optimizer_idx,
        ...)` overrides, and callbacks' `on_before_optimizer_step(trainer, pl_module, optimizer, opt_idx)`."""
        run = self.run
        if not self.legacy_before_step:
            before_optimizer_step(run, optimizer, unscale)
            return
        if unscale:
            run.precision.unscale_gradients(optimizer)
        receivers = run.hooks.get("on_before_optimizer_step")
        if receivers is not None:
            module = run.module
            set_fx_name(module, "on_before_optimizer_step")
            for fn in (*receivers.before, receivers.module, *receivers.after):
                if fn is not None:
                    fn(optimizer, idx) if _takes_extra_argument(fn, 1) else fn(optimizer)
            set_fx_name(module, None)
        if run.clipping:
            config = run.config
            extra = (idx,) if self.idx_in["configure_gradient_clipping"] else ()
            call_module(
                run,
                "configure_gradient_clipping",
                optimizer,
                *extra,
                gradient_clip_val=config.gradient_clip_val,
                gradient_clip_algorithm=config.gradient_clip_algorithm,
            )

    def _training_step(self, args: tuple[Any, ...], result: list[Any]) -> Tensor | None:
        run = self.run
        step = run.training_step
        assert step is not None
        fx = run.module.__dict__
        previous = fx["_current_fx_name"]
        fx["_current_fx_name"] = "training_step"
        try:
            with run.precision.autocast():
                output = step(*args)
        finally:
            fx["_current_fx_name"] = previous
        if run.legacy is not None:  # 1.x `training_step_end`
            output = run.legacy.after_step("training_step", output)
        loss, result[1] = parse_step_output(output, run.config.accumulate_grad_batches)
        return loss

    def _optimizer_step(self, idx: int, batch_idx: int, closure: Callable[[], Tensor | None]) -> None:
        run = self.run
        module = run.module
        optimizer = run.lightning_optimizers[idx]
        epoch = run.state.epoch
        fx = module.__dict__
        fx["_current_fx_name"] = "optimizer_step"
        try:
            if self.idx_in["optimizer_step"]:  # 1.9.5's call: positional, then the flags it passed by keyword
                flags = {"on_tpu": False, "using_lbfgs": isinstance(optimizer, torch.optim.LBFGS)}
                if is_param_in_hook_signature(module.optimizer_step, "using_native_amp", explicit=True):
                    flags["using_native_amp"] = run.precision.scaler is not None
                step: Any = module.optimizer_step
                step(epoch, batch_idx, optimizer, idx, closure, **flags)
            else:
                module.optimizer_step(epoch, batch_idx, optimizer, closure)
        finally:
            fx["_current_fx_name"] = None

    # ------------------------------------------------------------------ schedulers
    def steps_scheduler(self, config: LRSchedulerConfig) -> bool:
        """Whether a due scheduler steps now: only those of the optimizers active at the last batch (1.9.5 picks
        them by the batch index counted across epochs)."""
        return self.owner(config) in self.active(self.total_batch_idx)

    def owner(self, config: LRSchedulerConfig) -> int:
        """The index of the optimizer a scheduler belongs to."""
        optimizer = getattr(config.scheduler, "optimizer", None)
        return next((i for i, opt in enumerate(self.run.optimizers) if opt is optimizer), 0)

    def scheduler_args(self, config: LRSchedulerConfig, metric: Any) -> tuple[Any, ...]:
        """`lr_scheduler_step`'s arguments: 1.x `(scheduler, optimizer_idx, metric)` when the override takes them."""
        if self.idx_in["lr_scheduler_step"]:
            return config.scheduler, self.owner(config), metric
        return config.scheduler, metric


def _takes_extra_argument(fn: Callable[..., Any], given: int) -> bool:
    """`fn` has more required positional parameters than the `given` 2.x arguments (a 1.x hook signature)."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return False
    return sum(p.kind in positional and p.default is inspect.Parameter.empty for p in parameters) > given


def _step_arguments(module: LightningModule) -> int:
    """How many arguments 1.9.5 passed to `training_step`: (batch, batch_idx, optimizer_idx), or (batch,
    optimizer_idx) when it takes no `batch_idx`."""
    parameters = list(inspect.signature(module.training_step).parameters)
    return 3 if "batch_idx" in parameters or len(parameters) >= 3 else 2
