"""Fabric's CSVLogger and TensorBoardLogger (`lightning_fabric.loggers`): fulgor's loggers with Fabric's arguments
and meanings: `root_dir` is the folder given (the Trainer's loggers answer `<save_dir>/<name>`), and the TensorBoard
logger's `log_graph(model, input_array)` always draws the graph (there is no `log_graph` flag)."""

from __future__ import annotations

import os
from argparse import Namespace
from collections.abc import Mapping
from typing import Any

from torch.nn import Module

from fulgor.loggers.csv_logs import CSVLogger as _TrainerCSVLogger
from fulgor.loggers.tensorboard import TensorBoardLogger as _TrainerTensorBoardLogger
from fulgor.rank import rank_zero_only

__all__ = ["CSVLogger", "TensorBoardLogger"]


class CSVLogger(_TrainerCSVLogger):
    """Metrics to `<root_dir>/<name>/version_<N>/metrics.csv` (Fabric's CSV logger: no hyperparameters file).

    Args:
        root_dir: the folder holding the experiments.
        name: the experiment's folder name.
        version: the version (an int makes `version_<N>`; a string is used as the folder name); the next free one if
            None.
        prefix: put before every metric name.
        flush_logs_every_n_steps: how often rows are written to the file.
    """

    def __init__(
        self,
        root_dir: str | os.PathLike[str],
        name: str | None = "lightning_logs",
        version: int | str | None = None,
        prefix: str = "",
        flush_logs_every_n_steps: int = 100,
    ) -> None:
        super().__init__(
            root_dir, name=name, version=version, prefix=prefix, flush_logs_every_n_steps=flush_logs_every_n_steps
        )

    def log_hyperparams(self, params: Mapping[str, Any] | Namespace | None = None, *args: Any, **kwargs: Any) -> None:
        """Not supported by Fabric's CSV logger.

        Raises:
            NotImplementedError: always (use TensorBoardLogger, or the Trainer's CSVLogger, for hyperparameters).
        """
        raise NotImplementedError("The `CSVLogger` does not yet support logging hyperparameters.")

    @property
    def root_dir(self) -> str:
        """The folder given as `root_dir`, holding the experiments (`log_dir` is `root_dir/name/version_<N>`)."""
        return self.save_dir


class TensorBoardLogger(_TrainerTensorBoardLogger):
    """TensorBoard event files under `<root_dir>/<name>/version_<N>` (Fabric's TensorBoard logger).

    Args:
        root_dir: the folder holding the experiments.
        name: the experiment's folder name.
        version: the version; the next free one if None.
        default_hp_metric: log a placeholder `hp_metric` with the hyperparameters.
        prefix: put before every metric name.
        sub_dir: a subfolder of the version folder for the event files.
        **kwargs: passed to tensorboard's SummaryWriter.
    """

    def __init__(
        self,
        root_dir: str | os.PathLike[str],
        name: str | None = "lightning_logs",
        version: int | str | None = None,
        default_hp_metric: bool = True,
        prefix: str = "",
        sub_dir: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            root_dir,
            name=name,
            version=version,
            default_hp_metric=default_hp_metric,
            prefix=prefix,
            sub_dir=sub_dir,
            **kwargs,
        )

    @property
    def root_dir(self) -> str:
        """The folder given as `root_dir`, as given (`log_dir` expands `~` and `$VARS` in it)."""
        return self.save_dir

    def log_graph(self, model: Module, input_array: Any = None) -> None:
        """Trace `model` (a Fabric-wrapped module: the module inside) with `input_array`, default its
        `example_input_array`, and write the graph; warn instead when there is no usable input. Rank 0 only."""
        if rank_zero_only.rank == 0:  # type: ignore[attr-defined]
            self._write_graph(model, input_array)
