"""call_hook(): the only code that calls notification hooks. A run's receivers are resolved once from the hook table
(hook_resolution.py), keeping only overridden methods, so a hook nobody overrides costs one dict lookup."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from fulgor.module import LightningModule
    from fulgor.trainer.run import Run

Fn = Callable[..., Any]


class Receivers(NamedTuple):
    """The resolved calls of one hook: `before` the module, the module's own method, and `after` it."""

    before: tuple[Fn, ...]
    module: Fn | None
    after: tuple[Fn, ...]


_NOBODY = Receivers((), None, ())


def set_fx_name(module: LightningModule, name: str | None) -> None:
    """Set the hook name `self.log` checks against, without `nn.Module.__setattr__`'s costly per-call checks."""
    module.__dict__["_current_fx_name"] = name


def call_hook(run: Run, name: str, *args: Any, **kwargs: Any) -> Any:
    """Call hook `name` on its receivers in order, each with `*args, **kwargs` as Lightning passes them (callbacks
    get `trainer, pl_module` first); return the LightningModule's result (callbacks' are ignored)."""
    receivers = run.hooks.get(name, _NOBODY)
    if receivers is _NOBODY:
        return None
    module = run.module
    previous = module._current_fx_name
    set_fx_name(module, name)
    try:
        for fn in receivers.before:
            fn(*args, **kwargs)
        result = receivers.module(*args, **kwargs) if receivers.module is not None else None
        for fn in receivers.after:
            fn(*args, **kwargs)
    finally:
        set_fx_name(module, previous)
    return result


def call_module(run: Run, name: str, *args: Any, **kwargs: Any) -> Any:
    """Call a LightningModule method that returns a value the loop needs, with `self.log` context set."""
    module = run.module
    previous = module._current_fx_name
    set_fx_name(module, name)
    try:
        if run.profiling:  # timed under Lightning's action name (one attribute read otherwise)
            with run.trainer.profiler.profile(_module_action(run, name)):
                return getattr(module, name)(*args, **kwargs)
        return getattr(module, name)(*args, **kwargs)
    finally:
        set_fx_name(module, previous)


def _module_action(run: Run, name: str) -> str:
    """The profiler's name of a module call: `[LightningModule]<class>.<name>`; the backward pass goes through the
    strategy, so Lightning records it as the strategy's."""
    if name == "backward":
        return f"[Strategy]{type(run.strategy).__name__}.backward"
    return f"[LightningModule]{type(run.module).__name__}.{name}"
