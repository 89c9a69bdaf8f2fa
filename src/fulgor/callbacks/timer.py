"""Timer: tracks time spent in each stage and stops training once `duration` has elapsed (`Trainer(max_time=...)`)."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any

from fulgor.callbacks.callback import Callback
from fulgor.errors import MisconfigurationException
from fulgor.rank import rank_zero_info

if TYPE_CHECKING:
    from fulgor.module import LightningModule
    from fulgor.trainer.trainer import Trainer

_STAGES = ("train", "sanity_check", "validate", "test", "predict")  # Lightning's RunningStage values, in its order


def parse_duration(duration: str | timedelta | dict[str, int] | None) -> timedelta | None:
    """`"DD:HH:MM:SS"`, a timedelta, or a dict of timedelta keyword arguments → timedelta."""
    if duration is None or isinstance(duration, timedelta):
        return duration
    if isinstance(duration, dict):
        return timedelta(**duration)
    if isinstance(duration, str):
        match = re.fullmatch(r"(\d+):(\d\d):(\d\d):(\d\d)", duration.strip())
        if match is None:
            raise MisconfigurationException(
                f"`Timer(duration={duration!r})` is not a valid duration. "
                "Expected a string in the format DD:HH:MM:SS, a `datetime.timedelta` or a dict of timedelta arguments."
            )
        days, hours, minutes, seconds = (int(g) for g in match.groups())
        return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    raise MisconfigurationException(f"`Timer(duration={duration!r})` must be a string, a timedelta or a dict.")


class Interval(str, Enum):
    """When `Timer` checks the time: after every training batch (``step``) or epoch (``epoch``)."""

    step = "step"
    epoch = "epoch"

    @classmethod
    def _missing_(cls, value: object) -> Interval | None:
        # Case-insensitive, as Lightning's enums: Interval("STEP") is Interval.step.
        return next((m for m in cls if isinstance(value, str) and m.value == value.lower()), None)


class Timer(Callback):
    """Stop training when `duration` has elapsed, checked after every batch (`interval="step"`) or epoch."""

    def __init__(
        self,
        duration: str | timedelta | dict[str, int] | None = None,
        interval: str = "step",
        verbose: bool = True,
    ) -> None:
        super().__init__()
        if interval not in ("step", "epoch"):
            raise MisconfigurationException(
                f"Unsupported parameter value `Timer(interval={interval})`. Possible choices are: step, epoch"
            )
        self._duration = parse_duration(duration)
        self._interval = interval
        self._verbose = verbose
        self._start: dict[str, float | None] = dict.fromkeys(_STAGES)
        self._end: dict[str, float | None] = dict.fromkeys(_STAGES)
        self._offset = 0.0

    def start_time(self, stage: str = "train") -> float | None:
        return self._start[stage]

    def end_time(self, stage: str = "train") -> float | None:
        return self._end[stage]

    def time_elapsed(self, stage: str = "train") -> float:
        """Seconds spent in `stage` (training time includes what a restored checkpoint had already spent)."""
        start, end = self._start[stage], self._end[stage]
        offset = self._offset if stage == "train" else 0.0
        if start is None:
            return offset
        return offset + (end if end is not None else time.monotonic()) - start

    def time_remaining(self, stage: str = "train") -> float | None:
        if self._duration is None:
            return None
        return self._duration.total_seconds() - self.time_elapsed(stage)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start["train"] = time.monotonic()
        self._end["train"] = None

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end["train"] = time.monotonic()

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start["validate"] = time.monotonic()

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end["validate"] = time.monotonic()

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start["test"] = time.monotonic()

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end["test"] = time.monotonic()

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # After a checkpoint's state was loaded: a resumed run whose time is already spent stops before training.
        if self._duration is not None:
            self._check_time_remaining(trainer)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if self._interval == "step" and self._duration is not None:
            self._check_time_remaining(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._interval == "epoch" and self._duration is not None:
            self._check_time_remaining(trainer)

    def state_dict(self) -> dict[str, Any]:
        return {"time_elapsed": {stage: self.time_elapsed(stage) for stage in _STAGES}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._offset = state_dict.get("time_elapsed", {}).get("train", 0.0)

    def _check_time_remaining(self, trainer: Trainer) -> None:
        assert self._duration is not None
        elapsed = self.time_elapsed("train")
        should_stop = trainer.strategy.broadcast(elapsed >= self._duration.total_seconds())
        trainer.should_stop = trainer.should_stop or should_stop
        if should_stop and self._verbose:
            rank_zero_info(
                f"Time limit reached. Elapsed time is {timedelta(seconds=int(elapsed))}. Signaling Trainer to stop."
            )
