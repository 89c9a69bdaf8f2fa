"""Optimizers and LR schedulers: parsing what `configure_optimizers` returns, the scheduler config, and the
`LightningOptimizer` wrapper handed to `optimizer_step` and returned by `self.optimizers()`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from torch.optim import Optimizer

from fulgor.errors import MisconfigurationException
from fulgor.rank import rank_zero_warn

if TYPE_CHECKING:
    from fulgor.trainer.trainer import Trainer

_UNKNOWN_CONFIG = (
    "Unknown configuration for model optimizers."
    " Output from `model.configure_optimizers()` should be one of:\n"
    " * `Optimizer`\n"
    " * [`Optimizer`]\n"
    " * ([`Optimizer`], [`LRScheduler`])\n"
    ' * {"optimizer": `Optimizer`, (optional) "lr_scheduler": `LRScheduler`}\n'
)


@dataclass
class LRSchedulerConfig:
    """How and when one LR scheduler is stepped (the keys of the `lr_scheduler` dict)."""

    scheduler: Any
    name: str | None = None
    interval: str = "epoch"
    frequency: int = 1
    reduce_on_plateau: bool = False
    monitor: str | None = None
    strict: bool = True


class LightningOptimizer:
    """Wraps a torch optimizer: `step()` goes through the precision (AMP) and, in manual optimization, counts a
    global step and runs `on_before_optimizer_step`; other attributes are the wrapped optimizer's.

    Its class is created per optimizer as a subclass of both this class and the optimizer's class, named
    ``"Lightning" + <optimizer class name>`` (``LightningSGD``), so ``isinstance(opt, torch.optim.SGD)`` holds and
    a scheduler can be built on it, as in Lightning.
    """

    def __init__(self, optimizer: Optimizer) -> None:
        self.__dict__["_optimizer"] = optimizer
        self.__dict__["_trainer"] = None
        cls = type("Lightning" + type(optimizer).__name__, (LightningOptimizer, type(optimizer)), {})
        object.__setattr__(self, "__class__", cls)

    @property
    def optimizer(self) -> Optimizer:
        """The wrapped torch optimizer."""
        return self._optimizer  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_optimizer"], name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._optimizer, name, value)

    def __repr__(self) -> str:
        return repr(self._optimizer)

    # The optimizer class's own methods would run on the wrapper (and `load_state_dict` would fill the wrapper's
    # `__dict__`): the ones users call go to the wrapped optimizer explicitly.
    def zero_grad(self, set_to_none: bool = True) -> None:
        """`optimizer.zero_grad(set_to_none)` of the wrapped optimizer."""
        self._optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        """The wrapped optimizer's `state_dict()`."""
        return self._optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load into the wrapped optimizer."""
        self._optimizer.load_state_dict(state_dict)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a parameter group to the wrapped optimizer."""
        self._optimizer.add_param_group(param_group)

    def step(self, closure: Callable[[], Any] | None = None, **kwargs: Any) -> Any:
        """Step the optimizer through the Trainer's precision; `closure` is required by some optimizers (LBFGS).

        In manual optimization every call counts as one `global_step` (two optimizers stepped per batch: +2), and
        `on_before_optimizer_step` runs after the closure (gradients unscaled under "16-mixed").

        Raises:
            MisconfigurationException: `closure` is given but not callable.
        """
        if closure is None:
            closure = _no_closure
        elif not callable(closure):
            raise MisconfigurationException("When `optimizer.step(closure)` is called, the closure should be callable")
        trainer: Trainer | None = self._trainer
        if trainer is None:
            return self._optimizer.step(closure=closure, **kwargs)
        precision = trainer.precision_plugin
        if trainer.lightning_module.automatic_optimization:
            # The loop's closure already runs on_before_optimizer_step and clipping; the loop counts the step.
            if precision.scaler is None:
                return self._optimizer.step(closure=closure, **kwargs)
            return precision.optimizer_step(self._optimizer, closure, **kwargs)
        output = precision.optimizer_step(
            self._optimizer, partial(_manual_closure, trainer, self._optimizer, closure), automatic_optimization=False, **kwargs
        )
        trainer.state.global_step += 1  # after the step, as Lightning's progress counts completed steps
        return output


def _manual_closure(trainer: Trainer, optimizer: Optimizer, closure: Callable[[], Any]) -> Any:
    """The user's closure, then (gradients unscaled) `on_before_optimizer_step`, as Lightning's precision does."""
    from fulgor.trainer.dispatch import call_hook

    result = closure()
    trainer.precision_plugin.unscale_gradients(optimizer)
    call_hook(trainer, "on_before_optimizer_step", optimizer)
    return result


def _no_closure() -> None:
    return None


def parse_configure_optimizers(output: Any) -> tuple[list[Optimizer], list[LRSchedulerConfig], str | None]:
    """Turn what `configure_optimizers` returned into (optimizers, scheduler configs, monitor)."""
    if output is None:
        rank_zero_warn("`LightningModule.configure_optimizers` returned `None`, this fit will run with no optimizer")
        return [_MockOptimizer()], [], None
    if _is_optimizer(output):
        return [output], [], None
    if isinstance(output, Mapping):
        return _parse_dicts([output])
    if isinstance(output, (list, tuple)):
        items = list(output)
        if items and all(_is_optimizer(o) for o in items):
            return items, [], None
        if items and all(isinstance(o, Mapping) for o in items):
            return _parse_dicts(items)
        if len(items) == 2 and isinstance(items[0], list) and all(_is_optimizer(o) for o in items[0]):
            schedulers = items[1] if isinstance(items[1], (list, tuple)) else [items[1]]
            return list(items[0]), [_scheduler_config(s, None) for s in schedulers], None
    raise MisconfigurationException(_UNKNOWN_CONFIG)


