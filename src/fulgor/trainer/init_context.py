"""`Trainer.init_module()`'s context: the strategy's `tensor_init_context` (its device, the precision's dtype), and
optionally no `torch.nn.init` (weights a checkpoint will overwrite)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fulgor.strategies import Strategy
from fulgor.strategies.strategy import SkipInit

__all__ = ["module_init_context"]


@contextmanager
def module_init_context(strategy: Strategy, empty_init: bool | None) -> Iterator[None]:
    """Create tensors as `strategy.tensor_init_context` says (its device, the precision's dtype); `empty_init` also
    skips `torch.nn.init` (the weights a checkpoint will overwrite). The Trainer calls `tensor_init_context`, as
    Lightning's does, so a custom Trainer strategy that overrides it is honoured."""
    with SkipInit(enabled=bool(empty_init)), strategy.tensor_init_context(empty_init=empty_init):
        yield
