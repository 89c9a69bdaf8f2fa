"""Callbacks: the `Callback` base class and the callbacks the Trainer and users add."""

from fulgor.callbacks.callback import Callback
from fulgor.callbacks.model_checkpoint import ModelCheckpoint
from fulgor.callbacks.model_summary import ModelSummary
from fulgor.callbacks.progress import ProgressBar, TQDMProgressBar
from fulgor.callbacks.timer import Timer

__all__ = ["Callback", "ModelCheckpoint", "ModelSummary", "ProgressBar", "TQDMProgressBar", "Timer"]
