"""fulgor: the PyTorch Lightning user API on a small, fast, readable training loop.

``import fulgor as pl`` and a Lightning script runs unchanged: LightningModule, LightningDataModule, Trainer,
Callback, seed_everything, callbacks and loggers are all here.
"""

import importlib
import os
from typing import TYPE_CHECKING, Any

from fulgor import callbacks, loggers
from fulgor.callbacks.callback import Callback
from fulgor.datamodule import LightningDataModule
from fulgor.module import LightningModule
from fulgor.seed import seed_everything

if TYPE_CHECKING:
    from fulgor.fabric.fabric import Fabric
    from fulgor.trainer.trainer import Trainer

__version__ = "0.1.0"

if os.environ.get("FULGOR_COMPAT") == "1":
    # A process started by one running under the Lightning import aliases (`fulgor run`): a spawned DDP worker
    # unpickles objects whose classes live in `lightning.*` / `pytorch_lightning.*` modules, so it needs them too.
    from fulgor import compat

    compat.install()

__all__ = [
    "Callback",
    "Fabric",
    "LightningDataModule",
    "LightningModule",
    "Trainer",
    "__version__",
    "callbacks",
    "loggers",
    "seed_everything",
]


def __getattr__(name: str) -> Any:
    # PEP 562: the Trainer (and the loops, callbacks and checkpointing behind it) load on first access, so
    # `import fulgor` stays close to `import torch`; `fulgor.Trainer` and `from fulgor import Trainer` work as usual.
    if name == "Trainer":
        return importlib.import_module("fulgor.trainer.trainer").Trainer
    if name == "Fabric":  # Fabric (issue 15) loads on first access too
        return importlib.import_module("fulgor.fabric.fabric").Fabric
    raise AttributeError(f"module 'fulgor' has no attribute {name!r}")
