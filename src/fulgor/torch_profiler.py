"""`PyTorchProfiler` (`Trainer(profiler="pytorch")`): torch.profiler over the run, each action a `[pl][profile]<action>`
range, a wait/warmup/active schedule stepped by the step actions, chrome traces and the key-averages table."""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.autograd.profiler import record_function
from torch.autograd.profiler_util import EventList

from fulgor.errors import MisconfigurationException
from fulgor.module_records import RegisterRecordFunction
from fulgor.profiler_base import Profiler
from fulgor.rank import warn_once

__all__ = ["PyTorchProfiler"]

_RECORD_PREFIX = "[pl][profile]"
# The default schedule: skip one step, warm up one, record three (Lightning's); a stage with fewer steps than that
# would record nothing, so it records everything instead (with a warning).
_WAIT, _WARMUP, _ACTIVE = 1, 1, 3
_TOO_FEW_STEPS = (
    "The PyTorch Profiler default schedule will be overridden as there is not enough steps to properly record traces."
)
# Arguments of `EventList.table` the profiler sets itself (not accepted in `table_kwargs`).
_OWN_TABLE_ARGS = frozenset({"sort_by", "row_limit"})


def _record_everything(step: int) -> torch.profiler.ProfilerAction:
    return torch.profiler.ProfilerAction.RECORD


