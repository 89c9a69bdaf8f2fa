"""The checks Fabric's methods make before acting (the launch function, an overridden `run`, a model spread over
several devices), the context of `no_backward_sync`, and `Fabric.call`'s dispatch, where each callback gets only the
keyword arguments its method accepts."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from torch import nn
from torch.nn.parallel import DistributedDataParallel

from fulgor.errors import PossibleUserWarning
from fulgor.fabric.launching import spawns
from fulgor.rank import rank_zero_warn
from fulgor.strategies.fsdp import FSDPStrategy
from fulgor.strategies.single_device import SingleDeviceStrategy
from fulgor.strategies.strategy import Strategy

__all__ = [
    "accepted_kwargs",
    "backward_sync_context",
    "call_hooks",
    "check_launch_function",
    "check_run_override",
    "warn_mixed_devices",
]


def check_launch_function(function: Any, strategy: Strategy, nothing: Callable[..., Any]) -> None:
    """Refuse what `Fabric.launch(function)` cannot run.

    Args:
        function: what the user passed (`nothing`: no function was given).
        strategy: the strategy (spawning ones need a function).
        nothing: `launch`'s default function.

    Raises:
        TypeError: no function for a spawning strategy, something not callable, or a function without parameters.
    """
    if function is nothing:
        if spawns(strategy):
            raise TypeError(
                f"To spawn processes with the `{type(strategy).__name__}` strategy, `.launch()` needs to be"
                " called with a function that contains the code to launch in processes."
            )
        return
    if not callable(function):
        raise TypeError(
            f"`Fabric.launch(...)` needs to be a callable, but got {function}."
            " HINT: do `.launch(your_fn)` instead of `.launch(your_fn())`"
        )
    if not inspect.signature(function).parameters:
        raise TypeError(
            f"`Fabric.launch(function={function})` needs to take at least one argument. The launcher will"
            " pass in the `Fabric` object so you can use it inside the function."
        )


def check_run_override(fabric: Any, base: type) -> bool:
    """Whether `fabric`'s class overrides `base.run` (Fabric 1.x style).

    Raises:
        TypeError: it does, and the script was started by `fabric run` (which creates the processes itself, while an
            overridden `run` launches them).
    """
    overridden = getattr(type(fabric), "run", None) is not getattr(base, "run", None)
    if overridden and os.environ.get("LT_CLI_USED") == "1":
        raise TypeError(
            "Overriding `Fabric.run()` and launching from the CLI is not allowed. Run the script normally,"
            " or change your code to directly call `fabric = Fabric(...); fabric.setup(...)` etc."
        )
    return overridden


def warn_mixed_devices(module: nn.Module) -> None:
    """Warn that `setup(move_to_device=True)` moves a model whose parameters are on several devices."""
    devices = {param.device for param in module.parameters()}
    if len(devices) > 1:
        rank_zero_warn(
            f"The model passed to `Fabric.setup()` has parameters on several devices ({sorted(map(str, devices))})."
            " Since `move_to_device=True`, all parameters will be moved to the new device. If this is not"
            " desired, set `Fabric.setup(..., move_to_device=False)`.",
            category=PossibleUserWarning,
        )


def accepted_kwargs(method: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The part of `kwargs` that `method` accepts (all of it when it takes `**kwargs` or has no signature)."""
    try:
        parameters = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return kwargs
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return kwargs
    return {key: value for key, value in kwargs.items() if key in parameters}


def backward_sync_context(strategy: Strategy, forward_module: nn.Module, enabled: bool) -> AbstractContextManager[Any]:
    """The context of `Fabric.no_backward_sync`: DDP's `no_sync`, FSDP's own, a no-op on one device (or when not
    `enabled`); a warning for a strategy that cannot skip the synchronisation."""
    if isinstance(forward_module, DistributedDataParallel):
        return forward_module.no_sync() if enabled else nullcontext()
    if isinstance(strategy, FSDPStrategy):
        return strategy.no_backward_sync() if enabled else nullcontext()
    if not isinstance(strategy, SingleDeviceStrategy):
        rank_zero_warn(
            f"The `{strategy.__class__.__name__}` does not support skipping the gradient synchronization."
            " Remove `.no_backward_sync()` from your code or choose a different strategy.",
            category=PossibleUserWarning,
        )
    return nullcontext()


def call_hooks(callbacks: list[Any], hook_name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """`Fabric.call`: `hook_name(*args, **kwargs)` on every callback that has it, each method getting only the keyword
    arguments it accepts; a non-callable attribute of that name is skipped with a warning."""
    for callback in callbacks:
        method = getattr(callback, hook_name, None)
        if method is None:
            continue
        if not callable(method):
            rank_zero_warn(f"Skipping the callback `{type(callback).__name__}.{hook_name}` because it is not callable.")
            continue
        method(*args, **accepted_kwargs(method, kwargs))
