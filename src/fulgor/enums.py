"""Lightning's string enums: `LightningEnum` (members equal their value, case-insensitively) and
`GradClipAlgorithmType` (the `gradient_clip_algorithm=` values)."""

from __future__ import annotations

import warnings
from enum import Enum
from typing import Literal, TypeVar

__all__ = ["GradClipAlgorithmType", "LightningEnum"]

E = TypeVar("E", bound="LightningEnum")
_Source = Literal["key", "value", "any"]


class LightningEnum(str, Enum):
    """A string enum whose members compare equal to their value in any letter case (`X.NORM == "Norm"`)."""

    @classmethod
    def from_str(cls: type[E], value: str, source: _Source = "key") -> E:
        """The member whose name (`source="key"`, any case), value (`"value"`) or either (`"any"`, names first) is
        `value`.

        Raises:
            ValueError: nothing matches; the message lists what would.
        """
        if source in ("key", "any"):
            for name, member in cls.__members__.items():
                if name.lower() == value.lower():
                    return member
        if source in ("value", "any"):
            for member in cls.__members__.values():
                if member == value:
                    return member
        raise ValueError(f"Invalid match: expected one of {cls._matches(source)}, but got {value}.")

    @classmethod
    def try_from_str(cls: type[E], value: str, source: _Source = "key") -> E | None:
        """Like `from_str`, but a warning and None when nothing matches."""
        try:
            return cls.from_str(value, source)
        except ValueError:
            message = f"Invalid string: expected one of {cls._matches(source)}, but got {value}."
            warnings.warn(UserWarning(message), stacklevel=2)
            return None

    @classmethod
    def _matches(cls, source: str) -> list[str]:
        names = list(cls.__members__)
        values = [str(member.value) for member in cls.__members__.values()]
        return {"key": names, "value": values}.get(source, names + values)

    def __eq__(self, other: object) -> bool:
        value = other.value if isinstance(other, Enum) else other
        return str(self.value).lower() == str(value).lower()

    def __hash__(self) -> int:
        return hash(str(self.value).lower())  # equal members and strings must hash alike (sets, dict keys)


class GradClipAlgorithmType(LightningEnum):
    """How gradients are clipped: each value into [-c, c] ("value") or all of them scaled to norm c ("norm")."""

    VALUE = "value"
    NORM = "norm"

    @staticmethod
    def supported_type(val: str) -> bool:
        """Whether `val` names a clipping algorithm."""
        return val in GradClipAlgorithmType.supported_types()

    @staticmethod
    def supported_types() -> list[str]:
        """The algorithm names, in Lightning's order: ["value", "norm"]."""
        return [member.value for member in GradClipAlgorithmType]
