"""The `Logger` base class every experiment logger implements, the `rank_zero_experiment` decorator, and
`DummyLogger` (accepts every call, writes nothing)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from argparse import Namespace
from collections.abc import Callable, Mapping, Sequence
from functools import wraps
from typing import Any, TypeVar

from torch import Tensor
from torch.nn import Module

from fulgor.rank import rank_zero_only

__all__ = ["DummyExperiment", "DummyLogger", "Logger", "merge_dicts", "rank_zero_experiment"]

T = TypeVar("T")


class Logger(ABC):
    """Base class for experiment loggers (Lightning's interface).

    Subclasses implement ``name``, ``version``, ``log_metrics`` and ``log_hyperparams``; loggers that write files also
    return their directories from ``root_dir``, ``log_dir`` and ``save_dir``. Loggers usually expose the underlying
    writer as an ``experiment`` property decorated with :func:`rank_zero_experiment`.
    """

    @property
    @abstractmethod
    def name(self) -> str | None:
        """The experiment name."""

    @property
    @abstractmethod
    def version(self) -> int | str | None:
        """The experiment version."""

    @property
    def root_dir(self) -> str | None:
        """The directory holding every version of this experiment, or None if the logger keeps no local files."""
        return None

    @property
    def log_dir(self) -> str | None:
        """The directory of this version of the experiment, or None if the logger keeps no local files."""
        return None

    @property
    def save_dir(self) -> str | None:
        """The directory experiment logs are saved under, or None if the logger keeps no local files."""
        return None

    @property
    def group_separator(self) -> str:
        """The separator the logger uses to group metrics into sections."""
        return "/"

    @abstractmethod
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Record metrics.

        Args:
            metrics: metric name -> value.
            step: the step the values belong to.
        """

    @abstractmethod
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        """Record hyperparameters.

        Args:
            params: a dict or Namespace of hyperparameters.
            *args: logger-specific positional arguments.
            **kwargs: logger-specific keyword arguments.
        """

    def log_graph(self, model: Module, input_array: Tensor | None = None) -> None:  # noqa: B027
        """Record the model graph (no-op unless the logger supports it).

        Args:
            model: the model.
            input_array: an example input for ``model.forward``.
        """

    def save(self) -> None:  # noqa: B027
        """Write buffered data to storage."""

    def finalize(self, status: str) -> None:
        """Finish the experiment; the default saves.

        Args:
            status: how the run ended ("success", "failed", ...).
        """
        self.save()

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:  # noqa: B027
        """Called after the checkpoint callback saved a new checkpoint.

        Args:
            checkpoint_callback: the ModelCheckpoint instance.
        """


class DummyExperiment:
    """Stands in for an experiment object: every attribute is a no-op callable, indexing returns itself."""

    def nop(self, *args: Any, **kwargs: Any) -> None:
        """Do nothing."""

    def __getattr__(self, _: str) -> Callable[..., None]:
        return self.nop

    def __getitem__(self, idx: int) -> DummyExperiment:
        return self  # so `logger.experiment[0].add_image(...)` works

    def __setitem__(self, *args: Any, **kwargs: Any) -> None:
        pass


def rank_zero_experiment(fn: Callable[[Any], T]) -> Callable[[Any], T | DummyExperiment]:
    """Decorate a logger's ``experiment`` getter: non-zero ranks get a :class:`DummyExperiment` instead."""

    @wraps(fn)
    def experiment(self: Any) -> T | DummyExperiment:
        if rank_zero_only.rank > 0:  # type: ignore[attr-defined]
            return DummyExperiment()
        return fn(self)

    return experiment


class DummyLogger(Logger):
    """A logger that accepts every call and records nothing (used when a feature must silence the user's loggers)."""

    def __init__(self) -> None:
        super().__init__()
        self._experiment = DummyExperiment()

    @property
    def experiment(self) -> DummyExperiment:
        """A :class:`DummyExperiment`."""
        return self._experiment

    def log_metrics(self, *args: Any, **kwargs: Any) -> None:
        """Do nothing."""

    def log_hyperparams(self, *args: Any, **kwargs: Any) -> None:
        """Do nothing."""

    @property
    def name(self) -> str:
        """The empty string."""
        return ""

    @property
    def version(self) -> str:
        """The empty string."""
        return ""

    def __getitem__(self, idx: int) -> DummyLogger:
        return self  # so `logger[0].experiment.add_image(...)` works

    def __getattr__(self, name: str) -> Callable[..., None]:
        # Any logger-specific method a user calls is accepted and ignored.
        def method(*args: Any, **kwargs: Any) -> None:
            return None

        return method


def _mean(values: Sequence[Any]) -> float:
    return float(sum(values) / len(values))


def merge_dicts(
    dicts: Sequence[Mapping[Any, Any]],
    agg_key_funcs: Mapping[Any, Any] | None = None,
    default_func: Callable[[Sequence[Any]], Any] = _mean,
) -> dict[Any, Any]:
    """Merge dicts into one, aggregating the values each key has across them (nested dicts merged recursively).

    Args:
        dicts: the dicts to merge; a key missing from some, or None there, is aggregated over the others.
        agg_key_funcs: key -> function aggregating that key's values (a dict of them for a nested dict).
        default_func: the aggregation of keys not in `agg_key_funcs` (the mean).

    Example::

        >>> merge_dicts([{"a": 1.0, "b": {"c": 1}}, {"a": 3.0, "b": {"c": 5}}], {"b": {"c": max}})
        {'a': 2.0, 'b': {'c': 5}}
    """
    funcs = agg_key_funcs or {}
    keys = list(dict.fromkeys(key for d in dicts for key in d))
    merged: dict[Any, Any] = {}
    for key in keys:
        values = [d[key] for d in dicts if d.get(key) is not None]
        func = funcs.get(key)
        if not values:  # None in every dict (Lightning fails with an IndexError here)
            merged[key] = None
        elif isinstance(values[0], dict):
            merged[key] = merge_dicts(values, func, default_func)
        else:
            merged[key] = (func or default_func)(values)
    return merged
