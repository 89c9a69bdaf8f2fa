"""Formatting helpers of Lightning's progress bars that user subclasses call: `convert_inf` (an unknown or infinite
total shown as no total)."""

from __future__ import annotations

import math
from typing import TypeVar

__all__ = ["convert_inf"]

N = TypeVar("N", int, float)


def convert_inf(x: N | None) -> N | None:
    """None when `x` is None or infinite (a bar without a known total), else `x`."""
    if x is None or math.isinf(x):
        return None
    return x
