"""Profilers for `Trainer(profiler=...)`: the `Profiler` base (Lightning's interface and report files), and the
simple (wall-clock table), advanced (cProfile per action) and pytorch (torch.profiler chrome trace) profilers."""

from __future__ import annotations

import io
import math
import os
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from fulgor.errors import MisconfigurationException
from fulgor.rank import log

__all__ = [
    "AdvancedProfiler",
    "PassThroughProfiler",
    "Profiler",
    "PyTorchProfiler",
    "SimpleProfiler",
    "select_profiler",
]


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


class SimpleProfiler(Profiler):
    """Records each action's wall-clock durations and reports mean, calls, total and share of the run.

    Args:
        dirpath: See `Profiler`.
        filename: See `Profiler`.
        extended: Also report the number of calls and the percentage of the total time (Lightning's default).
    """

    def __init__(self, dirpath: str | Path | None = None, filename: str | None = None, extended: bool = True) -> None:
        super().__init__(dirpath=dirpath, filename=filename)
        self.current_actions: dict[str, float] = {}
        self.recorded_durations: dict[str, list[float]] = defaultdict(list)
        self.extended = extended
        self.start_time = time.perf_counter()

    def start(self, action_name: str) -> None:
        """Start timing `action_name`; it must not be running already."""
        if action_name in self.current_actions:
            raise ValueError(f"Attempted to start {action_name} which has already started.")
        self.current_actions[action_name] = time.perf_counter()

    def stop(self, action_name: str) -> None:
        """Record the time since `start(action_name)`."""
        end = time.perf_counter()
        if action_name not in self.current_actions:
            raise ValueError(f"Attempting to stop recording an action ({action_name}) which was never started.")
        self.recorded_durations[action_name].append(end - self.current_actions.pop(action_name))

    def summary(self) -> str:
        """Lightning's table: one row per action, the longest total share first (a "Total" row when extended)."""
        sep = os.linesep
        out = (f"{self._stage.upper()} " if self._stage is not None else "") + f"Profiler Report{sep}"
        if not self.recorded_durations:
            return out + sep
        width = max(len(k) for k in self.recorded_durations)
        if self.extended:
            header = _row(width, "Action", "Mean duration (s)", "Num calls", "Total time (s)", "Percentage %")
            line = f"{sep}{'-' * len(header.expandtabs())}"
            total_duration = time.perf_counter() - self.start_time
            rows = []
            for action, durations in self.recorded_durations.items():
                total = math.fsum(durations)
                rows.append((action, total / len(durations), len(durations), total, 100.0 * total / total_duration))
            rows.sort(key=lambda r: r[4], reverse=True)
            calls = sum(r[2] for r in rows)
            out += line + header + line + _row(width, "Total", "-", f"{calls}", f"{total_duration:.5}", "100 %") + line
            for action, mean, n, total, share in rows:
                out += _row(width, action, f"{mean:.5}", f"{n}", f"{total:.5}", f"{share:.5}")
        else:
            header = _row(width, "Action", "Mean duration (s)", "Total time (s)")
            line = f"{sep}{'-' * len(header.expandtabs())}"
            plain = [(a, math.fsum(d) / len(d), math.fsum(d)) for a, d in self.recorded_durations.items()]
            plain.sort(key=lambda r: r[1], reverse=True)
            out += line + header + line
            for action, mean, total in plain:
                out += _row(width, action, f"{mean:.5}", f"{total:.5}")
        return out + line + sep


def _row(width: int, action: str, *cells: str) -> str:
    """One table row: the action left-aligned to `width`, each cell padded to 15, tab-separated as in Lightning."""
    return f"{os.linesep}|  {action:<{width}s}\t|" + "".join(f"  {cell:<15}\t|" for cell in cells)


class AdvancedProfiler(Profiler):
    """Runs cProfile for each action and reports the pstats table of each (sorted by cumulative time).

    Args:
        dirpath: See `Profiler`.
        filename: See `Profiler`.
        line_count_restriction: Passed to `pstats.Stats.print_stats` (an int limits rows, a float is a fraction).
        dump_stats: Also write each action's raw stats to `<dirpath>/<stage>-<filename>-<action>.prof`.
    """

    def __init__(
        self,
        dirpath: str | Path | None = None,
        filename: str | None = None,
        line_count_restriction: float = 1.0,
        dump_stats: bool = False,
    ) -> None:
        super().__init__(dirpath=dirpath, filename=filename)
        self.profiled_actions: dict[str, Any] = {}
        self.line_count_restriction = line_count_restriction
        self.dump_stats = dump_stats

    def start(self, action_name: str) -> None:
        """Enable the action's cProfile.Profile (others are paused: cProfile allows one active profiler)."""
        import cProfile

        for profile in self.profiled_actions.values():
            profile.disable()
        if action_name not in self.profiled_actions:
            self.profiled_actions[action_name] = cProfile.Profile()
        self.profiled_actions[action_name].enable()

    def stop(self, action_name: str) -> None:
        """Disable the action's cProfile.Profile."""
        profile = self.profiled_actions.get(action_name)
        if profile is None:
            raise ValueError(f"Attempting to stop recording an action ({action_name}) which was never started.")
        profile.disable()

    def summary(self) -> str:
        """One pstats listing per action."""
        import pstats

        stats = {}
        for action, profile in self.profiled_actions.items():
            if self.dump_stats and self.dirpath:
                os.makedirs(self.dirpath, exist_ok=True)
                profile.dump_stats(os.path.join(self.dirpath, self._prepare_filename(action, extension=".prof")))
            stream = io.StringIO()
            pstats.Stats(profile, stream=stream).strip_dirs().sort_stats("cumulative").print_stats(
                self.line_count_restriction
            )
            stats[action] = stream.getvalue()
        return self._stats_to_str(stats)

    def teardown(self, stage: str | None) -> None:
        """Close the report file and forget the recorded profiles."""
        super().teardown(stage=stage)
        self.profiled_actions.clear()


