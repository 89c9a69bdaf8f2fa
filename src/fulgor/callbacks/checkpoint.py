"""Checkpoint: the base class of callbacks that save checkpoints; the Trainer runs them after every other callback."""

from __future__ import annotations

from typing import ClassVar

from fulgor.callbacks.callback import Callback


class Checkpoint(Callback):
    """Base class for checkpointing callbacks (ModelCheckpoint, OnExceptionCheckpoint)."""

    order: ClassVar[int] = 100
