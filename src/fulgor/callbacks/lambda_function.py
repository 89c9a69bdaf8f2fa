"""LambdaCallback: a callback made on the fly from functions passed as hook keyword arguments."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from fulgor.callbacks.callback import Callback

# Every notification hook of `Callback` (not the state methods): the names LambdaCallback accepts.
HOOK_NAMES = tuple(
    name
    for name, fn in inspect.getmembers(Callback, inspect.isfunction)
    if (name.startswith("on_") or name in ("setup", "teardown"))
)


class LambdaCallback(Callback):
    """A callback whose hooks are the functions you pass, e.g. ``LambdaCallback(on_train_epoch_end=fn)``.

    Each function receives the hook's arguments: ``fn(trainer, pl_module, ...)``. Hooks you do not pass cost
    nothing.

    Args:
        **hooks: hook name -> function; the names are those of `Callback` (``setup``, ``on_fit_start``, ...).

    Raises:
        TypeError: for a name that is not a callback hook, or a value that is not callable.
    """

    def __init__(self, **hooks: Callable[..., Any] | None) -> None:
        super().__init__()
        for name, fn in hooks.items():
            if name not in HOOK_NAMES:
                raise TypeError(
                    f"LambdaCallback.__init__() got an unexpected keyword argument {name!r}:"
                    f" it is not a callback hook. Valid hooks: {', '.join(HOOK_NAMES)}."
                )
            if fn is None:
                continue
            if not callable(fn):
                raise TypeError(f"`LambdaCallback({name}=...)` must be callable, got {type(fn).__name__}.")
            # An instance attribute shadows the base method, so the hook dispatcher sees it as overridden.
            setattr(self, name, fn)