class PyTorchProfiler(Profiler):
    """Records the run with `torch.profiler`: each profiled action becomes a ``[pl][profile]<action>`` range (and,
    with `record_module_names`, each submodule's forward a ``[pl][module]<type>: <name>`` range). The profiler steps
    its schedule after every ``*_step`` action; traces go to ``<dirpath>/<stage>-<filename>-<step action>.<ns>
    .pt.trace.json`` (chrome://tracing or Perfetto) and `summary` is torch's key-averages table.

    Args:
        dirpath: See `Profiler` (the trainer's log dir when None).
        filename: See `Profiler`.
        group_by_input_shapes: Group the table's rows by operator input shapes (needs ``record_shapes=True``).
        emit_nvtx: Emit NVTX ranges for nvprof instead of recording (no table, no trace).
        export_to_chrome: Write the chrome traces.
        row_limit: Rows of the table (``-1``: all).
        sort_by_key: Column the table is sorted by, one of `AVAILABLE_SORT_KEYS` (default ``cpu_time_total``, or
            ``cuda_time_total`` with ``use_cuda=True``).
        record_module_names: Label each submodule's forward in the trace.
        table_kwargs: More arguments of torch's `EventList.table` (e.g. ``max_name_column_width``).
        **profiler_kwargs: Passed to `torch.profiler.profile` (``schedule``, ``on_trace_ready``, ``record_shapes``,
            ``profile_memory``, ``with_stack``, ...; others are ignored). ``schedule=None`` records every step.
            ``export_to_flame_graph=True`` also writes the stacks (``<stage>-<filename>.stack``, weighted by
            ``metric``, default ``self_cpu_time_total``) for flamegraph.pl.

    Raises:
        MisconfigurationException: If `sort_by_key` is unknown, or `schedule` is not a callable returning a
            `torch.profiler.ProfilerAction`.
        KeyError: If `table_kwargs` has a key `EventList.table` does not take, or one the profiler sets itself.
    """

    STEP_FUNCTIONS = frozenset({"training_step", "validation_step", "test_step", "predict_step"})
    AVAILABLE_SORT_KEYS = frozenset(
        {
            "cpu_time",
            "cuda_time",
            "cpu_time_total",
            "cuda_time_total",
            "cpu_memory_usage",
            "cuda_memory_usage",
            "self_cpu_memory_usage",
            "self_cuda_memory_usage",
            "count",
        }
    )

    def __init__(
        self,
        dirpath: str | Path | None = None,
        filename: str | None = None,
        group_by_input_shapes: bool = False,
        emit_nvtx: bool = False,
        export_to_chrome: bool = True,
        row_limit: int = 20,
        sort_by_key: str | None = None,
        record_module_names: bool = True,
        table_kwargs: dict[str, Any] | None = None,
        **profiler_kwargs: Any,
    ) -> None:
        super().__init__(dirpath=dirpath, filename=filename)
        # Shapes are only recorded with `record_shapes=True`; grouping by them needs both.
        self._group_by_input_shapes = group_by_input_shapes and bool(profiler_kwargs.get("record_shapes", False))
        self._emit_nvtx = emit_nvtx
        self._export_to_chrome = export_to_chrome
        self._row_limit = row_limit
        self._sort_by_key = sort_by_key or f"{'cuda' if profiler_kwargs.get('use_cuda') else 'cpu'}_time_total"
        self._record_module_names = record_module_names
        self._table_kwargs = _checked_table_kwargs(table_kwargs or {})
        if self._sort_by_key not in self.AVAILABLE_SORT_KEYS:
            raise MisconfigurationException(
                f"Found sort_by_key: {self._sort_by_key}. Should be within {set(self.AVAILABLE_SORT_KEYS)}. "
            )
        self._default_schedule = "schedule" not in profiler_kwargs
        self._schedule = _checked_schedule(profiler_kwargs.pop("schedule", None), self._default_schedule)
        self._has_on_trace_ready = "on_trace_ready" in profiler_kwargs
        # Stacks for a flame graph (`export_to_flame_graph=True`, weighted by `metric`) need torch's `with_stack`.
        self._export_to_flame_graph = bool(profiler_kwargs.get("export_to_flame_graph", False))
        self._metric = profiler_kwargs.get("metric", "self_cpu_time_total")
        profiler_kwargs.setdefault("with_stack", self._export_to_flame_graph)
        self._profiler_kwargs = profiler_kwargs
        self.profiler: Any = None
        self.function_events: EventList | None = None  # torch's recorded events, once the recording has stopped
        self._parent_profiler: Any = None
        self._register: RegisterRecordFunction | None = None
        self._recording_map: dict[str, record_function] = {}
        self._trace_action: str | None = None  # the last step action: names the chrome trace files

    def start(self, action_name: str) -> None:
        """Start torch.profiler on the first action, then open the ``[pl][profile]<action_name>`` range."""
        if self.profiler is None:
            self._start_profiler()
        if action_name not in self._recording_map:
            recording = record_function(_RECORD_PREFIX + action_name)
            recording.__enter__()  # type: ignore[no-untyped-call]
            self._recording_map[action_name] = recording

    def stop(self, action_name: str) -> None:
        """Close the range of `action_name`; after a step action, advance the profiler's schedule."""
        recording = self._recording_map.pop(action_name, None)
        if recording is not None:
            recording.__exit__(None, None, None)
        if self.profiler is None or action_name.rsplit(".", 1)[-1] not in self.STEP_FUNCTIONS:
            return
        self._trace_action = action_name
        if self._schedule is None or self._emit_nvtx:
            return
        self._schedule.kind = action_name.rsplit(".", 1)[-1]
        if self._default_schedule and self._steps_of(action_name) < _WAIT + _WARMUP + _ACTIVE:
            warn_once(_TOO_FEW_STEPS)
            self._schedule = None
            self.profiler.schedule = _record_everything
        self.profiler.step()

    def summary(self) -> str:
        """Stop recording (writing the last chrome trace) and return torch's key-averages table."""
        if not self._profiler_kwargs.get("enabled", True) or self._emit_nvtx:
            return ""
        self._stop_profiler()
        if not self.function_events:
            return ""
        averages = self.function_events.key_averages(  # type: ignore[no-untyped-call]
            group_by_input_shapes=self._group_by_input_shapes
        )
        table = averages.table(sort_by=self._sort_by_key, row_limit=self._row_limit, **self._table_kwargs)
        return self._stats_to_str({"records": table})

    def teardown(self, stage: str | None) -> None:
        """Stop a recording left running (a run that failed before `describe`) and close the report file."""
        if hasattr(self, "_recording_map"):  # not when __init__ failed part-way
            self._stop_profiler()
        super().teardown(stage=stage)

    def _start_profiler(self) -> None:
        if self._emit_nvtx:
            self._parent_profiler = torch.autograd.profiler.emit_nvtx()  # type: ignore[no-untyped-call]
            self._parent_profiler.__enter__()
            self.profiler = torch.autograd.profiler.profile(**self._profiler_kwargs)
        else:
            if self._schedule is not None:
                self._schedule.reset()
            self.profiler = torch.profiler.profile(**self._torch_kwargs())
        self.profiler.__enter__()
        if self._record_module_names and self._lightning_module is not None:
            self._register = RegisterRecordFunction(self._lightning_module)
            self._register.__enter__()

    def _torch_kwargs(self) -> dict[str, Any]:
        # Only what this torch's profiler takes (the options of other torch versions are left out, as Lightning does).
        accepted = inspect.signature(torch.profiler.profile.__init__).parameters
        kwargs = {k: v for k, v in self._profiler_kwargs.items() if k in accepted}
        kwargs["schedule"] = self._schedule
        if "activities" not in kwargs:
            activities = [torch.profiler.ProfilerActivity.CPU]
            if kwargs.get("use_cuda", torch.cuda.is_available()):
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            kwargs["activities"] = activities
        kwargs.pop("use_cuda", None)  # expressed by the activities (torch deprecates the flag)
        if self._export_to_chrome and not self._has_on_trace_ready:
            kwargs["on_trace_ready"] = self._export_trace
        return kwargs

    def _export_trace(self, profiler: Any) -> None:
        """The chrome trace of a finished recording window, named after the step action that ended it."""
        if self._trace_action is None or not self.dirpath:
            return  # outside a Trainer run (no step action): the table alone
        os.makedirs(self.dirpath, exist_ok=True)
        name = f"{self._prepare_filename(action_name=self._trace_action, extension='')}.{time.time_ns()}"
        profiler.export_chrome_trace(os.path.join(self.dirpath, f"{name}.pt.trace.json"))

    def _stop_profiler(self) -> None:
        """Close the open ranges and the profiler, keeping its events in `function_events`."""
        for recording in self._recording_map.values():
            recording.__exit__(None, None, None)
        self._recording_map = {}
        if self.profiler is not None:
            profiler, self.profiler = self.profiler, None
            profiler.__exit__(None, None, None)
            self.function_events = _events_of(profiler)
            self._export_stacks(profiler)
        if self._parent_profiler is not None:
            self._parent_profiler.__exit__(None, None, None)
            self._parent_profiler = None
        if self._register is not None:
            self._register.__exit__(None, None, None)
            self._register = None

    def _export_stacks(self, profiler: Any) -> None:
        """With `export_to_flame_graph`: the recorded stacks, for flamegraph.pl (``<stage>-<filename>.stack``)."""
        if not self._export_to_flame_graph or not self.dirpath or not hasattr(profiler, "export_stacks"):
            return
        os.makedirs(self.dirpath, exist_ok=True)
        profiler.export_stacks(os.path.join(self.dirpath, self._prepare_filename(extension=".stack")), self._metric)

    def _steps_of(self, action_name: str) -> float:
        """How many batches the running stage has for the step `action_name` (infinite when unknown)."""
        try:
            trainer = self._lightning_module.trainer
        except (AttributeError, RuntimeError):  # no module, or one not attached to a Trainer
            return float("inf")
        kind = action_name.rsplit(".", 1)[-1]
        if kind == "training_step":
            counts: Any = trainer.num_training_batches
        elif kind == "validation_step":
            # The validation loop's batches, in the sanity check too (whose few steps do not decide), as Lightning's.
            counts = trainer.num_val_batches or trainer.num_sanity_val_batches
        elif kind == "test_step":
            counts = trainer.num_test_batches
        else:
            counts = trainer.num_predict_batches
        return float(sum(counts) if isinstance(counts, (list, tuple)) else counts)


