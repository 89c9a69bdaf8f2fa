"""The `Profiler` base (Lightning's interface: start/stop/profile, report streams and file names) and the default
`PassThroughProfiler`; also how the loops time an iterator's batches through a profiler."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, TextIO, TypeVar

from fulgor.rank import log

__all__ = ["PassThroughProfiler", "Profiler", "is_active", "profile_section", "profiled_next", "set_profiled_module"]

_T = TypeVar("_T")


class Profiler:
    """Base class for profilers: subclass it and implement `start`/`stop` (and `summary` for a report).

    Args:
        dirpath: Directory for the report file. When None but ``filename`` is set, the trainer's log dir is used.
        filename: When set, the report is appended to ``<dirpath>/<stage>-<filename>.txt`` instead of logged.
    """

    def __init__(self, dirpath: str | Path | None = None, filename: str | None = None) -> None:
        self.dirpath = dirpath
        self.filename = filename
        self._output_file: TextIO | None = None
        self._write_stream: Callable[[str], Any] | None = None
        self._local_rank: int | None = None
        self._stage: str | None = None
        self._lightning_module: Any = None  # the run's module, set by the Trainer while a run lasts

    def start(self, action_name: str) -> None:
        """Start recording `action_name`."""
        raise NotImplementedError

    def stop(self, action_name: str) -> None:
        """Stop recording `action_name` (started by `start`)."""
        raise NotImplementedError

    def summary(self) -> str:
        """The report text (empty for profilers that write their own files)."""
        return ""

    @contextmanager
    def profile(self, action_name: str) -> Iterator[str]:
        """Record the code inside the `with` block as `action_name`."""
        try:
            self.start(action_name)
            yield action_name
        finally:
            self.stop(action_name)

    def setup(self, stage: str, local_rank: int | None = None, log_dir: str | None = None) -> None:
        """Called by the Trainer when a run starts: the stage names the report file; `log_dir` is the default dir."""
        self._stage = str(stage)
        self._local_rank = local_rank
        self.dirpath = self.dirpath or log_dir

    def teardown(self, stage: str | None) -> None:
        """Close the report file (called after `describe`)."""
        self._write_stream = None
        if self._output_file is not None:
            self._output_file.close()
            self._output_file = None

    def describe(self) -> None:
        """Write the summary (to the report file or the `fulgor` log) at the end of a run, then tear down."""
        self._prepare_streams()
        summary = self.summary()
        if summary and self._write_stream is not None:
            self._write_stream(summary)
        if self._output_file is not None:
            self._output_file.flush()
        self.teardown(stage=self._stage)

    @property
    def local_rank(self) -> int:
        """The process's local rank (0 outside distributed runs)."""
        return 0 if self._local_rank is None else self._local_rank

    def _prepare_filename(self, action_name: str | None = None, extension: str = ".txt") -> str:
        """`<stage>-<filename>[-<rank>][-<action>]<ext>`, with characters unsafe in paths replaced by `_`."""
        parts = [p for p in (self._stage, self.filename) if p]
        if self._local_rank is not None:
            parts.append(str(self._local_rank))
        if action_name is not None:
            parts.append(action_name)
        base = re.sub(r"_+", "_", re.sub(r"[\\/:*?\"<>|\n\r\t]", "_", "-".join(parts))).strip()
        return (base or "profile") + extension

    def _prepare_streams(self) -> None:
        if self._write_stream is not None:
            return
        if self.filename and self.dirpath:
            os.makedirs(self.dirpath, exist_ok=True)
            self._output_file = open(os.path.join(self.dirpath, self._prepare_filename()), "a")  # noqa: SIM115
            self._write_stream = self._output_file.write
        else:
            self._write_stream = self._log_info

    def _log_info(self, text: str) -> None:
        if self._local_rank in (None, 0):
            log.info(text)

    def _stats_to_str(self, stats: dict[str, str]) -> str:
        stage = f"{self._stage.upper()} " if self._stage is not None else ""
        lines = [stage + "Profiler Report"]
        for action, value in stats.items():
            rank = f" rank: {self._local_rank}" if self._local_rank is not None else ""
            lines += [f"Profile stats for: {action}{rank}", value]
        return os.linesep.join(lines)

    def __del__(self) -> None:
        if hasattr(self, "_stage"):  # not when __init__ failed part-way
            self.teardown(stage=self._stage)


class PassThroughProfiler(Profiler):
    """The default: records nothing (the Trainer does not even call it per hook)."""

    def start(self, action_name: str) -> None:
        """Do nothing."""

    def stop(self, action_name: str) -> None:
        """Do nothing."""


def is_active(profiler: Profiler) -> bool:
    """Whether the Trainer must time its hooks and loops through `profiler` (decided once per run)."""
    return not isinstance(profiler, PassThroughProfiler)


def set_profiled_module(profiler: Profiler, module: Any) -> None:
    """Tell `profiler` which LightningModule the run trains (None when the run ends), as Lightning's Trainer does:
    the PyTorch profiler labels its layers and reads the run's batch counts through it."""
    profiler._lightning_module = module


def profiled_next(profiler: Profiler, batches: Iterable[_T], action: str, length: float = math.inf) -> Iterator[_T]:
    """`batches`, each `next` timed as `action` (Lightning's `[_EvaluationLoop].val_next` and the like): what the
    loops fetch through when the run has a real profiler. After `length` items it stops without asking for another,
    so a limited loader records one fetch per batch."""
    iterator = iter(batches)
    count = 0
    while count < length:
        with profiler.profile(action):
            try:
                item = next(iterator)
            except StopIteration:
                return
        count += 1
        yield item


def profile_section(profiler: Profiler | None, action: str) -> AbstractContextManager[Any]:
    """`profiler.profile(action)`, or nothing when the run has no real profiler (`profiler` None)."""
    return nullcontext() if profiler is None else profiler.profile(action)
