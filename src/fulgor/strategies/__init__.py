"""Strategies: where the model runs and how processes talk (one device, DDP), and the `strategy=` names."""

from fulgor.strategies.ddp import DDPStrategy
from fulgor.strategies.single_device import SingleDeviceStrategy
from fulgor.strategies.strategy import Strategy

__all__ = ["DDPStrategy", "SingleDeviceStrategy", "Strategy"]
