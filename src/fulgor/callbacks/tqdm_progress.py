"""`TQDMProgressBar`: Lightning's default bar (without rich), drawn with tqdm and throttled so that drawing costs next
to nothing per batch and logs that are not terminals stay readable."""

from __future__ import annotations

import math
import os
import sys
from typing import TYPE_CHECKING, Any, ClassVar, TextIO

from tqdm import tqdm as _tqdm

from fulgor.callbacks.progress_stages import Stage, StagedProgressBar

if TYPE_CHECKING:
    from fulgor.module import LightningModule
    from fulgor.trainer.trainer import Trainer

__all__ = ["TQDMProgressBar", "Tqdm", "convert_inf"]

_PAD_SIZE = 5
# Each stage's bar: its public property (which users override), and the attribute behind it.
_BARS: dict[Stage, str] = {
    "sanity": "val_progress_bar",
    "train": "train_progress_bar",
    "validation": "val_progress_bar",
    "test": "test_progress_bar",
    "predict": "predict_progress_bar",
}
_SLOTS: dict[Stage, str] = {stage: f"_{name}" for stage, name in _BARS.items()}


class Tqdm(_tqdm):  # type: ignore[misc]
    """tqdm whose postfix numbers are zero-padded to 5 characters (``2.75`` -> ``2.750``) so the line keeps still."""

    @staticmethod
    def format_num(n: int | float | str) -> str:
        """tqdm's compact number format, then floats and strings padded with zeros to ``_PAD_SIZE``."""
        text = n if isinstance(n, str) else str(_tqdm.format_num(n))
        if not isinstance(n, (float, str)) or "e" in text:
            return text
        if "." not in text and len(text) < _PAD_SIZE:
            try:
                float(text)
            except ValueError:
                return text
            text += "."
        return text + "0" * (_PAD_SIZE - len(text))


class _Discard:
    """A stream that swallows tqdm's redraws; lines for logs are written explicitly instead."""

    def __init__(self, encoding: str | None) -> None:
        self.encoding = encoding

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def _is_interactive(stream: TextIO) -> bool:
    """A terminal, or a Jupyter cell (which renders carriage returns), gets a live bar."""
    try:
        if stream.isatty():
            return True
    except (AttributeError, ValueError):
        return False
    return "ipykernel" in sys.modules


def convert_inf(x: int | float | None) -> int | float | None:
    """``None`` for an infinite or NaN count (how tqdm is told the total is unknown), else ``x``."""
    if x is None or math.isinf(x) or math.isnan(x):
        return None
    return x


_finite_or_none = convert_inf


