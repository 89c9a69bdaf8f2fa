"""Experiment loggers: the `Logger` base class and the built-in loggers."""

from fulgor.loggers.csv_logs import CSVLogger
from fulgor.loggers.logger import DummyExperiment, DummyLogger, Logger, rank_zero_experiment

__all__ = ["CSVLogger", "DummyExperiment", "DummyLogger", "Logger", "rank_zero_experiment"]