def _events_of(profiler: Any) -> EventList | None:
    """The profiler's events (None when its schedule never reached a recording step)."""
    try:
        events: EventList | None = profiler.events()
    except (AssertionError, RuntimeError):
        return None
    return events


def _checked_table_kwargs(table_kwargs: dict[str, Any]) -> dict[str, Any]:
    valid = set(inspect.signature(EventList.table).parameters) - {"self"} - _OWN_TABLE_ARGS
    for key in table_kwargs:
        if key in _OWN_TABLE_ARGS:
            raise KeyError(
                f"Found invalid table_kwargs key: {key}. This is already a positional argument of the Profiler."
            )
        if key not in valid:
            raise KeyError(f"Found invalid table_kwargs key: {key}. Should be within {valid}.")
    return table_kwargs


class _StepSchedule:
    """The schedule torch steps, counted per kind of step (training, validation, test, predict) as Lightning's: each
    kind runs `schedule` on its own step count and records nothing more once its window has been saved, so a run
    writes one trace per kind.

    Args:
        schedule: a torch.profiler schedule (step number -> `ProfilerAction`).
    """

    def __init__(self, schedule: Callable[[int], torch.profiler.ProfilerAction]) -> None:
        self.schedule = schedule
        self.reset()

    def reset(self) -> None:
        """Start counting again (a new recording: the next run of the Trainer)."""
        self.kind: str | None = None  # the step action that asks for the next step (set by the profiler)
        self.counts: dict[str, int] = {}
        self.saved: set[str] = set()
        self.previous: torch.profiler.ProfilerAction | None = None

    def __call__(self, step: int) -> torch.profiler.ProfilerAction:
        actions = torch.profiler.ProfilerAction
        kind = self.kind
        if kind is None or kind in self.saved:
            return actions.NONE
        count = self.counts[kind] = self.counts.get(kind, 0) + 1
        action = self.schedule(count)
        if action == actions.WARMUP and self.previous == actions.RECORD:
            # A validation that starts inside training's recording window: torch cannot go back to warming up.
            action = actions.RECORD
        if action == actions.RECORD_AND_SAVE:
            self.saved.add(kind)
        self.previous = action
        return action


def _checked_schedule(schedule: Any, default: bool) -> _StepSchedule | None:
    """The schedule torch runs: Lightning's default, or the user's (checked), or None (record every step)."""
    if default:
        return _StepSchedule(torch.profiler.schedule(wait=_WAIT, warmup=_WARMUP, active=_ACTIVE))
    if schedule is None:
        return None
    if not callable(schedule):
        raise MisconfigurationException(f"Schedule should be a callable. Found: {schedule}")
    action = schedule(0)
    if not isinstance(action, torch.profiler.ProfilerAction):
        raise MisconfigurationException(f"Schedule should return a `torch.profiler.ProfilerAction`. Found: {action}")
    return _StepSchedule(schedule)