class TQDMProgressBar(StagedProgressBar):
    """Lightning's default progress bar, drawn with tqdm on stdout.

    Bars: "Sanity Checking DataLoader i", "Epoch N" (training batches only; postfix ``v_num`` and the
    ``prog_bar=True`` metrics), "Validation DataLoader i" nested under it, "Testing DataLoader i",
    "Predicting DataLoader i".

    Drawing is throttled: besides ``refresh_rate``, a bar redraws at most every ``min_redraw_interval_s`` seconds
    (always on its last batch), and metrics are read only when it redraws. When stdout is not a terminal (CI, SLURM
    logs), nothing is redrawn in place: one line is written per finished training epoch (per finished dataloader in
    ``validate``/``test``/``predict``), plus one every ``log_interval_s`` seconds during long epochs.

    Args:
        refresh_rate: redraw every this many batches; 0 disables the bar.
        process_position: offset the bars by this many lines (when other bars share the terminal).
        leave: keep each finished epoch's bar on screen instead of reusing one bar.
    """

    BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}{postfix}]"
    min_redraw_interval_s: ClassVar[float] = 0.1
    log_interval_s: ClassVar[float] = 30.0

    def __init__(self, refresh_rate: int = 1, process_position: int = 0, leave: bool = False) -> None:
        super().__init__(refresh_rate, leave, rate_meaning="0 disables the bar")
        self._refresh_rate = _resolve_refresh_rate(refresh_rate)
        self._process_position = process_position
        self._train_progress_bar: Tqdm | None = None
        self._val_progress_bar: Tqdm | None = None
        self._test_progress_bar: Tqdm | None = None
        self._predict_progress_bar: Tqdm | None = None
        self._out: TextIO = sys.stdout
        self._live = True

    def __getstate__(self) -> dict[str, Any]:
        # Bars and streams cannot be pickled (spawned processes); they are recreated when a stage starts.
        return {k: None if isinstance(v, (_tqdm, _Discard)) or k == "_out" else v for k, v in vars(self).items()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._out = sys.stdout

    @property
    def train_progress_bar(self) -> Tqdm:
        """The training bar (created at train start)."""
        return self._bar("_train_progress_bar")

    @train_progress_bar.setter
    def train_progress_bar(self, bar: Tqdm) -> None:
        self._train_progress_bar = bar

    @property
    def val_progress_bar(self) -> Tqdm:
        """The validation / sanity-check bar."""
        return self._bar("_val_progress_bar")

    @val_progress_bar.setter
    def val_progress_bar(self, bar: Tqdm) -> None:
        self._val_progress_bar = bar

    @property
    def test_progress_bar(self) -> Tqdm:
        """The test bar."""
        return self._bar("_test_progress_bar")

    @test_progress_bar.setter
    def test_progress_bar(self, bar: Tqdm) -> None:
        self._test_progress_bar = bar

    @property
    def predict_progress_bar(self) -> Tqdm:
        """The predict bar."""
        return self._bar("_predict_progress_bar")

    @predict_progress_bar.setter
    def predict_progress_bar(self, bar: Tqdm) -> None:
        self._predict_progress_bar = bar

    def _bar(self, attr: str) -> Tqdm:
        bar: Tqdm | None = getattr(self, attr)
        if bar is None:
            raise TypeError(f"The `{type(self).__name__}.{attr}` reference has not been set yet.")
        return bar

    @property
    def process_position(self) -> int:
        """Line offset of the bars."""
        return self._process_position

    # ---- bar construction (override these to customise the tqdm bars, as in Lightning) ----

    def _new_bar(self, desc: str, position: int, leave: bool, **kwargs: Any) -> Tqdm:
        self._out = sys.stdout
        self._live = _is_interactive(self._out)
        stream: Any = self._out if self._live else _Discard(getattr(self._out, "encoding", None))
        return Tqdm(
            desc=desc,
            position=position,
            disable=self.is_disabled,
            leave=leave,
            dynamic_ncols=self._live,
            file=stream,
            bar_format=self.BAR_FORMAT,
            **kwargs,
        )

    def init_sanity_tqdm(self) -> Tqdm:
        """The bar for the sanity check."""
        return self._new_bar(self.sanity_check_description, 2 * self.process_position, leave=False)

    def init_train_tqdm(self) -> Tqdm:
        """The bar for training epochs."""
        return self._new_bar(self.train_description, 2 * self.process_position, leave=True, smoothing=0)

    def init_predict_tqdm(self) -> Tqdm:
        """The bar for prediction."""
        return self._new_bar(self.predict_description, 2 * self.process_position, leave=True, smoothing=0)

    def init_validation_tqdm(self) -> Tqdm:
        """The bar for validation: nested under the training bar during fit, on its own in ``validate``."""
        has_main_bar = self.trainer.state.fn != "validate"
        return self._new_bar(
            self.validation_description, 2 * self.process_position + has_main_bar, leave=not has_main_bar
        )

    def init_test_tqdm(self) -> Tqdm:
        """The bar for testing."""
        return self._new_bar(self.test_description, 2 * self.process_position, leave=True)

    # ---- the display calls of StagedProgressBar, on the tqdm bar of each stage ----

    def _open(self, stage: Stage) -> None:
        # Through the public setters and `init_*_tqdm`, which users override.
        if stage == "train":
            self.train_progress_bar = self.init_train_tqdm()
        elif stage == "test":
            self.test_progress_bar = self.init_test_tqdm()
        elif stage == "predict":
            self.predict_progress_bar = self.init_predict_tqdm()
        else:
            self.val_progress_bar = self.init_sanity_tqdm() if stage == "sanity" else self.init_validation_tqdm()

    def _start_epoch(self, total: int | float) -> None:
        if self._leave:
            self.train_progress_bar = self.init_train_tqdm()
        self._restart(self.train_progress_bar, total, f"Epoch {self.trainer.current_epoch}")

    def _start_dataloader(self, stage: Stage, total: int | float, dataloader_idx: int) -> None:
        bar = self._stage_bar(stage)
        self._log_finished(bar)
        self._restart(bar, total, f"{self._description(stage)} DataLoader {dataloader_idx}")

    def _advance(self, stage: Stage, n: int) -> bool:
        bar: Tqdm | None = getattr(self, _SLOTS[stage])
        if bar is None or bar.disable:
            return False
        last = n == bar.total
        if n % self._refresh_rate and not last:
            return False
        bar.n = n  # the count moves every `refresh_rate` batches (and on the last), as Lightning's bar's
        if self._live:
            return self._redraw_due(id(bar), last, self.min_redraw_interval_s)
        # A log gets a line per interval; the line of a finished epoch or dataloader is written when it ends.
        return self._redraw_due(id(bar), False, self.log_interval_s)

    def _update_metrics(self, trainer: Trainer, pl_module: LightningModule) -> None:
        bar = self._train_progress_bar
        if bar is not None and not bar.disable:
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)

    def _draw(self, stage: Stage) -> None:
        """Redraw in place on a terminal; otherwise write the bar as one log line."""
        bar: Tqdm | None = getattr(self, _SLOTS[stage])
        if bar is None or bar.disable:
            return
        if self._live:
            bar.refresh()
        else:
            self._write_line(bar)

    def _redraw_live(self, stage: Stage) -> None:
        bar: Tqdm | None = getattr(self, _SLOTS[stage])
        if self._live and bar is not None and not bar.disable:
            bar.refresh()

    def _close(self, stage: Stage) -> None:
        bar = self._stage_bar(stage)
        self._log_finished(bar)
        bar.close()

    # ---- helpers ----

    def _stage_bar(self, stage: Stage) -> Tqdm:
        """The bar of ``stage``, through its public property (an error when it was never created)."""
        bar: Tqdm = getattr(self, _BARS[stage])
        return bar

    def _restart(self, bar: Tqdm, total: int | float | None, desc: str) -> None:
        bar.reset()  # then the total on its own, as Lightning (a `Tqdm` subclass's `reset`/`total` see the same calls)
        bar.total = _finite_or_none(total)
        bar.initial = 0
        bar.set_description(desc, refresh=False)
        self._restart_clock(id(bar))  # log lines are timed from the start of the bar's epoch/dataloader

    def _write_line(self, bar: Tqdm) -> None:
        self._out.write(f"{bar}\n")
        self._out.flush()

    def _log_finished(self, bar: Tqdm) -> None:
        """For logs: one line per finished dataloader of validate/test/predict (fit writes a line per epoch)."""
        if self._live or bar.disable or bar.n == 0:
            return
        trainer = self.trainer
        if trainer.state.fn == "fit" or trainer.sanity_checking:
            return
        self._write_line(bar)

    def print(self, *args: Any, sep: str = " ", **kwargs: Any) -> None:
        """Print a message above the active bar without breaking it."""
        text = sep.join(map(str, args))
        bars = (self._train_progress_bar, self._val_progress_bar, self._test_progress_bar, self._predict_progress_bar)
        active = next((bar for bar in bars if bar is not None and not bar.disable), None)
        if active is None:
            print(text, **kwargs)  # noqa: T201
            return
        active.write(text, **kwargs)  # tqdm clears the live bars, writes the line, and redraws them


def _resolve_refresh_rate(refresh_rate: int) -> int:
    """Colab redraws slowly (20 batches instead of 1); ``TQDM_MINITERS`` sets a floor, as in Lightning."""
    if os.getenv("COLAB_GPU") and refresh_rate == 1:
        return 20
    if "TQDM_MINITERS" in os.environ:
        return max(int(os.environ["TQDM_MINITERS"]), refresh_rate)
    return refresh_rate
