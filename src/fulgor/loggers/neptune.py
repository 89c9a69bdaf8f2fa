"""`NeptuneLogger`: kept so `from ... import NeptuneLogger` works; Neptune has shut down, so creating one raises, as in
Lightning 2.6.6, and the message names the loggers to use instead."""

from __future__ import annotations

from typing import Any

__all__ = ["NeptuneLogger"]


class NeptuneLogger:
    """Neptune's service has been shut down (sunset); this logger cannot log anything. Use
    :class:`~fulgor.loggers.CSVLogger`, :class:`~fulgor.loggers.TensorBoardLogger`,
    :class:`~fulgor.loggers.MLFlowLogger`, :class:`~fulgor.loggers.WandbLogger` or
    :class:`~fulgor.loggers.CometLogger`.

    Raises:
        RuntimeError: always, when created.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError(
            "NeptuneLogger is no longer supported. Neptune has been sunset.\n\n"
            "Use another logger instead: CSVLogger, TensorBoardLogger, MLFlowLogger, WandbLogger or CometLogger"
            " (e.g. `Trainer(logger=CSVLogger('logs'))`)."
        )
