"""Optimizers and LR schedulers: parsing what `configure_optimizers` returns, the scheduler config, and the
`LightningOptimizer` wrapper handed to `optimizer_step` and returned by `self.optimizers()`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from torch.optim import Optimizer

from fulgor.errors import MisconfigurationException
from fulgor.module import LightningModule, is_overridden
from fulgor.rank import rank_zero_warn
from fulgor.trainer.dispatch import call_hook

if TYPE_CHECKING:
    from fulgor.trainer.run import Run

_UNKNOWN_CONFIG = (
    "Unknown configuration for model optimizers."
    " Output from `model.configure_optimizers()` should be one of:\n"
    " * `Optimizer`\n"
    " * [`Optimizer`]\n"
    " * ([`Optimizer`], [`LRScheduler`])\n"
    ' * {"optimizer": `Optimizer`, (optional) "lr_scheduler": `LRScheduler`}\n'
)


class MissingOptimizerKeyError(KeyError, MisconfigurationException):
    """`configure_optimizers` returned a dict without an "optimizer" key: a `KeyError` (the type Lightning raises)
    that is also a `MisconfigurationException` (fulgor's type for every other malformed configuration)."""

    def __str__(self) -> str:  # KeyError prints the repr of its argument; this one is a sentence
        return str(self.args[0])


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
    # How it was given (for the checks that depend on automatic/manual optimization); not config keys.
    _from_dict: bool = field(default=False, init=False, repr=False, compare=False)
    _given_keys: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)


class LightningOptimizer:
    """Wraps a torch optimizer: `step()` goes through the precision (AMP) and, in manual optimization, counts a
    global step and runs `on_before_optimizer_step`; other attributes are the wrapped optimizer's.

    Its class is created per optimizer as a subclass of both this class and the optimizer's class, named
    ``"Lightning" + <optimizer class name>`` (``LightningSGD``), so ``isinstance(opt, torch.optim.SGD)`` holds and
    a scheduler can be built on it, as in Lightning.
    """

    def __init__(self, optimizer: Optimizer, run: Run | None = None) -> None:
        self.__dict__["_optimizer"] = optimizer
        self.__dict__["_run"] = run  # the run whose precision, hooks and step counter `step` goes through
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

    def __reduce__(self) -> tuple[Any, ...]:
        # Its class is made per instance and cannot be found by name: pickle (`torch.save(trainer)`) rebuilds the
        # wrapper around the pickled optimizer instead (the run is not kept: it is set again when training resumes).
        return (LightningOptimizer, (self.__dict__["_optimizer"],))

    def __repr__(self) -> str:
        return repr(self._optimizer)

    # The optimizer class's own methods would run on the wrapper (and `load_state_dict` would fill the wrapper's
    # `__dict__`): the ones users call go to the wrapped optimizer explicitly.
    def zero_grad(self, set_to_none: bool = True) -> None:
        """`optimizer.zero_grad(set_to_none)` of the wrapped optimizer."""
        self._optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        """The wrapped optimizer's `state_dict()`."""
        state: dict[str, Any] = self._optimizer.state_dict()
        return state

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
        run: Run | None = self._run
        if run is None:
            return self._optimizer.step(closure=closure, **kwargs)
        precision = run.precision
        if run.module.automatic_optimization:
            # The loop's closure already runs on_before_optimizer_step and clipping; the loop counts the step.
            if precision.scaler is None:
                return self._optimizer.step(closure=closure, **kwargs)
            return precision.optimizer_step(self._optimizer, closure, **kwargs)
        output = precision.optimizer_step(
            self._optimizer,
            partial(_manual_closure, run, self._optimizer, closure),
            automatic_optimization=False,
            **kwargs,
        )
        run.state.global_step += 1  # after the step, as Lightning's progress counts completed steps
        return output


def _manual_closure(run: Run, optimizer: Optimizer, closure: Callable[[], Any]) -> Any:
    """The user's closure, then (gradients unscaled) `on_before_optimizer_step`, as Lightning's precision does."""
    result = closure()
    run.precision.unscale_gradients(optimizer)
    call_hook(run, "on_before_optimizer_step", optimizer)
    return result


def _no_closure() -> None:
    return None


