"""Lightning's `is_overridden(method_name, instance, parent)`: whether an object replaces a method of its Lightning
base class, the base picked from the object's kind when not given (LightningModule, LightningDataModule, Callback)."""

from __future__ import annotations

from functools import partial
from typing import Any
from unittest.mock import Mock

from fulgor.callbacks.callback import Callback
from fulgor.datamodule import LightningDataModule
from fulgor.module import LightningModule

__all__ = ["is_overridden"]


def _unwrapped(attr: Any) -> Any:
    """The function behind a `functools.wraps` decorator, a `@contextmanager`, a `Mock(wraps=...)` or a partial."""
    attr = getattr(attr, "__wrapped__", attr)
    if isinstance(attr, Mock):
        return attr._mock_wraps
    if isinstance(attr, partial):
        return attr.func
    return attr


def is_overridden(method_name: str, instance: object | None = None, parent: type | None = None) -> bool:
    """Whether `instance` implements `method_name` differently from `parent`.

    Args:
        method_name: the method, e.g. `"training_step"`.
        instance: the object (None: False).
        parent: the base class; by default LightningModule, LightningDataModule or Callback, whichever `instance` is.

    Raises:
        ValueError: no parent given and `instance` is none of those kinds, or `parent` lacks the method.
    """
    if instance is None:
        return False
    if parent is None:
        kinds = (LightningModule, LightningDataModule, Callback)
        parent = next((kind for kind in kinds if isinstance(instance, kind)), None)
        if parent is None:
            raise ValueError("Expected a parent")
    own = _unwrapped(getattr(instance, method_name, None))
    if own is None:
        return False
    base = getattr(parent, method_name, None)
    if base is None:
        raise ValueError("The parent should define the method")
    base = getattr(base, "__wrapped__", base)
    return bool(getattr(own, "__code__", own) != getattr(base, "__code__", base))
