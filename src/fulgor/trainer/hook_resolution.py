"""Which receivers each notification hook has: resolved once per run from the hook table (`fulgor.hooks.HOOKS`) and
what the callbacks, the module and the datamodule override, bound (and, with a real profiler, timed) for `call_hook`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from fulgor.callbacks.callback import Callback
from fulgor.datamodule import LightningDataModule
from fulgor.hooks import HOOKS
from fulgor.module import LightningModule
from fulgor.profilers import is_active
from fulgor.trainer.dispatch import Fn, Receivers

_MISSING = object()


def defines(obj: Any, name: str, parent: type) -> bool:
    """Whether calling `obj.name` can do anything `parent`'s default does not: its class overrides the method, or a
    callable was set on the instance (a wrapper included). A hook set to None on the instance (`model.validation_step
    = None`) is not defined, as Lightning does not call what is not callable."""
    if not isinstance(type(obj), type) or not issubclass(type(obj), parent):
        return callable(getattr(obj, name, None))  # duck-typed (a `Mock(spec=Callback)`): called, as Lightning does
    own = getattr(obj, "__dict__", {}).get(name, _MISSING)
    if own is not _MISSING:
        return callable(own)
    attr = getattr(type(obj), name, None)
    if attr is None:
        return False
    base = getattr(parent, name, None)
    if base is None:
        return callable(attr)
    return getattr(attr, "__code__", attr) is not getattr(base, "__code__", base)


def resolve_hooks(
    trainer: Any,
    callbacks: Sequence[Callback],
    module: LightningModule,
    datamodule: LightningDataModule | None,
    profiler: Any = None,
) -> dict[str, Receivers]:
    """Bind every overridden hook of the callbacks, module and datamodule, in the table's order; callback hooks
    receive `(trainer, module, *args)`."""
    timed = _timer(profiler)
    # A profiled run calls (and times) every hook, overridden or not, as Lightning records them all.
    wanted = defines if timed is _untimed else _callable
    table: dict[str, Receivers] = {}
    for name, receivers in HOOKS.items():
        before: list[Fn] = []
        after: list[Fn] = []
        module_fn: Fn | None = None
        for receiver in receivers:
            if receiver == "M":
                if wanted(module, name, LightningModule):
                    module_fn = timed(getattr(module, name), f"[LightningModule]{type(module).__name__}.{name}")
            elif receiver == "DM":
                if datamodule is not None and wanted(datamodule, name, LightningDataModule):
                    action = f"[LightningDataModule]{type(datamodule).__name__}.{name}"
                    (after if module_fn else before).append(timed(getattr(datamodule, name), action))
            else:
                fns = _callback_fns(trainer, callbacks, module, name, receiver, timed, wanted)
                (after if module_fn else before).extend(fns)
        if before or after or module_fn:
            table[name] = Receivers(tuple(before), module_fn, tuple(after))
    return table


def _callback_fns(
    trainer: Any,
    callbacks: Sequence[Callback],
    module: LightningModule,
    name: str,
    receiver: str,
    timed: Callable[[Fn, str], Fn],
    wanted: Callable[[Any, str, type], bool] = defines,
) -> list[Fn]:
    fns: list[Fn] = []
    for callback in callbacks:
        # Read on the class: a duck-typed callback (a Mock) is a plain one with no idle hooks.
        monitors = getattr(type(callback), "monitors_metrics", False) is True
        if receiver == ("C:plain" if monitors else "C:monitoring"):
            continue
        idle = callback._idle_hooks() if issubclass(type(callback), Callback) else frozenset()
        if wanted(callback, name, Callback) and (wanted is _callable or name not in idle):
            action = f"[Callback]{callback.state_key}.{name}"
            fns.append(timed(partial(getattr(callback, name), trainer, module), action))
    return fns


def _callable(obj: Any, name: str, parent: type) -> bool:
    """Whether `obj.name` can be called at all (a profiled run's receivers: overridden or not, except the hooks
    Lightning itself calls only when overridden)."""
    if name in _ONLY_OVERRIDDEN:
        return defines(obj, name, parent)
    return callable(getattr(obj, name, None))


_ONLY_OVERRIDDEN = frozenset({"prepare_data"})


def _untimed(fn: Fn, action: str) -> Fn:
    return fn


def _timer(profiler: Any) -> Callable[[Fn, str], Fn]:
    """How receivers are bound this run: as they are, or (with a real profiler) wrapped to time each call as
    Lightning's action names, so the default run pays nothing per call."""
    if profiler is None or not is_active(profiler):
        return _untimed
    return partial(profiled, profiler)


def profiled(profiler: Any, fn: Fn, action: str) -> Fn:
    """`fn` wrapped to run inside `profiler.profile(action)`."""

    def timed_call(*args: Any, **kwargs: Any) -> Any:
        with profiler.profile(action):
            return fn(*args, **kwargs)

    return timed_call
