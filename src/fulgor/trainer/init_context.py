"""`Trainer.init_module()`'s context: the strategy's `tensor_init_context` (its device, the precision's dtype), and
optionally no `torch.nn.init` (weights a checkpoint will overwrite)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from torch.overrides import TorchFunctionMode

from fulgor.strategies import Strategy

__all__ = ["module_init_context"]


@contextmanager
def module_init_context(strategy: Strategy, empty_init: bool | None) -> Iterator[None]:
    """Create tensors as `strategy.tensor_init_context` says (its device, the precision's dtype); `empty_init` also
    skips `torch.nn.init` (the weights a checkpoint will overwrite)."""
    with _SkipInit(enabled=bool(empty_init)), strategy.tensor_init_context(empty_init=empty_init):
        yield


class _SkipInit(TorchFunctionMode):
    """While enabled, `torch.nn.init` functions return their tensor untouched: parameters are allocated but not
    initialised (cheap when a checkpoint overwrites them next)."""

    def __init__(self, enabled: bool) -> None:
        super().__init__()
        self.enabled = enabled

    def __torch_function__(
        self, func: Callable[..., Any], types: Any, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        if self.enabled and getattr(func, "__module__", None) == "torch.nn.init":
            return kwargs["tensor"] if "tensor" in kwargs else args[0]
        return func(*args, **kwargs)
