"""`move_data_to_device`: move every tensor (or object with a `.to` method) in a batch to a device, keeping the
batch's container types (lists, tuples, namedtuples, mappings, dataclasses)."""

from __future__ import annotations

import copy
import dataclasses
from collections import defaultdict
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

import torch
from torch import Tensor

__all__ = ["move_data_to_device"]

# Non-blocking copies to these devices gain nothing (CPU) or are unsafe (MPS: pytorch/pytorch#83015).
_BLOCKING_DEVICE_TYPES = ("cpu", "mps")


def move_data_to_device(batch: Any, device: torch.device | str | int) -> Any:
    """Return ``batch`` with every tensor, and every object whose class has a callable ``to``, moved to ``device``.

    Containers are rebuilt with their own type; anything else is returned unchanged. Tensors are copied with
    ``non_blocking=True`` to accelerators (not to CPU or MPS).

    Args:
        batch: a tensor, an object with ``.to(device)``, or a (nested) collection of them.
        device: the target device.
    """
    device = torch.device(device)
    non_blocking = device.type not in _BLOCKING_DEVICE_TYPES
    return _move(batch, device, non_blocking)


def _move(data: Any, device: torch.device, non_blocking: bool) -> Any:
    if isinstance(data, Tensor):
        return data.to(device, non_blocking=True) if non_blocking else data.to(device)
    if callable(getattr(type(data), "to", None)):
        moved = data.to(device)
        return data if moved is None else moved  # a user `.to` that forgot to `return self`
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        return _move_dataclass(data, device, non_blocking)
    if isinstance(data, Mapping):
        items = [(k, _move(v, device, non_blocking)) for k, v in data.items()]
        if isinstance(data, defaultdict):
            return type(data)(data.default_factory, items)
        return type(data)(items)  # type: ignore[call-arg]
    if isinstance(data, tuple) and hasattr(data, "_fields"):  # namedtuple
        return type(data)(*(_move(v, device, non_blocking) for v in data))
    if isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        return type(data)([_move(v, device, non_blocking) for v in data])  # type: ignore[call-arg]
    return data


def _move_dataclass(data: Any, device: torch.device, non_blocking: bool) -> Any:
    result = copy.copy(data)
    for field in dataclasses.fields(data):
        if field.init:
            # object.__setattr__ also works for frozen dataclasses, which only forbid assignment by users.
            object.__setattr__(result, field.name, _move(getattr(data, field.name), device, non_blocking))
    # Values cached from the old fields may describe the old device: drop them so they are recomputed.
    state = getattr(result, "__dict__", None)
    if state is not None:
        for name, attr in vars(type(data)).items():
            if isinstance(attr, cached_property):
                state.pop(name, None)
    return result
