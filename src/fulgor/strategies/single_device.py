"""SingleDeviceStrategy: one process, one device; every collective is the identity."""

from __future__ import annotations

import torch

from fulgor.accelerators import Accelerator
from fulgor.checkpoint_io import CheckpointIO
from fulgor.precision import Precision
from fulgor.strategies.strategy import Strategy


class SingleDeviceStrategy(Strategy):
    """Train on one device (`"cpu"`, `"cuda:0"`, `"mps"`).

    Args:
        device: the device.
        accelerator: the hardware (default: from the Trainer's `accelerator` flag).
        checkpoint_io: how checkpoint files are written (default: `TorchCheckpointIO`).
        precision_plugin: the precision (default: from the Trainer's `precision` flag).
        precision: Lightning Fabric's name for `precision_plugin` (give one of the two).
    """

    strategy_name = "single_device"

    def __init__(
        self,
        device: torch.device | str | int = "cpu",
        accelerator: Accelerator | None = None,
        checkpoint_io: CheckpointIO | None = None,
        precision_plugin: Precision | None = None,
        precision: Precision | None = None,
    ) -> None:
        super().__init__(accelerator, checkpoint_io, precision_plugin, precision)
        self._device = torch.device(device)
        self._world_size = 1

    @property
    def root_device(self) -> torch.device:
        return self._device

    @property
    def world_size(self) -> int:
        """1. Assignable, as Lightning's plain attribute is (tests set it to exercise distributed-only checks)."""
        return self._world_size

    @world_size.setter
    def world_size(self, size: int) -> None:
        self._world_size = size
