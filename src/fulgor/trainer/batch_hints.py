"""The hint for a common mistake with dict batches: `x, y = batch` unpacks a dict's keys, so the step fails deep
inside a layer (`linear(): argument 'input' must be Tensor, not str`). The step's error is raised again with a first
line naming the hook and the batch's type and keys, and the fix."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["dict_batch_hint"]

# What a step says when it used a dict's keys (strings) as if they were its tensors.
_SYMPTOMS = ("not str", "values to unpack", "'str' object")


def dict_batch_hint(error: Exception, hook: str, batch: Any) -> Exception | None:
    """`error` (raised by `hook` on `batch`) of the same type with the hint first, or None when it does not look
    like a dict batch unpacked as a tuple."""
    if not isinstance(batch, Mapping) or not any(symptom in str(error) for symptom in _SYMPTOMS):
        return None
    keys = list(batch)
    names = ", ".join(repr(key) for key in keys[:6]) + (", ..." if len(keys) > 6 else "")
    example = ", ".join(f"batch[{key!r}]" for key in keys[:2])
    hinted = type(error)(
        f"`{hook}` received a `{type(batch).__name__}` batch (keys: {names}) and failed: {error}. A dict batch unpacks"
        f" to its keys (`x, y = batch` gives the strings {names}): read the values by key, e.g. `x, y = {example}`."
    )
    return hinted
