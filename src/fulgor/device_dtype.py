"""DeviceDtypeModuleMixin: `device` and `dtype` properties of a module that follow `.to()`, `.cuda()`, `.cpu()`,
`.double()`... (nested LightningModules included), as Lightning's modules have them."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from typing_extensions import Self

__all__ = ["DeviceDtypeModuleMixin"]


class DeviceDtypeModuleMixin(nn.Module):
    """Tracks the device and floating-point dtype the module was moved or cast to."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._device = torch.device("cpu")
        self._dtype: torch.dtype = torch.get_default_dtype()

    @property
    def device(self) -> torch.device:
        """The device the module lives on; follows `.to()`, `.cuda()` and `.cpu()` (buffers included)."""
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        """The floating-point dtype of the module; follows `.to(dtype)`, `.double()`, `.half()`..."""
        return self._dtype

    @dtype.setter
    def dtype(self, value: torch.dtype) -> None:
        self._dtype = value

    def to(self, *args: Any, **kwargs: Any) -> Self:
        """Move and/or cast the module, like `torch.nn.Module.to`, keeping `device` and `dtype` up to date."""
        device, dtype = torch._C._nn._parse_to(*args, **kwargs)[:2]
        self._track(device=device, dtype=dtype)
        return super().to(*args, **kwargs)

    def cuda(self, device: torch.device | int | None = None) -> Self:
        """Move to a CUDA device (the current one when `device` is None)."""
        if device is None:
            device = torch.device("cuda", torch.cuda.current_device())
        elif isinstance(device, int):
            device = torch.device("cuda", index=device)
        self._track(device=device)
        return super().cuda(device=device)

    def cpu(self) -> Self:
        """Move to the CPU."""
        self._track(device=torch.device("cpu"))
        return super().cpu()

    def type(self, dst_type: str | torch.dtype) -> Self:
        """Cast all parameters and buffers to `dst_type`."""
        self._track(dtype=dst_type if isinstance(dst_type, torch.dtype) else None)
        return super().type(dst_type)

    def float(self) -> Self:
        """Cast floating-point parameters and buffers to float32."""
        self._track(dtype=torch.float)
        return super().float()

    def double(self) -> Self:
        """Cast floating-point parameters and buffers to float64."""
        self._track(dtype=torch.double)
        return super().double()

    def half(self) -> Self:
        """Cast floating-point parameters and buffers to float16."""
        self._track(dtype=torch.half)
        return super().half()

    def bfloat16(self) -> Self:
        """Cast floating-point parameters and buffers to bfloat16."""
        self._track(dtype=torch.bfloat16)
        return super().bfloat16()

    def _track(self, device: torch.device | None = None, dtype: torch.dtype | None = None) -> None:
        # Nested LightningModules move with their parent, whose `.to()` never calls theirs: update them all here.
        for module in self.modules():
            if isinstance(module, DeviceDtypeModuleMixin):
                if device is not None:
                    module._device = _with_index(torch.device(device))
                if dtype is not None and dtype.is_floating_point:
                    module._dtype = dtype


def _with_index(device: torch.device) -> torch.device:
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device
