"""`HyperparametersMixin` (Lightning's `core.mixins` name): `save_hyperparameters`, `hparams` and `hparams_initial` for
any class, on fulgor.hparams' functions; the one definition LightningModule and LightningDataModule inherit."""

from __future__ import annotations

import inspect
import types
from collections.abc import Iterable
from typing import Any

from fulgor.hparams import AttributeDict, hparams_initial_of, hparams_of, save_hyperparameters

__all__ = ["HyperparametersMixin"]


class HyperparametersMixin:
    """`save_hyperparameters`, `hparams` and `hparams_initial` for any class (LightningModule and LightningDataModule
    inherit them from here, as in Lightning)."""

    __jit_unused_properties__: list[str] = ["hparams", "hparams_initial"]

    def save_hyperparameters(
        self,
        *args: Any,
        ignore: str | Iterable[str] | None = None,
        frame: types.FrameType | None = None,
        logger: bool = True,
    ) -> None:
        """Save the `__init__` arguments as `self.hparams` (see `fulgor.hparams.save_hyperparameters`)."""
        if frame is None:
            current = inspect.currentframe()
            frame = current.f_back if current is not None else None
        save_hyperparameters(self, *args, ignore=ignore, frame=frame, logger=logger)

    @property
    def hparams(self) -> AttributeDict:
        """The hyperparameters (mutable)."""
        return hparams_of(self)

    @property
    def hparams_initial(self) -> AttributeDict:
        """A copy of the hyperparameters as first saved."""
        return hparams_initial_of(self)
