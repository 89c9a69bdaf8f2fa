"""`CSVLogger`: metrics to `<save_dir>/<name>/version_N/metrics.csv` and hparams to `hparams.yaml`, byte for byte as
Lightning writes them. Rows are buffered in memory and written every `flush_logs_every_n_steps` steps."""

from __future__ import annotations

import csv
import os
from argparse import Namespace
from collections.abc import Mapping
from typing import Any, cast

from torch import Tensor

from fulgor import fs
from fulgor.hparams import save_hparams_to_yaml
from fulgor.loggers.logger import rank_zero_experiment
from fulgor.loggers.versioning import VersionedLogger
from fulgor.rank import rank_zero_only, rank_zero_warn

__all__ = ["CSVLogger", "ExperimentWriter"]


class ExperimentWriter:
    """Buffers metric rows and writes ``metrics.csv``; writes ``hparams.yaml``.

    The CSV header is every key seen so far, sorted; when a flush brings new keys, the file is rewritten under the new
    header (earlier rows get empty cells for them).

    Args:
        log_dir: the directory of this experiment version (created if missing).
    """

    NAME_METRICS_FILE = "metrics.csv"
    NAME_HPARAMS_FILE = "hparams.yaml"

    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir
        self.metrics_file_path = fs.join(log_dir, self.NAME_METRICS_FILE)
        self.metrics: list[dict[str, Any]] = []  # rows not yet written
        self.metrics_keys: list[str] = []  # the header of the file on disk
        self.hparams: dict[str, Any] = {}
        self._clear_previous_run()
        fs.makedirs(log_dir, exist_ok=True)

    def _clear_previous_run(self) -> None:
        if fs.listdir(self.log_dir):  # [] when the folder does not exist
            rank_zero_warn(
                f"Experiment logs directory {self.log_dir} exists and is not empty."
                " Previous log files in this directory will be deleted when the new ones are saved!"
            )
            if _isfile(self.metrics_file_path):
                _remove(self.metrics_file_path)

    def log_hparams(self, params: Mapping[str, Any]) -> None:
        """Add ``params`` to the recorded hparams and rewrite ``hparams.yaml``."""
        self.hparams.update(params)
        save_hparams_to_yaml(fs.join(self.log_dir, self.NAME_HPARAMS_FILE), self.hparams)

    def log_metrics(self, metrics_dict: Mapping[str, Any], step: int | None = None) -> None:
        """Buffer one row: the metrics (tensors read with ``.item()``) and its ``step``."""
        if step is None:
            step = len(self.metrics)
        row = {k: v.item() if isinstance(v, Tensor) else v for k, v in metrics_dict.items()}
        row["step"] = step
        self.metrics.append(row)

    def save(self) -> None:
        """Append the buffered rows to ``metrics.csv`` (rewriting it first if the header grew)."""
        if not self.metrics:
            return
        known = set(self.metrics_keys)
        new_keys = {k for row in self.metrics for k in row if k not in known}
        file_exists = _isfile(self.metrics_file_path)
        if new_keys:
            self.metrics_keys = sorted(known | new_keys)
            if file_exists:
                self._rewrite_with_header()
        with fs.open(self.metrics_file_path, "a" if file_exists else "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=self.metrics_keys)
            if not file_exists:
                writer.writeheader()
            writer.writerows(self.metrics)
        self.metrics = []

    def _rewrite_with_header(self) -> None:
        with fs.open(self.metrics_file_path, "r", newline="") as file:
            rows = list(csv.DictReader(file))
        with fs.open(self.metrics_file_path, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=self.metrics_keys)
            writer.writeheader()
            writer.writerows(rows)


class CSVLogger(VersionedLogger):
    """Log metrics to a CSV file and hyperparameters to a YAML file, in ``os.path.join(save_dir, name, version)``.

    Args:
        save_dir: the directory holding all experiments (a local path, or a URL when fsspec is installed).
        name: the experiment name (``"lightning_logs"``); ``None`` or ``""`` puts versions directly in ``save_dir``.
        version: an int (directory ``version_<N>``), a string (used as the directory name), or ``None`` for the next
            free integer after the existing ``version_*`` directories.
        prefix: prepended to every metric name, joined with ``"-"``.
        flush_logs_every_n_steps: write buffered rows to disk when ``(step + 1)`` is a multiple of this.

    Example::

        logger = CSVLogger("logs", name="my_exp")
        trainer = Trainer(logger=logger)
    """

    LOGGER_JOIN_CHAR = "-"

    def __init__(
        self,
        save_dir: str | os.PathLike[str],
        name: str | None = "lightning_logs",
        version: int | str | None = None,
        prefix: str = "",
        flush_logs_every_n_steps: int = 100,
    ) -> None:
        super().__init__(save_dir, name, version)
        self._prefix = prefix
        self._flush_logs_every_n_steps = flush_logs_every_n_steps
        self._experiment: ExperimentWriter | None = None

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        """The :class:`ExperimentWriter` (created, with its directory, on first access; a dummy on other ranks)."""
        if self._experiment is None:
            fs.makedirs(self._on_disk(self.root_dir), exist_ok=True)
            self._experiment = ExperimentWriter(log_dir=self._on_disk(self.log_dir))
        return self._experiment

    def _writer(self) -> ExperimentWriter:
        # Only called from rank-zero-only methods, where `experiment` is the real writer.
        return cast(ExperimentWriter, self.experiment)

    @rank_zero_only
    def log_hyperparams(self, params: Mapping[str, Any] | Namespace | None = None, *args: Any, **kwargs: Any) -> None:
        """Record hyperparameters and (re)write ``hparams.yaml``."""
        if isinstance(params, Namespace):
            params = vars(params)
        self._writer().log_hparams(params or {})

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Buffer one row of metrics; flush to ``metrics.csv`` every ``flush_logs_every_n_steps`` steps."""
        if self._prefix:
            metrics = {f"{self._prefix}{self.LOGGER_JOIN_CHAR}{k}": v for k, v in metrics.items()}
        writer = self._writer()
        if step is None:
            step = len(writer.metrics)  # Lightning's default: the number of rows still buffered
        writer.log_metrics(metrics, step)
        if (step + 1) % self._flush_logs_every_n_steps == 0:
            self.save()

    @rank_zero_only
    def save(self) -> None:
        """Write buffered rows to ``metrics.csv``."""
        self._writer().save()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Flush remaining rows (nothing to do if this process never logged)."""
        if self._experiment is not None:
            self.save()


def _isfile(path: str) -> bool:
    if fs.is_remote(path):
        return bool(fs.get_filesystem(path).isfile(path))
    return os.path.isfile(path)


def _remove(path: str) -> None:
    if fs.is_remote(path):
        fs.get_filesystem(path).rm_file(path)
    else:
        os.remove(path)
