"""A LightningModule run by Fabric instead of a Trainer: `self.trainer` forwards to the Fabric object, and `self.log`,
`self.log_dict` and `self.clip_gradients` go through Fabric, as in Lightning (users move a module between the two)."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

from torch import Tensor


class TrainerFabricShim:
    """What `module.trainer` returns while Fabric runs the module: attribute reads are answered by the Fabric object
    (`self.trainer.global_rank`, `.world_size`, `.device`); a Trainer-only attribute raises a clear AttributeError."""

    def __init__(self, fabric: Any) -> None:
        self._fabric = fabric

    def __getattr__(self, name: str) -> Any:
        try:
            return getattr(self._fabric, name)
        except AttributeError:
            raise AttributeError(
                f"Your LightningModule code tried to access `self.trainer.{name}` but this attribute is not available"
                " when using Fabric with a LightningModule."
            ) from None


def log_through_fabric(fabric: Any, dictionary: Mapping[str, Any], logger: bool | None) -> None:
    """`self.log`/`self.log_dict` under Fabric: checked as the Trainer checks them, then `fabric.log_dict`.

    `logger=False` logs nothing (Fabric has no other destination; accepted so Trainer code runs unchanged).
    """
    if logger is False:
        return
    if any(isinstance(value, dict) for value in dictionary.values()):
        raise ValueError(f"`self.log_dict({dictionary})` was called, but nested dictionaries cannot be logged")
    for name, value in dictionary.items():
        if not isinstance(value, (Tensor, numbers.Number)):  # a torchmetrics Metric has no value a logger can take
            kind = type(value).__name__
            raise ValueError(f"`self.log({name}, {value})` was called, but `{kind}` values cannot be logged")
    fabric.log_dict(metrics=dict(dictionary))


def clip_through_fabric(fabric: Any, module: Any, optimizer: Any, clip_val: float | None, algorithm: Any) -> None:
    """`self.clip_gradients` under Fabric: by value or by norm (the default), through `fabric.clip_gradients`."""
    by_value = str(getattr(algorithm, "value", algorithm)).lower() == "value"
    fabric.clip_gradients(
        module, optimizer, clip_val=clip_val if by_value else None, max_norm=None if by_value else clip_val
    )
