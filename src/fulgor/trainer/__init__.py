"""The Trainer and its loops. `Trainer` is loaded on first access (PEP 562), so importing one of the loop modules
does not import the Trainer and everything above it."""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fulgor.trainer.trainer import Trainer

__all__ = ["Trainer"]


def __getattr__(name: str) -> Any:
    if name == "Trainer":
        return importlib.import_module("fulgor.trainer.trainer").Trainer
    raise AttributeError(f"module 'fulgor.trainer' has no attribute {name!r}")
