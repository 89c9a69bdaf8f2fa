"""`merge_dicts`: several metric dicts merged into one, each key's values aggregated (mean by default; nested dicts
merged key by key) -- what Lightning's loggers use to combine rows logged at the same step."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from statistics import mean
from typing import Any

__all__ = ["merge_dicts"]


def merge_dicts(
    dicts: Sequence[Mapping[Any, Any]],
    agg_key_funcs: Mapping[Any, Any] | None = None,
    default_func: Callable[[Sequence[Any]], Any] = mean,
) -> dict[Any, Any]:
    """One dict holding every key of `dicts`, its non-None values aggregated.

    Args:
        dicts: the dicts to merge.
        agg_key_funcs: key -> function of the list of that key's values; for a key holding dicts, a mapping of the
            same shape for the nested keys.
        default_func: the function for keys `agg_key_funcs` does not name.

    Returns:
        The merged dict (nested dicts merged recursively).
    """
    funcs = agg_key_funcs or {}
    keys: list[Any] = list(dict.fromkeys(key for d in dicts for key in d))
    merged: dict[Any, Any] = {}
    for key in keys:
        values = [d[key] for d in dicts if d.get(key) is not None]
        func = funcs.get(key)
        if isinstance(values[0], Mapping):
            merged[key] = merge_dicts(values, func, default_func)
        else:
            merged[key] = (func or default_func)(values)
    return merged
