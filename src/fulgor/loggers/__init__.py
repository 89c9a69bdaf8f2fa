"""Experiment loggers: the `Logger` base class and the built-in loggers. TensorBoard, MLflow, W&B and Comet loggers
are imported on first use, so `import fulgor.loggers` pulls in none of those packages."""

from typing import TYPE_CHECKING, Any

from fulgor.loggers.csv_logs import CSVLogger
from fulgor.loggers.logger import DummyExperiment, DummyLogger, Logger, rank_zero_experiment

if TYPE_CHECKING:
    from fulgor.loggers.comet import CometLogger
    from fulgor.loggers.mlflow import MLFlowLogger
    from fulgor.loggers.neptune import NeptuneLogger  # noqa: F401  (importable, not in Lightning's __all__)
    from fulgor.loggers.tensorboard import TensorBoardLogger
    from fulgor.loggers.wandb import WandbLogger

__all__ = [
    "CSVLogger",
    "CometLogger",
    "DummyExperiment",
    "DummyLogger",
    "Logger",
    "MLFlowLogger",
    "TensorBoardLogger",
    "WandbLogger",
    "rank_zero_experiment",
]

_LAZY = {
    "TensorBoardLogger": "fulgor.loggers.tensorboard",
    "MLFlowLogger": "fulgor.loggers.mlflow",
    "WandbLogger": "fulgor.loggers.wandb",
    "CometLogger": "fulgor.loggers.comet",
    "NeptuneLogger": "fulgor.loggers.neptune",  # not in Lightning's __all__, but importable from its module
}


def __getattr__(name: str) -> Any:
    # PEP 562: the module holding the class is imported on first access (its own heavy imports stay lazier still).
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fulgor.loggers' has no attribute {name!r}")
