"""The init-argument and pickling helpers of Lightning's `utilities.parsing`: `get_init_args` (the arguments of a
running `__init__`), `parse_class_init_keys`, `is_picklable` and `clean_namespace` (drop what cannot be pickled)."""

from __future__ import annotations

import inspect
import pickle
import types
from collections.abc import MutableMapping
from typing import Any

from fulgor.rank import rank_zero_warn

__all__ = ["clean_namespace", "get_init_args", "is_picklable", "parse_class_init_keys"]


def is_picklable(obj: object) -> bool:
    """Whether `pickle.dumps(obj)` succeeds."""
    try:
        pickle.dumps(obj)
    except (pickle.PickleError, AttributeError, RuntimeError, TypeError):
        return False
    return True


def clean_namespace(hparams: MutableMapping[Any, Any]) -> None:
    """Remove (with a warning naming each) the entries of `hparams` that cannot be pickled, in place."""
    for key in [k for k, v in hparams.items() if not is_picklable(v)]:
        rank_zero_warn(
            f"Attribute '{key}' removed from hparams because it cannot be pickled. You can suppress this warning by"
            f" setting `self.save_hyperparameters(ignore=['{key}'])`."
        )
        del hparams[key]


def parse_class_init_keys(cls: type) -> tuple[str, str | None, str | None]:
    """The names `cls.__init__` gives to `self`, `*args` and `**kwargs` (None for those it does not take).

    Example: `def __init__(this, x, *rest, y=1, **extra)` -> `("this", "rest", "extra")`.
    """
    params = list(inspect.signature(cls.__init__).parameters.values())  # type: ignore[misc]
    var_args = next((p.name for p in params if p.kind is inspect.Parameter.VAR_POSITIONAL), None)
    var_kwargs = next((p.name for p in params if p.kind is inspect.Parameter.VAR_KEYWORD), None)
    return params[0].name, var_args, var_kwargs


def get_init_args(frame: types.FrameType) -> dict[str, Any]:
    """The arguments of the `__init__` running in `frame`, by name (`**kwargs` contents merged in; `self`, `*args`
    and `**kwargs` themselves left out). Empty when `frame` is not an `__init__` whose class is known to the frame
    (its code uses `super()` or `__class__`).

    Args:
        frame: a frame, e.g. `inspect.currentframe()` inside an `__init__`.
    """
    local_vars = frame.f_locals
    cls = local_vars.get("__class__")
    if frame.f_code.co_name != "__init__" or not isinstance(cls, type):
        return {}
    self_name, args_name, kwargs_name = parse_class_init_keys(cls)
    params = inspect.signature(cls.__init__).parameters  # type: ignore[misc]
    collected = {name: local_vars[name] for name in params if name in local_vars}
    if kwargs_name:
        collected.update(collected.get(kwargs_name, {}))
    excluded = {self_name, args_name, kwargs_name, "__class__", "frame", "frame_args"}
    return {name: value for name, value in collected.items() if name not in excluded}
