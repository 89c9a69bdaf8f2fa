"""`RichModelSummary`: the model summary (``fulgor.summary``) drawn as a rich table, as Lightning draws it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fulgor.callbacks.model_summary import ModelSummary
from fulgor.callbacks.rich_columns import rich_classes
from fulgor.summary import get_human_readable_count, summarize

if TYPE_CHECKING:
    from fulgor.module import LightningModule
    from fulgor.summary import ModelSummary as Summary
    from fulgor.trainer.trainer import Trainer

__all__ = ["RichModelSummary"]

_RIGHT_ALIGNED = {"Params", "FLOPs", "In sizes", "Out sizes"}


class RichModelSummary(ModelSummary):
    """Print the model summary at the start of ``fit`` as a rich table, followed by the totals (global rank 0).

    Args:
        max_depth: depth of nested layers to list: 1 = direct children, -1 = all, 0 = no summary.
        **summarize_kwargs: ``header_style`` (default ``"bold magenta"``).

    Raises:
        ModuleNotFoundError: rich is not installed.

    Example::

        trainer = Trainer(callbacks=[RichModelSummary(max_depth=2)])
    """

    def __init__(self, max_depth: int = 1, **summarize_kwargs: Any) -> None:
        rich_classes()  # fail now, with the install hint
        super().__init__(max_depth, **summarize_kwargs)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Build the summary on every rank (its example forward may need all ranks) and print it on rank 0."""
        if not self._max_depth:
            return
        summary = summarize(pl_module, max_depth=self._max_depth)
        if trainer.is_global_zero:
            self.render(summary, **self._summarize_kwargs)

    @staticmethod
    def render(summary: Summary, console: Any = None, header_style: str = "bold magenta") -> None:
        """Print ``summary`` on ``console`` (default: rich's global console): the layer table, then the totals."""
        from rich.table import Table

        console = console if console is not None else rich_classes().get_console()
        columns = summary._columns()  # (header, cells) pairs, leftover-parameters row included
        table = Table(header_style=header_style)
        for header, _ in columns:
            if header == " ":
                table.add_column(" ", style="dim")
            elif header == "Name":
                table.add_column("Name", justify="left", no_wrap=True)
            elif header in ("In sizes", "Out sizes"):
                table.add_column(header, justify="right", style="white")
            else:
                table.add_column(header, justify="right" if header in _RIGHT_ALIGNED else "left")
        for row in zip(*(cells for _, cells in columns)):
            table.add_row(*row)
        console.print(table)

        trainable, total = summary.trainable_parameters, summary.total_parameters
        modes = summary.total_training_modes
        grid = Table.grid(expand=True)
        grid.add_column()
        grid.add_column()
        for label, value in (
            ("Trainable params", f"{get_human_readable_count(trainable):<10}"),
            ("Non-trainable params", f"{get_human_readable_count(total - trainable):<10}"),
            ("Total params", f"{get_human_readable_count(total):<10}"),
            ("Total estimated model params size (MB)", f"{summary.model_size:,.3f}".ljust(10)),
            ("Modules in train mode", str(modes["train"])),
            ("Modules in eval mode", str(modes["eval"])),
            ("Total FLOPs", get_human_readable_count(summary.total_flops)),
        ):
            grid.add_row(f"[bold]{label}[/]: {value}")
        console.print(grid)