def parse_configure_optimizers(output: Any) -> tuple[list[Optimizer], list[LRSchedulerConfig], str | None]:
    """Turn what `configure_optimizers` returned into (optimizers, scheduler configs, monitor).

    Only the shape is checked here; `validate_schedulers` applies the rules that depend on the module (automatic
    or manual optimization). Accepted: an optimizer; a list/tuple of optimizers; ``([optimizers], scheduler(s))``;
    a dict ``{"optimizer", "lr_scheduler", "monitor"}``; a list/tuple of such dicts; None (a no-op optimizer).

    Raises:
        MisconfigurationException: any other shape (Lightning's "Unknown configuration" message).
    """
    if output is None:
        rank_zero_warn("`LightningModule.configure_optimizers` returned `None`, this fit will run with no optimizer")
        output = _MockOptimizer()
    if _is_optimizer(output):
        return [output], [], None
    if (
        isinstance(output, (list, tuple))
        and len(output) == 2
        and isinstance(output[0], list)
        and all(_is_optimizer(o) for o in output[0])
    ):
        schedulers = output[1] if isinstance(output[1], list) else [output[1]]
        return list(output[0]), [_scheduler_config(s, None) for s in schedulers], None
    if isinstance(output, Mapping):
        optimizer, scheduler, monitor = _parse_dict(output)
        return [optimizer], [] if scheduler is _ABSENT else [_scheduler_config(scheduler, monitor)], monitor
    if isinstance(output, (list, tuple)) and all(isinstance(d, Mapping) for d in output):
        # As in Lightning, a "monitor" next to a scheduler in a *list* of dicts is not used: give it in the
        # lr_scheduler dict instead.
        parsed = [_parse_dict(d) for d in output]
        configs = [_scheduler_config(s, None, always_dict=True) for _, s, _ in parsed if s is not _ABSENT]
        return [o for o, _, _ in parsed], configs, None
    if isinstance(output, (list, tuple)) and all(_is_optimizer(o) for o in output):
        return list(output), [], None
    raise MisconfigurationException(_UNKNOWN_CONFIG)


def optimizer_frequencies(output: Any) -> list[int]:
    """The `frequency` of each optimizer dict in a list of dicts `configure_optimizers` returned (Lightning 1.x's
    schedule for its `optimizer_idx` loop); empty when none is given or the output has another shape.

    Raises:
        ValueError: some dicts give a `frequency` and others do not (1.9.5's message).
    """
    if not (isinstance(output, (list, tuple)) and output and all(isinstance(d, Mapping) for d in output)):
        return []
    frequencies = [d["frequency"] for d in output if d.get("frequency") is not None]
    if frequencies and len(frequencies) != len(output):
        raise ValueError("A frequency must be given to each optimizer.")
    return frequencies


_ABSENT = object()  # "no lr_scheduler key" (a None value is passed on, and rejected, as in Lightning)


def _parse_dict(d: Mapping[str, Any]) -> tuple[Optimizer, Any, str | None]:
    extra = set(d) - {"optimizer", "lr_scheduler", "monitor"}
    if extra:
        rank_zero_warn(f"Found unsupported keys in the optimizer configuration: {extra}", RuntimeWarning)
    if "optimizer" not in d:
        raise MissingOptimizerKeyError(
            "'optimizer': the dict `configure_optimizers` returned has no \"optimizer\" key (keys found:"
            f' {sorted(map(str, d))}). Return `{{"optimizer": optimizer, "lr_scheduler": ...}}`.'
        )
    if not _is_optimizer(d["optimizer"]):
        raise MisconfigurationException(_UNKNOWN_CONFIG)
    return d["optimizer"], d.get("lr_scheduler", _ABSENT), d.get("monitor")


_CONFIG_KEYS = frozenset(("scheduler", "name", "interval", "frequency", "reduce_on_plateau", "monitor", "strict"))
_MANUAL_IGNORED_KEYS = ("reduce_on_plateau", "monitor", "strict")


