"""`TQDMProgressBar`: Lightning's default bar (without rich), drawn with tqdm and throttled so that drawing costs next
to nothing per batch and logs that are not terminals stay readable."""

from __future__ import annotations

import math
import os
import sys
import time
from typing import TYPE_CHECKING, Any, ClassVar, TextIO

from tqdm import tqdm as _tqdm

from fulgor.callbacks.callback import STEP_OUTPUT
from fulgor.callbacks.progress import ProgressBar

if TYPE_CHECKING:
    from fulgor.module import LightningModule
    from fulgor.trainer.trainer import Trainer

__all__ = ["TQDMProgressBar", "Tqdm"]

_PAD_SIZE = 5


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


def _finite_or_none(total: int | float | None) -> int | float | None:
    """tqdm wants ``None`` for an unknown (infinite) total."""
    if total is None or math.isinf(total) or math.isnan(total):
        return None
    return total


class TQDMProgressBar(ProgressBar):
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
        super().__init__()
        if not isinstance(refresh_rate, int) or refresh_rate < 0:
            raise ValueError(f"`refresh_rate` must be an int >= 0 (0 disables the bar), got {refresh_rate!r}.")
        self._refresh_rate = _resolve_refresh_rate(refresh_rate)
        self._process_position = process_position
        self._leave = leave
        self._train_progress_bar: Tqdm | None = None
        self._val_progress_bar: Tqdm | None = None
        self._test_progress_bar: Tqdm | None = None
        self._predict_progress_bar: Tqdm | None = None
        self._out: TextIO = sys.stdout
        self._live = True
        self._last_draw: dict[int, float] = {}

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
    def refresh_rate(self) -> int:
        """Redraw every this many batches (0: disabled)."""
        return self._refresh_rate

    @property
    def process_position(self) -> int:
        """Line offset of the bars."""
        return self._process_position

    @property
    def is_enabled(self) -> bool:
        """Enabled and ``refresh_rate > 0``."""
        return self._enabled and self._refresh_rate > 0

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

    # ---- drawing ----

    def _due(self, bar: Tqdm, n: int) -> bool:
        """Whether to redraw ``bar`` at batch ``n``: the refresh rate allows it and enough time has passed."""
        last = n == bar.total
        if n % self._refresh_rate and not last:
            return False
        now = time.monotonic()
        if self._live:
            if not last and now - self._last_draw.get(id(bar), 0.0) < self.min_redraw_interval_s:
                return False
        elif now - self._last_draw.get(id(bar), now) < self.log_interval_s:
            return False
        self._last_draw[id(bar)] = now
        return True

    def _draw(self, bar: Tqdm) -> None:
        """Redraw in place on a terminal; otherwise write the bar as one log line."""
        if bar.disable:
            return
        if self._live:
            bar.refresh()
        else:
            self._out.write(f"{bar}\n")
            self._out.flush()

    @staticmethod
    def _restart(bar: Tqdm, total: int | float | None, desc: str) -> None:
        bar.total = _finite_or_none(total)
        bar.initial = 0
        bar.set_description(desc, refresh=False)
        bar.reset()

    def _start_timer(self, bar: Tqdm) -> None:
        # Log lines for non-terminals are timed from the start of the bar's epoch/dataloader.
        self._last_draw[id(bar)] = time.monotonic()

    def _advance(self, bar: Tqdm | None, n: int) -> bool:
        """Set the bar to ``n`` done batches; True when it was also due a redraw."""
        if bar is None or bar.disable:
            return False
        bar.n = n
        return self._due(bar, n)

    # ---- sanity check and training ----

    def on_sanity_check_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.val_progress_bar = self.init_sanity_tqdm()

    def on_sanity_check_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.val_progress_bar.close()

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.train_progress_bar = self.init_train_tqdm()

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._leave:
            self.train_progress_bar = self.init_train_tqdm()
        bar = self.train_progress_bar
        self._restart(bar, self.total_train_batches, f"Epoch {trainer.current_epoch}")
        self._start_timer(bar)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: STEP_OUTPUT, batch: Any, batch_idx: int
    ) -> None:
        bar = self._train_progress_bar
        if self._advance(bar, batch_idx + 1):
            assert bar is not None
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
            self._draw(bar)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        bar = self.train_progress_bar
        if not bar.disable:
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
            self._draw(bar)
        if self._leave:
            bar.close()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.train_progress_bar.close()

    # ---- validation ----

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self.val_progress_bar = self.init_validation_tqdm()

    def on_validation_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if not self.has_dataloader_changed(dataloader_idx):
            return
        bar = self.val_progress_bar
        self._finish_eval_dataloader(bar, trainer)
        desc = self.sanity_check_description if trainer.sanity_checking else self.validation_description
        self._restart(bar, self.total_val_batches_current_dataloader, f"{desc} DataLoader {dataloader_idx}")
        self._start_timer(bar)

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: STEP_OUTPUT,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        bar = self._val_progress_bar
        if self._advance(bar, batch_idx + 1):
            assert bar is not None
            self._draw(bar)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        bar = self.val_progress_bar
        self._finish_eval_dataloader(bar, trainer)
        bar.close()
        self.reset_dataloader_idx_tracker()
        train_bar = self._train_progress_bar
        if (
            train_bar is not None
            and not train_bar.disable
            and trainer.state.fn == "fit"
            and not trainer.sanity_checking
        ):
            train_bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
            if self._live:
                train_bar.refresh()

    def _finish_eval_dataloader(self, bar: Tqdm, trainer: Trainer) -> None:
        """For logs: one line per finished dataloader of validate/test/predict (not during fit or sanity check)."""
        if self._live or bar.disable or bar.n == 0:
            return
        if trainer.state.fn == "fit" or trainer.sanity_checking:
            return
        self._draw(bar)

    # ---- test and predict ----

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.test_progress_bar = self.init_test_tqdm()

    def on_test_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if not self.has_dataloader_changed(dataloader_idx):
            return
        bar = self.test_progress_bar
        self._finish_eval_dataloader(bar, trainer)
        self._restart(
            bar, self.total_test_batches_current_dataloader, f"{self.test_description} DataLoader {dataloader_idx}"
        )
        self._start_timer(bar)

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: STEP_OUTPUT,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        bar = self._test_progress_bar
        if self._advance(bar, batch_idx + 1):
            assert bar is not None
            self._draw(bar)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        bar = self.test_progress_bar
        self._finish_eval_dataloader(bar, trainer)
        bar.close()
        self.reset_dataloader_idx_tracker()

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.predict_progress_bar = self.init_predict_tqdm()

    def on_predict_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if not self.has_dataloader_changed(dataloader_idx):
            return
        bar = self.predict_progress_bar
        self._finish_eval_dataloader(bar, trainer)
        desc = f"{self.predict_description} DataLoader {dataloader_idx}"
        self._restart(bar, self.total_predict_batches_current_dataloader, desc)
        self._start_timer(bar)

    def on_predict_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        bar = self._predict_progress_bar
        if self._advance(bar, batch_idx + 1):
            assert bar is not None
            self._draw(bar)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        bar = self.predict_progress_bar
        self._finish_eval_dataloader(bar, trainer)
        bar.close()
        self.reset_dataloader_idx_tracker()

    def print(self, *args: Any, sep: str = " ", **kwargs: Any) -> None:
        """Print a message above the active bar without breaking it."""
        text = sep.join(map(str, args))
        bars = (self._train_progress_bar, self._val_progress_bar, self._test_progress_bar, self._predict_progress_bar)
        active = next((bar for bar in bars if bar is not None and not bar.disable), None)
        if active is None or not self._live:
            end = kwargs.get("end", "\n")
            self._out.write(text + end)
            return
        active.write(text, file=self._out, **kwargs)


def _resolve_refresh_rate(refresh_rate: int) -> int:
    """Colab redraws slowly (20 batches instead of 1); ``TQDM_MINITERS`` sets a floor, as in Lightning."""
    if os.getenv("COLAB_GPU") and refresh_rate == 1:
        return 20
    if "TQDM_MINITERS" in os.environ:
        return max(int(os.environ["TQDM_MINITERS"]), refresh_rate)
    return refresh_rate
