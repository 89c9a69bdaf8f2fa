"""The init-argument and pickling helpers of Lightning's `utilities.parsing`: `get_init_args` (the arguments of a
running `__init__`), `collect_init_args` (those of a chain of `super().__init__` calls), `parse_class_init_keys`,
`is_picklable` and `clean_namespace` (drop what cannot be pickled)."""

from __future__ import annotations

import inspect
import pickle
import types
from collections.abc import MutableMapping
from typing import Any

from fulgor.rank import rank_zero_warn

__all__ = ["clean_namespace", "collect_init_args", "get_init_args", "is_picklable", "parse_class_init_keys"]


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


def collect_init_args(
    frame: types.FrameType,
    path_args: list[dict[str, Any]],
    inside: bool = False,
    classes: tuple[type, ...] = (),
) -> list[dict[str, Any]]:
    """The arguments of the chain of `__init__` calls running at `frame` and outward (`super().__init__` from a child
    class), one dict per call, innermost (the most general class) first, appended to `path_args`.

    Frames before the chain are skipped; the walk stops at the first frame after it that is not such an `__init__`
    (one whose code uses `super()`/`__class__`), and never looks at the outermost frame (the module level).

    Args:
        frame: where to start, e.g. `inspect.currentframe()`.
        path_args: the list to append to (returned).
        inside: True when `frame` is already inside the chain (a frame that does not belong ends the walk).
        classes: if given, only `__init__` calls on instances of these classes belong to the chain.
    """
    current: types.FrameType | None = frame
    while current is not None and isinstance(current.f_back, types.FrameType):
        local_vars = current.f_locals
        if "__class__" in local_vars and (not classes or isinstance(_init_self(current), classes)):
            path_args.append(get_init_args(current))
            inside = True
        elif inside:
            break
        current = current.f_back
    return path_args


def _init_self(frame: types.FrameType) -> Any:
    """The object whose `__init__` runs in `frame` (its first argument), or None."""
    code = frame.f_code
    return frame.f_locals.get(code.co_varnames[0]) if code.co_argcount else None
