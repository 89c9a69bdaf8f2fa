"""fulgor: the PyTorch Lightning user API on a small, fast, readable training loop.

``import fulgor as pl`` and a Lightning script runs unchanged: LightningModule, LightningDataModule, Trainer,
Callback, seed_everything, callbacks and loggers are all here.
"""

from fulgor import callbacks, loggers
from fulgor.callbacks.callback import Callback
from fulgor.datamodule import LightningDataModule
from fulgor.module import LightningModule
from fulgor.seed import seed_everything
from fulgor.trainer.trainer import Trainer

__version__ = "0.1.0"

__all__ = [
    "Callback",
    "LightningDataModule",
    "LightningModule",
    "Trainer",
    "__version__",
    "callbacks",
    "loggers",
    "seed_everything",
]
