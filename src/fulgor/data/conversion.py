"""Numbers and tensors in nested collections: `convert_to_tensors` (Python/numpy numbers -> tensors on a device) and
`convert_tensors_to_scalars` (one-element tensors -> Python numbers), keeping the collections' types."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from fulgor.data.transfer import move_data_to_device

__all__ = ["cast_floats", "convert_tensors_to_scalars", "convert_to_tensors"]


def map_leaves(data: Any, fn: Callable[[Any], Any]) -> Any:
    """`data` rebuilt with `fn` applied to every leaf (mappings, lists, tuples, namedtuples and dataclasses are walked;
    strings and tensors are leaves)."""
    if isinstance(data, (str, bytes, Tensor)):
        return fn(data)
    if isinstance(data, Mapping):
        items = {key: map_leaves(value, fn) for key, value in data.items()}
        factory = getattr(data, "default_factory", None)  # a defaultdict keeps its factory
        return type(data)(factory, items) if factory is not None else type(data)(items)  # type: ignore[call-arg]
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(map_leaves(value, fn) for value in data))
    if isinstance(data, (list, tuple)):
        return type(data)(map_leaves(value, fn) for value in data)
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        changes = {f.name: map_leaves(getattr(data, f.name), fn) for f in dataclasses.fields(data) if f.init}
        return dataclasses.replace(data, **changes)
    return fn(data)


def _to_tensor(value: Any) -> Any:
    # bool before int: a bool is an int to isinstance. The dtypes are Lightning's (uint8, int32, float32).
    if isinstance(value, bool):
        return torch.tensor(value, dtype=torch.uint8)
    if isinstance(value, int):
        return torch.tensor(value, dtype=torch.int32)
    if isinstance(value, float):
        return torch.tensor(value, dtype=torch.float32)
    if type(value).__module__ == "numpy" and type(value).__name__ == "ndarray":
        return torch.from_numpy(value)
    return value


def convert_to_tensors(data: Any, device: torch.device | str | int) -> Any:
    """`data` with its bools, ints, floats and numpy arrays made tensors, and every tensor moved to `device`.

    Args:
        data: a number, array, tensor or a nested collection of them.
        device: where the tensors go.
    """
    return move_data_to_device(map_leaves(data, _to_tensor), device)


def _to_scalar(value: Any) -> Any:
    if not isinstance(value, Tensor):
        return value
    if value.numel() != 1:
        raise ValueError(
            f"The metric `{value}` does not contain a single element, thus it cannot be converted to a scalar."
        )
    return value.item()


def convert_tensors_to_scalars(data: Any) -> Any:
    """`data` with every one-element tensor replaced by its Python number.

    Raises:
        ValueError: a tensor holds more than one element.
    """
    return map_leaves(data, _to_scalar)


def cast_floats(data: Any, dtype: torch.dtype) -> Any:
    """`data` with every floating-point tensor cast to `dtype`; containers are rebuilt with their own type. (Its own
    walk rather than `map_leaves`: the precision plugins call it on every batch, and this costs one call per leaf.)"""
    if isinstance(data, Tensor):
        return data.to(dtype) if data.is_floating_point() else data
    if isinstance(data, Mapping):
        items = {key: cast_floats(value, dtype) for key, value in data.items()}
        if isinstance(data, defaultdict):  # keeps its factory
            return type(data)(data.default_factory, items)
        return type(data)(items)  # type: ignore[call-arg]
    if isinstance(data, tuple) and hasattr(data, "_fields"):  # namedtuple
        return type(data)(*(cast_floats(value, dtype) for value in data))
    if isinstance(data, (list, tuple)):
        return type(data)(cast_floats(value, dtype) for value in data)
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        changes = {f.name: cast_floats(getattr(data, f.name), dtype) for f in dataclasses.fields(data) if f.init}
        return dataclasses.replace(data, **changes)
    return data
