"""The `ModelSummary` callback: logs the model summary table (``fulgor.summary``) when fit starts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fulgor.callbacks.callback import Callback
from fulgor.rank import log
from fulgor.summary import summarize

if TYPE_CHECKING:
    from fulgor.module import LightningModule
    from fulgor.trainer.trainer import Trainer


class ModelSummary(Callback):
    """Log a summary of the model's layers at the start of ``fit`` (on global rank 0).

    Args:
        max_depth: depth of nested layers to list: 1 = direct children, -1 = all, 0 = no summary.
        **summarize_kwargs: accepted for compatibility with Lightning (used there by rich summaries); ignored.

    Example:
        >>> trainer = Trainer(callbacks=[ModelSummary(max_depth=-1)])  # doctest: +SKIP
    """

    def __init__(self, max_depth: int = 1, **summarize_kwargs: Any) -> None:
        self._max_depth = max_depth
        self._summarize_kwargs = summarize_kwargs

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Build the summary on every rank (its example forward may need all ranks) and log it on rank 0."""
        if not self._max_depth:
            return
        summary = summarize(pl_module, max_depth=self._max_depth)
        if trainer.is_global_zero:
            log.info("\n" + str(summary))