def _parse_dicts(dicts: list[Mapping[str, Any]]) -> tuple[list[Optimizer], list[LRSchedulerConfig], str | None]:
    optimizers, configs = [], []
    monitor = None
    for d in dicts:
        extra = set(d) - {"optimizer", "lr_scheduler", "monitor"}
        if extra:
            rank_zero_warn(f"Found unsupported keys in the optimizer configuration: {extra}", RuntimeWarning)
        if "optimizer" not in d or not _is_optimizer(d["optimizer"]):
            raise MisconfigurationException(_UNKNOWN_CONFIG)
        optimizers.append(d["optimizer"])
        monitor = d.get("monitor", monitor)
        if d.get("lr_scheduler") is not None:
            configs.append(_scheduler_config(d["lr_scheduler"], d.get("monitor")))
    return optimizers, configs, monitor


def _scheduler_config(scheduler: Any, monitor: str | None) -> LRSchedulerConfig:
    if isinstance(scheduler, Mapping):
        if "scheduler" not in scheduler:
            raise MisconfigurationException(
                'The lr scheduler dict must have the key "scheduler" with its item being an lr scheduler'
            )
        known = {f.name for f in fields(LRSchedulerConfig)}
        extra = set(scheduler) - known
        if extra:
            rank_zero_warn(
                f"Found unsupported keys in the lr scheduler dict: {extra}."
                " HINT: remove them from the output of `configure_optimizers`.",
                RuntimeWarning,
            )
        kwargs = {k: v for k, v in scheduler.items() if k in known}
        if "interval" in kwargs and kwargs["interval"] not in ("step", "epoch"):
            raise MisconfigurationException(
                f'The "interval" key in lr scheduler dict must be "step" or "epoch" but is "{kwargs["interval"]}"'
            )
        kwargs.setdefault("reduce_on_plateau", _is_plateau(kwargs["scheduler"]))
        kwargs.setdefault("monitor", monitor)
        config = LRSchedulerConfig(**kwargs)
        if config.reduce_on_plateau and config.monitor is None:
            raise MisconfigurationException(
                "The lr scheduler dict must include a monitor when a `ReduceLROnPlateau` scheduler is used."
                ' For example: {"optimizer": optimizer, "lr_scheduler":'
                ' {"scheduler": scheduler, "monitor": "your_loss"}}'
            )
        return config
    if _is_plateau(scheduler) and monitor is None:
        raise MisconfigurationException(
            "`configure_optimizers` must include a monitor when a `ReduceLROnPlateau` scheduler is used."
            ' For example: {"optimizer": optimizer, "lr_scheduler": scheduler, "monitor": "metric_to_track"}'
        )
    return LRSchedulerConfig(scheduler, reduce_on_plateau=_is_plateau(scheduler), monitor=monitor)


def validate_schedulers(optimizers: Sequence[Optimizer], configs: Sequence[LRSchedulerConfig], module: Any) -> None:
    """Lightning's checks: schedulers belong to returned optimizers and follow torch's API (or the hook is custom)."""
    from fulgor.module import LightningModule, is_overridden

    for config in configs:
        scheduler = config.scheduler
        owner = getattr(scheduler, "optimizer", None)
        if owner is not None and all(owner is not opt for opt in optimizers):
            raise MisconfigurationException(
                "Some schedulers are attached with an optimizer that wasn't returned from `configure_optimizers`."
            )
        if not (hasattr(scheduler, "state_dict") and hasattr(scheduler, "load_state_dict")):
            raise TypeError(
                f"The provided lr scheduler `{type(scheduler).__name__}` is invalid."
                " It should have `state_dict` and `load_state_dict` methods defined."
            )
        is_torch = isinstance(
            scheduler, (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        )
        if not is_torch and not is_overridden("lr_scheduler_step", module, LightningModule):
            raise MisconfigurationException(
                f"The provided lr scheduler `{type(scheduler).__name__}` doesn't follow PyTorch's LRScheduler"
                " API. You should override the `LightningModule.lr_scheduler_step` hook with your own logic if"
                " you are using a custom LR scheduler."
            )


def _is_optimizer(obj: Any) -> bool:
    return (
        callable(getattr(obj, "step", None))
        and callable(getattr(obj, "zero_grad", None))
        and not isinstance(obj, Mapping)
    )


def _is_plateau(scheduler: Any) -> bool:
    return isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


class _MockOptimizer(Optimizer):
    """Stands in when `configure_optimizers` returns None: stepping only runs the closure."""

    def __init__(self) -> None:
        super().__init__([torch.zeros(1)], {})

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        return closure() if closure is not None else None

    def zero_grad(self, set_to_none: bool = True) -> None:
        pass

    def __repr__(self) -> str:
        return "No Optimizer"
