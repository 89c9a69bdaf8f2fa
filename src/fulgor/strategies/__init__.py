"""Strategies: where the model runs and how processes talk (one device now; DDP and FSDP build on the same ABC)."""

from fulgor.strategies.single_device import SingleDeviceStrategy
from fulgor.strategies.strategy import Strategy

__all__ = ["SingleDeviceStrategy", "Strategy"]
