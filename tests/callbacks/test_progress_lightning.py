"""Progress bars against the real Lightning 2.6.6: the same runs draw the same tqdm bars (descriptions, totals, the
counts shown at each refresh, positions, `leave`), the same rich tasks, and route `LightningModule.print` alike."""

from __future__ import annotations

import contextlib
import io
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import pytest

import fulgor
import fulgor.callbacks.tqdm_progress as fulgor_tqdm

pytestmark = pytest.mark.oracle
pl = pytest.importorskip("pytorch_lightning")

import pytorch_lightning.callbacks.progress.tqdm_progress as pl_tqdm  # noqa: E402
from pytorch_lightning.demos import boring_classes as pl_boring  # noqa: E402

from fulgor.demos import boring_classes as fulgor_boring  # noqa: E402

SIDES: dict[str, tuple[ModuleType, ModuleType, ModuleType]] = {
    "lightning": (pl, pl_tqdm, pl_boring),
    "fulgor": (fulgor, fulgor_tqdm, fulgor_boring),
}
_RUNS = ("fit", "validate", "test", "predict")


def _recording_tqdm(base: type, bars: list[Any]) -> type:
    class Recording(base):  # type: ignore[misc]
        """Records what a user's Tqdm subclass sees: construction, totals, counts, descriptions, close."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.events: list[tuple[Any, ...]] = []
            super().__init__(*args, **kwargs)
            bars.append(self)
            keys = ("desc", "leave", "position", "disable")
            self.events = [("init", *(kwargs.get(k) for k in keys))]

        def __setattr__(self, name: str, value: Any) -> None:
            if name in ("n", "total") and "events" in self.__dict__:
                self.events.append((name, value))
            super().__setattr__(name, value)

        def set_description(self, desc: str | None = None, refresh: bool | None = True) -> None:
            self.events.append(("desc", desc))
            super().set_description(desc, refresh)

        def close(self) -> None:
            # Not when the bar is garbage-collected (tqdm's `__del__` closes it): that depends on gc timing.
            if ("close",) not in self.events and not self.__dict__.get("collected"):
                self.events.append(("close",))
            super().close()

        def __del__(self) -> None:
            self.__dict__["collected"] = True
            super().__del__()

    return Recording


def _tqdm_events(side: str, fn: str, tmp_path: Path, refresh_rate: int, leave: bool) -> list[list[tuple[Any, ...]]]:
    lib, module, boring = SIDES[side]
    bars: list[Any] = []

    class Model(boring.BoringModel):  # type: ignore[name-defined,misc]
        def validation_step(self, batch: Any, batch_idx: int) -> Any:
            self.log("v", 2.25, prog_bar=True)
            return super().validation_step(batch, batch_idx)

    trainer = lib.Trainer(
        default_root_dir=tmp_path / side, max_epochs=2, limit_train_batches=5, limit_val_batches=3,
        limit_test_batches=4, limit_predict_batches=4, logger=False, enable_checkpointing=False,
        enable_model_summary=False, callbacks=[lib.callbacks.TQDMProgressBar(refresh_rate=refresh_rate, leave=leave)],
    )  # fmt: skip
    out = io.StringIO()
    with (
        mock.patch.object(module, "Tqdm", _recording_tqdm(module.Tqdm, bars)),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(out),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        getattr(trainer, fn)(Model())
    # Lightning also builds a disabled stand-in training bar during the sanity check (it shows nothing).
    return [bar.events for bar in bars if bar.events[0][-1] is not True]


@pytest.mark.parametrize("fn", _RUNS)
@pytest.mark.parametrize(("refresh_rate", "leave"), [(1, False), (2, False), (3, True)])
def test_tqdm_bars_match_lightning(fn: str, refresh_rate: int, leave: bool, tmp_path: Path) -> None:
    events = _tqdm_events("fulgor", fn, tmp_path, refresh_rate, leave)
    assert any(event[0] == "n" and event[1] > 0 for bar in events for event in bar)
    assert events == _tqdm_events("lightning", fn, tmp_path, refresh_rate, leave)


def _printed(side: str, tmp_path: Path, bar: str) -> tuple[list[Any], str]:
    lib, _, boring = SIDES[side]

    class Printing(boring.BoringModel):  # type: ignore[name-defined,misc]
        def training_step(self, *args: Any) -> Any:
            self.print("train", end="")
            return super().training_step(*args)

        def validation_step(self, *args: Any) -> Any:
            self.print("val", file=sys.stderr)
            return super().validation_step(*args)

        def test_step(self, *args: Any) -> Any:
            self.print("test", 1, sep="-")
            return super().test_step(*args)

    callback = lib.callbacks.TQDMProgressBar() if bar == "tqdm" else lib.callbacks.RichProgressBar()
    trainer = lib.Trainer(
        default_root_dir=tmp_path / side, num_sanity_val_steps=0, limit_train_batches=1, limit_val_batches=1,
        limit_test_batches=1, max_steps=1, logger=False, enable_checkpointing=False, enable_model_summary=False,
        callbacks=[callback],
    )  # fmt: skip
    out = io.StringIO()
    with mock.patch("tqdm.tqdm.write") as write, contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(Printing())
        trainer.test(Printing(), verbose=False)
    lines = out.getvalue().splitlines(keepends=True)
    printed = "".join(line.split(" 0:00")[0] for line in lines if "train" in line or "test" in line)  # no timings
    return write.call_args_list, printed


@pytest.mark.parametrize("bar", ["tqdm", "rich"])
def test_module_print_goes_through_the_bar_as_in_lightning(bar: str, tmp_path: Path) -> None:
    pytest.importorskip("rich")
    calls, printed = _printed("fulgor", tmp_path, bar)
    if bar == "tqdm":
        assert calls == [mock.call("train", end=""), mock.call("val", file=sys.stderr), mock.call("test-1")]
    assert (calls, printed) == _printed("lightning", tmp_path, bar)


def _rich_tasks(side: str, fn: str, tmp_path: Path) -> tuple[list[tuple[Any, ...]], list[str]]:
    lib, _, boring = SIDES[side]
    console = io.StringIO()
    bar = lib.callbacks.RichProgressBar(console_kwargs={"file": console, "width": 120, "force_terminal": False})
    trainer = lib.Trainer(
        default_root_dir=tmp_path / side, max_epochs=2, limit_train_batches=5, limit_val_batches=3,
        limit_test_batches=4, limit_predict_batches=4, logger=False, enable_checkpointing=False,
        enable_model_summary=False, callbacks=[bar],
    )  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        getattr(trainer, fn)(boring.BoringModel())
    tasks = [(t.description, t.total, t.completed, t.visible) for t in bar.progress.tasks]
    # The final state printed where the console is not a terminal, without the timings.
    lines = [line.split(" 0:00")[0] for line in console.getvalue().splitlines() if "━" in line]
    return tasks, lines


@pytest.mark.parametrize("fn", _RUNS)
def test_rich_tasks_match_lightning(fn: str, tmp_path: Path) -> None:
    pytest.importorskip("rich")
    tasks, lines = _rich_tasks("fulgor", fn, tmp_path)
    assert tasks
    assert lines
    assert (tasks, lines) == _rich_tasks("lightning", fn, tmp_path)


def test_rich_speed_column_shows_a_rate(tmp_path: Path) -> None:
    """rich needs two updates to estimate a speed; the bar hands counts over per redraw, so it shows the mean."""
    pytest.importorskip("rich")
    console = io.StringIO()
    bar = fulgor.callbacks.RichProgressBar(console_kwargs={"file": console, "width": 120, "force_terminal": False})
    trainer = fulgor.Trainer(
        default_root_dir=tmp_path, max_epochs=1, limit_train_batches=3, limit_val_batches=0, logger=False,
        enable_checkpointing=False, enable_model_summary=False, callbacks=[bar],
    )  # fmt: skip
    trainer.fit(fulgor_boring.BoringModel())
    (line,) = [line for line in console.getvalue().splitlines() if "Epoch" in line]
    speed = float(line.split()[-1].removesuffix("it/s"))
    assert speed > 0
