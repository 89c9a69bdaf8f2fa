"""The Trainer and its loops."""

from fulgor.trainer.trainer import Trainer

__all__ = ["Trainer"]
