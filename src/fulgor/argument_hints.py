"""Mistyped keyword arguments: Python's own `TypeError` (same type, same first sentence) followed by "Did you mean
`max_epochs`?" when a valid name is close, for the Trainer's flags and the constructors of fulgor's callbacks."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Collection
from typing import Any, TypeVar

__all__ = ["closest_name", "unexpected_keyword", "with_keyword_hints"]

F = TypeVar("F", bound=Callable[..., Any])


def closest_name(name: str, valid: Collection[str]) -> str | None:
    """The valid name `name` was most likely meant to be (difflib's ratio >= 0.6), or None."""
    import difflib  # only on the error path: not worth its import time for `import fulgor`

    matches = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return matches[0] if matches else None


def unexpected_keyword(function: str, name: str, valid: Collection[str]) -> TypeError:
    """Python's `f() got an unexpected keyword argument 'x'`, with a hint naming the closest valid argument.

    Args:
        function: the qualified name as Python prints it, e.g. ``"Trainer.__init__"``.
        name: the keyword the caller passed.
        valid: the keywords `function` accepts.

    Example:
        >>> str(unexpected_keyword("Trainer.__init__", "max_epoch", ["max_epochs", "min_epochs"]))
        "Trainer.__init__() got an unexpected keyword argument 'max_epoch'. Did you mean `max_epochs`?"
    """
    message = f"{function}() got an unexpected keyword argument {name!r}"
    guess = closest_name(name, valid)
    if guess is not None:
        message += f". Did you mean `{guess}`?"
    return TypeError(message)


def with_keyword_hints(init: F) -> F:
    """Wrap a constructor so that an unknown keyword raises `unexpected_keyword(...)` instead of Python's bare error.

    Returns `init` itself when it takes ``**kwargs`` (every keyword is valid then). The names are read from the
    signature once, at the first call; the check is a set difference, only when keywords are passed.
    """
    signature = inspect.signature(init)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
        return init
    valid = frozenset(
        name
        for name, p in signature.parameters.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY) and name != "self"
    )

    @functools.wraps(init)
    def checked(*args: Any, **kwargs: Any) -> Any:
        if kwargs and not valid.issuperset(kwargs):
            unknown = next(name for name in kwargs if name not in valid)
            raise unexpected_keyword(init.__qualname__, unknown, valid)
        return init(*args, **kwargs)

    return checked  # type: ignore[return-value]
