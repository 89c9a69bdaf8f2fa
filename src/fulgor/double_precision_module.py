"""`LightningDoublePrecisionModule`: a deprecated wrapper that casts the floating-point inputs of a LightningModule's
forward and `*_step` methods to float64 (Lightning's `plugins.precision.double` name; `precision="64-true"` does this
without a wrapper)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fulgor.data.conversion import map_leaves
from fulgor.device_dtype import DeviceDtypeModuleMixin
from fulgor.rank_messages import rank_zero_deprecation

__all__ = ["LightningDoublePrecisionModule"]


def _to_double(data: Any) -> Any:
    return map_leaves(data, lambda x: x.double() if isinstance(x, torch.Tensor) and x.is_floating_point() else x)


class LightningDoublePrecisionModule(DeviceDtypeModuleMixin, nn.Module):
    """Wraps `pl_module` so that floating-point tensors passed to `forward`, `training_step`, `validation_step`,
    `test_step` and `predict_step` arrive as float64.

    Args:
        pl_module: the LightningModule to wrap (available as `.module`).
    """

    def __init__(self, pl_module: nn.Module) -> None:
        super().__init__()
        rank_zero_deprecation(
            f"The `{type(self).__name__}` is deprecated and no longer needed: `precision='64-true'` converts the inputs"
            " of the `*_step` methods itself."
        )
        self.module = pl_module
        ignored = getattr(pl_module, "_ddp_params_and_buffers_to_ignore", [])
        self._ddp_params_and_buffers_to_ignore = [f"module.{name}" for name in ignored]

    def _call(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return getattr(self.module, method)(*_to_double(args), **_to_double(kwargs))

    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("training_step", args, kwargs)

    def validation_step(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("validation_step", args, kwargs)

    def test_step(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("test_step", args, kwargs)

    def predict_step(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("predict_step", args, kwargs)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*_to_double(args), **_to_double(kwargs))
