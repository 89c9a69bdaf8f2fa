"""`is_param_in_hook_signature`: whether a hook accepts a given argument (e.g. `dataloader_idx`), as Lightning decides
which arguments to pass to user hooks."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["is_param_in_hook_signature"]


def is_param_in_hook_signature(
    hook_fx: Callable[..., Any], param: str, explicit: bool = False, min_args: int | None = None
) -> bool:
    """Whether `hook_fx` takes `param`.

    Args:
        hook_fx: the hook (a decorated hook is looked through to the function it wraps).
        param: the argument name.
        explicit: only a parameter of that name counts (not `*args`).
        min_args: it also counts when the hook takes at least this many arguments besides the first.

    Returns:
        True if the hook names `param`, takes `*args` (unless `explicit`), or has at least `min_args` arguments.
    """
    fn = getattr(hook_fx, "__wrapped__", hook_fx)
    spec = inspect.getfullargspec(fn)
    args = spec.args[1:]  # the first argument is `self` (hooks are methods)
    if param in args or (not explicit and spec.varargs is not None):
        return True
    return isinstance(min_args, int) and len(args) >= min_args