class PyTorchProfiler(Profiler):
    """Records the run with `torch.profiler` and writes a chrome trace (``<stage>-<filename>.pt.trace.json``,
    openable in chrome://tracing or Perfetto) to `dirpath` (default: the trainer's log dir); `summary` is the
    key-averages table.

    Args:
        dirpath: See `Profiler`.
        filename: Trace/report base name (without it, the stage alone: ``fit.pt.trace.json``).
        export_to_chrome: Write the chrome trace at the end of the run.
        row_limit: Rows of the key-averages table in the summary.
        sort_by_key: Column the table is sorted by.
        profiler_kwargs: Passed to `torch.profiler.profile` (e.g. ``record_shapes=True``).
    """

    def __init__(
        self,
        dirpath: str | Path | None = None,
        filename: str | None = None,
        export_to_chrome: bool = True,
        row_limit: int = 20,
        sort_by_key: str = "cpu_time_total",
        **profiler_kwargs: Any,
    ) -> None:
        super().__init__(dirpath=dirpath, filename=filename)
        self._export_to_chrome = export_to_chrome
        self._row_limit = row_limit
        self._sort_by_key = sort_by_key
        self._profiler_kwargs = profiler_kwargs
        self.profiler: Any = None
        self._ranges: dict[str, Any] = {}
        self.trace_path: str | None = None
        self.function_events: Any = None  # torch's recorded events, once the recording has stopped

    def start(self, action_name: str) -> None:
        """Start torch.profiler on the first action, then mark `action_name` as a labelled range in the trace."""
        import torch

        if self.profiler is None:
            self.profiler = torch.profiler.profile(**self._profiler_kwargs)
            self.profiler.__enter__()
        record: Any = torch.profiler.record_function(action_name)
        record.__enter__()
        self._ranges[action_name] = record

    def stop(self, action_name: str) -> None:
        """Close the labelled range of `action_name`."""
        record = self._ranges.pop(action_name, None)
        if record is None:
            raise ValueError(f"Attempting to stop recording an action ({action_name}) which was never started.")
        record.__exit__(None, None, None)

    def summary(self) -> str:
        """Stop recording, write the chrome trace, and return torch's key-averages table."""
        if self.profiler is None:
            return ""
        profiler, self.profiler = self.profiler, None
        for record in self._ranges.values():
            record.__exit__(None, None, None)
        self._ranges.clear()
        profiler.__exit__(None, None, None)
        self.function_events = profiler.events()
        if self._export_to_chrome and self.dirpath:
            os.makedirs(self.dirpath, exist_ok=True)
            self.trace_path = os.path.join(self.dirpath, self._prepare_filename(extension=".pt.trace.json"))
            profiler.export_chrome_trace(self.trace_path)
        table = profiler.key_averages().table(sort_by=self._sort_by_key, row_limit=self._row_limit)
        return self._stats_to_str({"records": table})

    def teardown(self, stage: str | None) -> None:
        """Close the report file and stop a recording left running (a run that failed before `describe`)."""
        super().teardown(stage=stage)
        if getattr(self, "profiler", None) is not None:
            for record in self._ranges.values():
                record.__exit__(None, None, None)
            self._ranges.clear()
            self.profiler.__exit__(None, None, None)
            self.profiler = None


_PROFILERS: dict[str, type[Profiler]] = {
    "simple": SimpleProfiler,
    "advanced": AdvancedProfiler,
    "pytorch": PyTorchProfiler,
}


def select_profiler(value: Profiler | str | bool | None) -> Profiler:
    """The profiler for `Trainer(profiler=value)`: a name, an instance, or None/False (a `PassThroughProfiler`)."""
    if isinstance(value, str):
        name = value.lower()
        if name == "xla":
            raise MisconfigurationException(
                "`Trainer(profiler='xla')` is not supported by fulgor: it has no XLA support."
            )
        if name not in _PROFILERS:
            raise MisconfigurationException(
                "When passing string value for the `profiler` parameter of `Trainer`,"
                f" it can only be one of {[*_PROFILERS, 'xla']}"
            )
        return _PROFILERS[name]()
    if value is None or value is False:
        return PassThroughProfiler()
    if not isinstance(value, Profiler):
        raise MisconfigurationException(
            f"`Trainer(profiler={value!r})` is invalid: pass 'simple', 'advanced', 'pytorch', a `Profiler` or None."
        )
    return value


def is_active(profiler: Profiler) -> bool:
    """Whether the Trainer must time its hooks and loops through `profiler` (decided once per run)."""
    return not isinstance(profiler, PassThroughProfiler)
