"""Profilers for `Trainer(profiler=...)`: the simple (wall-clock table) and advanced (cProfile per action) profilers
and the `profiler=` values; Lightning's `profilers` names (the base and the PyTorch profiler are sibling modules)."""

from __future__ import annotations

import io
import math
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from fulgor.errors import MisconfigurationException
from fulgor.profiler_base import PassThroughProfiler, Profiler, is_active
from fulgor.torch_profiler import PyTorchProfiler

__all__ = [
    "AdvancedProfiler",
    "PassThroughProfiler",
    "Profiler",
    "PyTorchProfiler",
    "SimpleProfiler",
    "is_active",
    "select_profiler",
]


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

    def __getstate__(self) -> dict[str, Any]:
        # cProfile objects cannot be pickled: a copy (a deep-copied module that references the Trainer) starts empty.
        state = dict(self.__dict__)
        state.update(profiled_actions={}, _output_file=None, _write_stream=None)
        return state


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
