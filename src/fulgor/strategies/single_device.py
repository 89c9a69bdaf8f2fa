"""SingleDeviceStrategy: one process, one device; every collective is the identity."""

from __future__ import annotations

import torch

from fulgor.strategies.strategy import Strategy


class SingleDeviceStrategy(Strategy):
    """Train on one device (`"cpu"`, `"cuda:0"`, `"mps"`)."""

    strategy_name = "single_device"

    def __init__(self, device: torch.device | str = "cpu") -> None:
        super().__init__()
        self._device = torch.device(device)

    @property
    def root_device(self) -> torch.device:
        return self._device
