"""Tied parameters (one Parameter used by several layers, e.g. shared embeddings): find them, and tie them again after
something (a device move, a copy) broke the sharing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

__all__ = ["find_shared_parameters", "set_shared_parameters"]


def find_shared_parameters(module: nn.Module) -> list[list[str]]:
    """Groups of names that refer to one Parameter, e.g. `[["encoder.weight", "decoder.weight"]]`.

    Args:
        module: the module to inspect.

    Returns:
        One list of dotted names per shared Parameter, in registration order; empty if nothing is shared.
    """
    names_of: dict[int, list[str]] = {}
    for name, param in module.named_parameters(remove_duplicate=False):
        names_of.setdefault(id(param), []).append(name)
    return [names for names in names_of.values() if len(names) > 1]


def set_shared_parameters(module: nn.Module, shared_params: Sequence[Sequence[str]]) -> nn.Module:
    """Make every name of each group refer to the Parameter of the group's first name again.

    Args:
        module: the module to re-tie (changed in place).
        shared_params: groups of dotted parameter names, as `find_shared_parameters` returns them.

    Returns:
        `module`.
    """
    for group in shared_params:
        first = _resolve(module, group[0])
        for path in group[1:]:
            owner_path, _, attr = path.rpartition(".")
            setattr(_resolve(module, owner_path) if owner_path else module, attr, first)
    return module


def _resolve(module: nn.Module, path: str) -> Any:
    target: Any = module
    for part in path.split("."):
        target = getattr(target, part)
    return target