def _scheduler_config(scheduler: Any, monitor: str | None, always_dict: bool = False) -> LRSchedulerConfig:
    """One scheduler (bare, or its config dict) as an `LRSchedulerConfig`; `monitor` applies to a bare one."""
    if not isinstance(scheduler, Mapping):
        if not always_dict:
            return LRSchedulerConfig(scheduler, reduce_on_plateau=_is_plateau(scheduler), monitor=monitor)
        scheduler = {"scheduler": scheduler}
    extra = set(scheduler) - _CONFIG_KEYS
    if extra:
        rank_zero_warn(
            f"Found unsupported keys in the lr scheduler dict: {extra}."
            " HINT: remove them from the output of `configure_optimizers`.",
            RuntimeWarning,
        )
    if "scheduler" not in scheduler:
        raise MisconfigurationException(
            'The lr scheduler dict must have the key "scheduler" with its item being an lr scheduler'
        )
    kwargs = {k: v for k, v in scheduler.items() if k in _CONFIG_KEYS}
    if kwargs.get("interval", "epoch") not in ("step", "epoch"):
        raise MisconfigurationException(
            f'The "interval" key in lr scheduler dict must be "step" or "epoch" but is "{kwargs["interval"]}"'
        )
    kwargs.setdefault("reduce_on_plateau", _is_plateau(kwargs["scheduler"]))
    config = LRSchedulerConfig(**kwargs)
    config._from_dict = True
    config._given_keys = tuple(k for k in scheduler if k in _MANUAL_IGNORED_KEYS)
    return config


def validate_schedulers(optimizers: Sequence[Optimizer], configs: Sequence[LRSchedulerConfig], module: Any) -> None:
    """The rules that depend on the module: a monitor for ReduceLROnPlateau and the OneCycleLR interval (automatic
    optimization), ignored keys (manual), schedulers on returned optimizers, and torch's scheduler API.

    Raises:
        MisconfigurationException: a plateau scheduler without monitor, a scheduler on another optimizer, or a
            custom scheduler without an `lr_scheduler_step` override (automatic optimization).
        TypeError: a scheduler without `state_dict`/`load_state_dict`.
    """
    automatic = module.automatic_optimization
    for config in configs:
        if automatic:
            _check_automatic(config)
        else:
            _to_manual(config)
    for config in configs:
        owner = getattr(config.scheduler, "optimizer", None)
        if all(owner is not opt for opt in optimizers):
            raise MisconfigurationException(
                "Some schedulers are attached with an optimizer that wasn't returned from `configure_optimizers`."
            )
    for config in configs:
        _check_scheduler_api(config.scheduler, module, automatic)


def _check_automatic(config: LRSchedulerConfig) -> None:
    if config.reduce_on_plateau and config.monitor is None:
        raise MisconfigurationException(_PLATEAU_DICT if config._from_dict else _PLATEAU_BARE)
    if isinstance(config.scheduler, torch.optim.lr_scheduler.OneCycleLR) and config.interval == "epoch":
        rank_zero_warn(
            "A `OneCycleLR` scheduler is using 'interval': 'epoch'. Are you sure you didn't mean 'interval': 'step'?",
            RuntimeWarning,
        )


def _to_manual(config: LRSchedulerConfig) -> None:
    """Manual optimization: the user steps schedulers, so monitor/strict/reduce_on_plateau mean nothing."""
    if config._given_keys:
        rank_zero_warn(
            f"The lr scheduler dict contains the key(s) {list(config._given_keys)}, but the keys will be ignored."
            " You need to call `lr_scheduler.step()` manually in manual optimization.",
            RuntimeWarning,
        )
    config.reduce_on_plateau, config.monitor, config.strict = False, None, True


def _check_scheduler_api(scheduler: Any, module: Any, automatic: bool) -> None:
    if not (hasattr(scheduler, "state_dict") and hasattr(scheduler, "load_state_dict")):
        raise TypeError(
            f"The provided lr scheduler `{type(scheduler).__name__}` is invalid."
            " It should have `state_dict` and `load_state_dict` methods defined."
        )
    is_torch = isinstance(scheduler, (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau))
    if automatic and not is_torch and not is_overridden("lr_scheduler_step", module, LightningModule):
        raise MisconfigurationException(
            f"The provided lr scheduler `{type(scheduler).__name__}` doesn't follow PyTorch's LRScheduler"
            " API. You should override the `LightningModule.lr_scheduler_step` hook with your own logic if"
            " you are using a custom LR scheduler."
        )


_PLATEAU_DICT = (
    "The lr scheduler dict must include a monitor when a `ReduceLROnPlateau` scheduler is used."
    ' For example: {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "your_loss"}}'
)
_PLATEAU_BARE = (
    "`configure_optimizers` must include a monitor when a `ReduceLROnPlateau` scheduler is used."
    ' For example: {"optimizer": optimizer, "lr_scheduler": scheduler, "monitor": "metric_to_track"}'
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

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}  # as Lightning's: nothing to checkpoint

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        pass

    def __repr__(self) -> str:
        return "No Optimizer"
