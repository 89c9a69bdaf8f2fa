"""The checks Fabric's methods make before acting (the launch function, a model spread over several devices) and the
keyword filtering of `Fabric.call`, so that each callback gets only the arguments its method accepts."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from fulgor.errors import PossibleUserWarning
from fulgor.fabric.launching import spawns
from fulgor.rank import rank_zero_warn
from fulgor.strategies.strategy import Strategy

__all__ = ["accepted_kwargs", "check_launch_function", "warn_mixed_devices"]


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
