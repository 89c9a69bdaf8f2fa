"""call_hook(): the only code that calls notification hooks. Receivers are resolved once per run from
`fulgor.hooks.HOOKS`, keeping only overridden methods, so a hook nobody overrides costs one dict lookup."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

from fulgor.callbacks.callback import Callback
from fulgor.hooks import HOOKS
from fulgor.module import LightningModule, is_overridden

if TYPE_CHECKING:
    from fulgor.trainer.trainer import Trainer

Fn = Callable[..., Any]


class Receivers(NamedTuple):
    """The resolved calls of one hook: `before` the module, the module's own method, and `after` it."""

    before: tuple[Fn, ...]
    module: Fn | None
    after: tuple[Fn, ...]


_NOBODY = Receivers((), None, ())


def resolve_hooks(trainer: Trainer) -> dict[str, Receivers]:
    """Bind every overridden hook of the callbacks, module and datamodule, in the table's order."""
    module = trainer.lightning_module
    datamodule = trainer.datamodule
    from fulgor.datamodule import LightningDataModule

    timed = _timer(trainer)
    table: dict[str, Receivers] = {}
    for name, receivers in HOOKS.items():
        before: list[Fn] = []
        after: list[Fn] = []
        module_fn: Fn | None = None
        for receiver in receivers:
            if receiver == "M":
                if is_overridden(name, module, LightningModule):
                    module_fn = timed(getattr(module, name), f"[LightningModule]{type(module).__name__}.{name}")
            elif receiver == "DM":
                if datamodule is not None and is_overridden(name, datamodule, LightningDataModule):
                    action = f"[LightningDataModule]{type(datamodule).__name__}.{name}"
                    (after if module_fn else before).append(timed(getattr(datamodule, name), action))
            else:
                fns = _callback_fns(trainer, name, receiver, timed)
                (after if module_fn else before).extend(fns)
        if before or after or module_fn:
            table[name] = Receivers(tuple(before), module_fn, tuple(after))
    return table


def _callback_fns(trainer: Trainer, name: str, receiver: str, timed: Callable[[Fn, str], Fn]) -> list[Fn]:
    module = trainer.lightning_module
    fns: list[Fn] = []
    for callback in trainer.callbacks:
        if receiver == "C:plain" and callback.monitors_metrics:
            continue
        if receiver == "C:monitoring" and not callback.monitors_metrics:
            continue
        if is_overridden(name, callback, Callback) and name not in callback._idle_hooks():
            action = f"[Callback]{callback.state_key}.{name}"
            fns.append(timed(partial(getattr(callback, name), trainer, module), action))
    return fns


def _untimed(fn: Fn, action: str) -> Fn:
    return fn


def _timer(trainer: Trainer) -> Callable[[Fn, str], Fn]:
    """How receivers are bound this run: as they are, or (with a real profiler) wrapped to time each call as
    Lightning's action names, so the default run pays nothing per call."""
    profiler = getattr(trainer, "profiler", None)
    from fulgor.profilers import is_active

    if profiler is None or not is_active(profiler):
        return _untimed
    return partial(profiled, profiler)


def profiled(profiler: Any, fn: Fn, action: str) -> Fn:
    """`fn` wrapped to run inside `profiler.profile(action)`."""

    def timed_call(*args: Any, **kwargs: Any) -> Any:
        with profiler.profile(action):
            return fn(*args, **kwargs)

    return timed_call


def set_fx_name(module: LightningModule, name: str | None) -> None:
    """Set the hook name `self.log` checks against, without `nn.Module.__setattr__`'s costly per-call checks."""
    module.__dict__["_current_fx_name"] = name


def call_hook(trainer: Trainer, name: str, *args: Any) -> Any:
    """Call hook `name` on its receivers in order; return the LightningModule's result (callbacks' are ignored)."""
    receivers = trainer._hooks.get(name, _NOBODY)
    if receivers is _NOBODY:
        return None
    module = trainer.lightning_module
    previous = module._current_fx_name
    set_fx_name(module, name)
    try:
        for fn in receivers.before:
            fn(*args)
        result = receivers.module(*args) if receivers.module is not None else None
        for fn in receivers.after:
            fn(*args)
    finally:
        set_fx_name(module, previous)
    return result


def call_module(trainer: Trainer, name: str, *args: Any, **kwargs: Any) -> Any:
    """Call a LightningModule method that returns a value the loop needs, with `self.log` context set."""
    module = trainer.lightning_module
    previous = module._current_fx_name
    set_fx_name(module, name)
    try:
        return getattr(module, name)(*args, **kwargs)
    finally:
        set_fx_name(module, previous)
