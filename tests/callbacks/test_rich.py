"""RichProgressBar and RichModelSummary rendered on a recording rich Console, driven through the Trainer's hook
order by a fake trainer; the summary table is compared with Lightning's RichModelSummary."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

pytest.importorskip("rich")
from rich.console import Console

from fulgor.callbacks.rich_model_summary import RichModelSummary
from fulgor.callbacks.rich_progress import RichProgressBar, RichProgressBarTheme, _rich
from fulgor.summary import summarize

TIME = r"\d:\d\d:\d\d • \d:\d\d:\d\d [\d.]+it/s"


def _console_kwargs() -> dict[str, Any]:
    return {"file": io.StringIO(), "record": True, "width": 140, "force_terminal": False, "color_system": None}


def _trainer(**overrides: Any) -> types.SimpleNamespace:
    trainer = types.SimpleNamespace(
        loggers=[types.SimpleNamespace(version=0)],
        max_epochs=2,
        max_steps=-1,
        global_step=0,
        current_epoch=0,
        num_training_batches=3,
        num_val_batches=[2],
        num_sanity_val_batches=[1],
        num_test_batches=[2, 1],
        num_predict_batches=[2],
        sanity_checking=False,
        state=types.SimpleNamespace(fn="fit"),
        is_global_zero=True,
        progress_bar_metrics={},
        check_val_every_n_epoch=1,
        enable_validation=True,
    )
    trainer.__dict__.update(overrides)
    return trainer


def _validate(bar: RichProgressBar, trainer: Any, batches: int) -> None:
    bar.on_validation_start(trainer, None)
    for i in range(batches):
        bar.on_validation_batch_start(trainer, None, None, i)
        bar.on_validation_batch_end(trainer, None, None, None, i)
    bar.on_validation_epoch_end(trainer, None)
    bar.on_validation_end(trainer, None)


def _fit(bar: RichProgressBar, trainer: Any, epochs: int = 2) -> None:
    bar.setup(trainer, None, "fit")  # type: ignore[arg-type]
    trainer.sanity_checking = True
    bar.on_sanity_check_start(trainer, None)
    _validate(bar, trainer, 1)
    bar.on_sanity_check_end(trainer, None)
    trainer.sanity_checking = False
    bar.on_train_start(trainer, None)
    for epoch in range(epochs):
        trainer.current_epoch = epoch
        bar.on_train_epoch_start(trainer, None)
        for i in range(3):
            trainer.progress_bar_metrics = {"loss": 1.0 / (epoch * 3 + i + 1), "acc": torch.tensor(0.5)}
            bar.on_train_batch_end(trainer, None, None, None, i)
        _validate(bar, trainer, 2)
        bar.on_train_epoch_end(trainer, None)
    bar.teardown(trainer, None, "fit")


def _rstrip(text: str) -> str:
    return "".join(line.rstrip() + "\n" for line in text.splitlines())


def _text(bar: RichProgressBar) -> str:
    assert bar.console is not None
    return bar.console.export_text()


def test_fit_shows_one_epoch_bar_with_metrics() -> None:
    bar = RichProgressBar(console_kwargs=_console_kwargs())
    _fit(bar, _trainer())
    # Not a terminal: the final state is printed once; validation and sanity bars were hidden during fit.
    assert re.fullmatch(rf"Epoch 1/1  ━+ 3/3 {TIME} v_num: 0\.000 loss: 0\.167 acc: 0\.500\n", _text(bar))


def test_leave_keeps_every_epoch_and_theme_formats_metrics() -> None:
    theme = RichProgressBarTheme(metrics_format=".2f", metrics_text_delimiter=" | ")
    bar = RichProgressBar(leave=True, theme=theme, console_kwargs=_console_kwargs())
    _fit(bar, _trainer(loggers=[]))
    lines = _text(bar).splitlines()
    assert len(lines) == 2
    assert re.fullmatch(rf"Epoch 0/1  ━+ 3/3 {TIME} loss: 0\.33 \| acc: 0\.50", lines[0])
    assert re.fullmatch(rf"Epoch 1/1  ━+ 3/3 {TIME} loss: 0\.17 \| acc: 0\.50", lines[1])


def test_unsized_loader_and_no_max_epochs() -> None:
    bar = RichProgressBar(console_kwargs=_console_kwargs())
    _fit(bar, _trainer(num_training_batches=float("inf"), max_epochs=None), epochs=1)
    assert re.fullmatch(r"Epoch 0    ━+ 3/-- \d:\d\d:\d\d • -:--:-- [\d.]+it/s v_num: 0\.000 loss: .*\n", _text(bar))


def test_validate_and_test_bars_stay_without_metrics() -> None:
    trainer = _trainer(state=types.SimpleNamespace(fn="validate"), progress_bar_metrics={"loss": 1.0})
    bar = RichProgressBar(console_kwargs=_console_kwargs())
    bar.setup(trainer, None, "validate")  # type: ignore[arg-type]
    _validate(bar, trainer, 2)
    bar.teardown(trainer, None, "validate")
    assert re.fullmatch(rf"Validation ━+ 2/2 {TIME}\s*\n", _text(bar))

    trainer.state.fn = "test"
    bar = RichProgressBar(console_kwargs=_console_kwargs())
    bar.setup(trainer, None, "test")  # type: ignore[arg-type]
    bar.on_test_start(trainer, None)
    for dataloader_idx, batches in enumerate([2, 1]):
        for i in range(batches):
            bar.on_test_batch_start(trainer, None, None, i, dataloader_idx)
            bar.on_test_batch_end(trainer, None, None, None, i, dataloader_idx)
    bar.on_test_end(trainer, None)
    bar.teardown(trainer, None, "test")
    # The first dataloader's bar is hidden when the second starts, as in Lightning.
    assert re.fullmatch(rf"Testing ━+ 1/1 {TIME}\s*\n", _text(bar))


def test_disabled_bar_draws_nothing() -> None:
    bar = RichProgressBar(refresh_rate=0, console_kwargs=_console_kwargs())
    _fit(bar, _trainer())
    assert bar.progress is None
    assert bar.console is None
    assert bar.is_disabled
    other_rank = RichProgressBar(console_kwargs=_console_kwargs())
    _fit(other_rank, _trainer(is_global_zero=False))
    assert other_rank.progress is None
    with pytest.raises(ValueError, match="`refresh_rate` must be an int >= 0"):
        RichProgressBar(refresh_rate=-1)


def test_redraws_are_throttled(monkeypatch: pytest.MonkeyPatch) -> None:
    # A terminal console: there the bar redraws live (elsewhere it only prints the final state).
    bar = RichProgressBar(refresh_rate=1, console_kwargs={**_console_kwargs(), "force_terminal": True})
    trainer = _trainer(num_training_batches=50)
    bar.setup(trainer, None, "fit")  # type: ignore[arg-type]
    bar.on_train_start(trainer, None)
    bar.on_train_epoch_start(trainer, None)
    assert bar.progress is not None
    refreshes: list[int] = []
    monkeypatch.setattr(bar.progress, "refresh", lambda: refreshes.append(1))
    updates: list[Any] = []
    original_update = bar.progress.update
    monkeypatch.setattr(bar.progress, "update", lambda *a, **k: updates.append(k) or original_update(*a, **k))
    reads: list[int] = []
    original = bar.get_metrics
    monkeypatch.setattr(bar, "get_metrics", lambda *a: reads.append(1) or original(*a))
    for i in range(50):
        bar.on_train_batch_end(trainer, None, None, None, i)
    # One redraw per second at most, plus the last batch; rich sees the count and the metrics only when drawing.
    assert 1 <= len(refreshes) <= 4
    assert 1 <= len(updates) <= 4
    assert updates[-1]["completed"] == 50
    assert len(reads) <= 2
    assert bar.progress.tasks[0].completed == 50
    bar.teardown(trainer, None, "fit")


def test_a_due_batch_redraws_once_with_its_count_and_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    bar = RichProgressBar(refresh_rate=1, console_kwargs={**_console_kwargs(), "force_terminal": True})
    trainer = _trainer(num_training_batches=5)
    bar.setup(trainer, None, "fit")  # type: ignore[arg-type]
    bar.on_train_start(trainer, None)
    bar.on_train_epoch_start(trainer, None)
    assert bar.progress is not None
    for i in range(4):
        bar.on_train_batch_end(trainer, None, None, None, i)
    refreshes: list[Any] = []
    monkeypatch.setattr(bar.progress, "refresh", lambda: refreshes.append(dict(bar._metrics)))
    trainer.progress_bar_metrics = {"loss": 0.25}
    bar.on_train_batch_end(trainer, None, None, None, 4)  # the last batch is always due
    assert refreshes == [{"v_num": 0, "loss": 0.25}]  # one redraw, already showing the new metrics
    assert bar.progress.tasks[0].completed == 5
    monkeypatch.undo()
    bar.teardown(trainer, None, "fit")


def test_not_a_terminal_builds_no_display_until_the_end(monkeypatch: pytest.MonkeyPatch) -> None:
    bar = RichProgressBar(refresh_rate=1000, console_kwargs=_console_kwargs())
    trainer = _trainer(num_training_batches=20)
    bar.setup(trainer, None, "fit")  # type: ignore[arg-type]
    bar.on_train_start(trainer, None)
    bar.on_train_epoch_start(trainer, None)
    assert bar.progress is not None
    refreshes: list[int] = []
    monkeypatch.setattr(bar.progress, "refresh", lambda: refreshes.append(1))
    for i in range(20):
        bar.on_train_batch_end(trainer, None, None, None, i)
    assert refreshes == []
    monkeypatch.undo()
    bar.teardown(trainer, None, "fit")
    # The final state is printed once, with the last count.
    assert re.fullmatch(rf"Epoch 0/1  ━+ 20/20 {TIME} v_num: 0\.000\s*\n", _text(bar))


def test_pickles_without_display() -> None:
    import pickle

    bar = RichProgressBar(console_kwargs=_console_kwargs())
    _fit(bar, _trainer(), epochs=1)
    assert bar.progress is not None
    clone = pickle.loads(pickle.dumps(bar))
    assert clone.progress is None
    assert clone.console is None
    assert clone.theme == bar.theme


def test_missing_rich_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    _rich.cache_clear()
    monkeypatch.setitem(sys.modules, "rich", None)
    try:
        with pytest.raises(ModuleNotFoundError, match="pip install rich"):
            RichProgressBar()
        with pytest.raises(ModuleNotFoundError, match="pip install rich"):
            RichModelSummary()
    finally:
        _rich.cache_clear()


def test_modules_do_not_import_rich() -> None:
    code = (
        "import sys, fulgor.callbacks.rich_progress, fulgor.callbacks.rich_model_summary;"
        " print(sorted(m for m in sys.modules if m == 'rich' or m.startswith('rich.')))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "[]"


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(64, 16), nn.ReLU())
        self.decoder = nn.Linear(16, 64)
        self.decoder.requires_grad_(False)
        self.example_input_array = torch.zeros(2, 64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


SUMMARY = """\
┏━━━┳━━━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━━┳━━━━━━━┳━━━━━━━┳━━━━━━━━━━┳━━━━━━━━━━━┓
┃   ┃ Name    ┃ Type       ┃ Params ┃ Mode  ┃ FLOPs ┃ In sizes ┃ Out sizes ┃
┡━━━╇━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━━╇━━━━━━━╇━━━━━━━╇━━━━━━━━━━╇━━━━━━━━━━━┩
│ 0 │ encoder │ Sequential │  1.0 K │ train │ 4.1 K │  [2, 64] │   [2, 16] │
│ 1 │ decoder │ Linear     │  1.1 K │ train │ 4.1 K │  [2, 16] │   [2, 64] │
└───┴─────────┴────────────┴────────┴───────┴───────┴──────────┴───────────┘
Trainable params: 1.0 K
Non-trainable params: 1.1 K
Total params: 2.1 K
Total estimated model params size (MB): 0.009
Modules in train mode: 4
Modules in eval mode: 0
Total FLOPs: 8.2 K
"""


def test_rich_model_summary_table() -> None:
    console = Console(**_console_kwargs())
    RichModelSummary.render(summarize(_Net()), console=console)
    assert _rstrip(console.export_text()) == SUMMARY


def test_rich_model_summary_callback_prints_on_rank_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    console = Console(**_console_kwargs())
    monkeypatch.setattr(_rich(), "get_console", lambda: console)
    RichModelSummary(max_depth=0).on_fit_start(_trainer(), _Net())  # type: ignore[arg-type]
    RichModelSummary().on_fit_start(_trainer(is_global_zero=False), _Net())  # type: ignore[arg-type]
    assert console.export_text() == ""
    RichModelSummary().on_fit_start(_trainer(), _Net())  # type: ignore[arg-type]
    assert _rstrip(console.export_text()) == SUMMARY


@pytest.mark.oracle
def test_rich_model_summary_matches_lightning() -> None:
    pl = pytest.importorskip("pytorch_lightning")
    import rich
    from pytorch_lightning.callbacks import RichModelSummary as PLRichModelSummary
    from pytorch_lightning.utilities.model_summary import summarize as pl_summarize

    class PLNet(pl.LightningModule):  # the same layers as _Net, as a Lightning module
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.Sequential(nn.Linear(64, 16), nn.ReLU())
            self.decoder = nn.Linear(16, 64)
            self.decoder.requires_grad_(False)
            self.example_input_array = torch.zeros(2, 64)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.decoder(self.encoder(x))

    s = pl_summarize(PLNet(), max_depth=1)
    rich.reconfigure(**_console_kwargs())
    try:
        PLRichModelSummary.summarize(
            s._get_summary_data(), s.total_parameters, s.trainable_parameters, s.model_size,
            s.total_training_modes, s.total_flops,
        )  # fmt: skip
        expected = rich.get_console().export_text()
    finally:
        rich.reconfigure()
    console = Console(**_console_kwargs())
    RichModelSummary.render(summarize(_Net()), console=console)
    assert console.export_text() == expected
    assert _rstrip(expected) == SUMMARY
