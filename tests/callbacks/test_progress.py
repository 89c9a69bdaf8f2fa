"""TQDMProgressBar: descriptions, totals and postfix as Lightning shows them, throttled drawing, and readable logs when
stdout is not a terminal."""

from __future__ import annotations

import io
import math
import sys
from types import SimpleNamespace
from typing import Any

import pytest

from fulgor.callbacks import progress_stages
from fulgor.callbacks.progress import ProgressBar
from fulgor.callbacks.tqdm_progress import Tqdm, TQDMProgressBar


class FakeLog(io.StringIO):
    """A UTF-8 log file."""

    encoding = "utf-8"


class FakeTTY(FakeLog):
    """A UTF-8 terminal."""

    def isatty(self) -> bool:
        return True


class FakeTrainer(SimpleNamespace):
    """The trainer attributes a progress bar reads; counts reads of `progress_bar_metrics`."""

    def __init__(self, **kwargs: Any) -> None:
        defaults: dict[str, Any] = {
            "loggers": [SimpleNamespace(version=0)],
            "is_global_zero": True,
            "current_epoch": 0,
            "global_step": 0,
            "max_epochs": 2,
            "max_steps": -1,
            "num_training_batches": 4,
            "num_val_batches": [2],
            "num_sanity_val_batches": [2],
            "num_test_batches": [3],
            "num_predict_batches": [3],
            "sanity_checking": False,
            "state": SimpleNamespace(fn="fit"),
            "metrics": {},
            "metric_reads": 0,
        }
        super().__init__(**{**defaults, **kwargs})

    @property
    def progress_bar_metrics(self) -> dict[str, float]:
        self.metric_reads += 1
        return dict(self.metrics)


def run_fit(bar: Any, trainer: FakeTrainer, epochs: int = 2, snapshots: list[Any] | None = None) -> None:
    """Call the bar's hooks in Lightning 2.6.6's fit order (sanity check, then epochs with validation at the end)."""
    module = SimpleNamespace()

    def snap() -> None:
        if snapshots is not None:
            snapshots.append(snapshot(bar))

    def validate(num: list[int | float]) -> None:
        bar.on_validation_start(trainer, module)
        snap()
        for dl_idx, n in enumerate(num):
            for i in range(int(n)):
                bar.on_validation_batch_start(trainer, module, None, i, dl_idx)
                snap()
                bar.on_validation_batch_end(trainer, module, None, None, i, dl_idx)
                snap()
        bar.on_validation_end(trainer, module)
        snap()

    bar.setup(trainer, module, "fit")
    trainer.sanity_checking = True
    bar.on_sanity_check_start(trainer, module)
    validate(trainer.num_sanity_val_batches)
    bar.on_sanity_check_end(trainer, module)
    trainer.sanity_checking = False
    bar.on_train_start(trainer, module)
    for epoch in range(epochs):
        trainer.current_epoch = epoch
        bar.on_train_epoch_start(trainer, module)
        snap()
        for i in range(trainer.num_training_batches):
            trainer.metrics = {"tl": round(1.0 / (epoch * 10 + i + 1), 4)}
            trainer.global_step += 1
            bar.on_train_batch_end(trainer, module, None, None, i)
            snap()
        trainer.metrics["vl"] = 0.5 + epoch
        validate(trainer.num_val_batches)
        bar.on_train_epoch_end(trainer, module)
        snap()
    bar.on_train_end(trainer, module)
    trainer.current_epoch = epochs


def run_eval(bar: Any, trainer: FakeTrainer, stage: str, num: list[int], snapshots: list[Any] | None = None) -> None:
    """Call the hooks of `trainer.validate/test/predict` with the given batches per dataloader."""
    module = SimpleNamespace()
    hook = {"validate": "validation", "test": "test", "predict": "predict"}[stage]
    trainer.state = SimpleNamespace(fn=stage)
    bar.setup(trainer, module, stage)
    getattr(bar, f"on_{hook}_start")(trainer, module)
    for dl_idx, n in enumerate(num):
        for i in range(n):
            getattr(bar, f"on_{hook}_batch_start")(trainer, module, None, i, dl_idx)
            getattr(bar, f"on_{hook}_batch_end")(trainer, module, None, None, i, dl_idx)
            if snapshots is not None:
                snapshots.append(snapshot(bar))
    getattr(bar, f"on_{hook}_end")(trainer, module)


def snapshot(bar: Any) -> dict[str, Any]:
    """What a user sees of each live bar (everything except timing)."""
    seen = {}
    for name in ("_train_progress_bar", "_val_progress_bar", "_test_progress_bar", "_predict_progress_bar"):
        b = getattr(bar, name)
        if b is not None and not b.disable:
            seen[name] = (b.desc, b.total, b.n, b.postfix, b.pos, b.leave)
    return seen


def use_stdout(monkeypatch: pytest.MonkeyPatch, terminal: bool) -> io.StringIO:
    """Replace stdout for this test (inside the test body: pytest re-installs its capture after fixture setup)."""
    stream = FakeTTY() if terminal else FakeLog()
    monkeypatch.setattr(sys, "stdout", stream)
    return stream


def unthrottled(**kwargs: Any) -> TQDMProgressBar:
    bar = TQDMProgressBar(**kwargs)
    bar.min_redraw_interval_s = 0.0  # type: ignore[misc]
    return bar


# ---- what the bars show ----


def test_fit_descriptions_totals_and_postfix(monkeypatch: pytest.MonkeyPatch) -> None:
    tty = use_stdout(monkeypatch, terminal=True)
    bar = unthrottled()
    snaps: list[Any] = []
    run_fit(bar, FakeTrainer(), snapshots=snaps)
    # sanity check: one bar at position 0, not left on screen
    assert snaps[1]["_val_progress_bar"] == ("Sanity Checking DataLoader 0: ", 2, 0, None, 0, False)
    descs = [s["_train_progress_bar"][0] for s in snaps if "_train_progress_bar" in s]
    assert descs[0] == "Epoch 0: "
    assert descs[-1] == "Epoch 1: "
    epoch0_last_batch = next(s for s in snaps if s.get("_train_progress_bar", ("",) * 3)[:3] == ("Epoch 0: ", 4, 4))
    assert epoch0_last_batch["_train_progress_bar"][3] == "v_num=0, tl=0.250"
    # validation during fit: nested one line below the main bar and cleared afterwards
    val = next(
        s["_val_progress_bar"]
        for s in snaps
        if s.get("_val_progress_bar", ("",))[0].startswith("Validation DataLoader")
    )
    assert val == ("Validation DataLoader 0: ", 2, 0, None, -1, False)
    # after the epoch's validation the main bar shows the validation metric too
    assert snaps[-1]["_train_progress_bar"] == ("Epoch 1: ", 4, 4, "v_num=0, tl=0.0714, vl=1.500", 0, True)
    assert "Epoch 1: 100%|" in tty.getvalue()
    assert "Sanity Checking DataLoader 0: 100%|" in tty.getvalue()


@pytest.mark.parametrize(
    ("stage", "desc"),
    [("validate", "Validation DataLoader"), ("test", "Testing DataLoader"), ("predict", "Predicting DataLoader")],
)
def test_eval_descriptions(stage: str, desc: str, monkeypatch: pytest.MonkeyPatch) -> None:
    tty = use_stdout(monkeypatch, terminal=True)
    bar = unthrottled()
    snaps: list[Any] = []
    trainer = FakeTrainer(num_val_batches=[3, 2], num_test_batches=[3, 2], num_predict_batches=[3, 2])
    run_eval(bar, trainer, stage, [3, 2], snaps)
    attr = {"validate": "_val_progress_bar", "test": "_test_progress_bar", "predict": "_predict_progress_bar"}[stage]
    assert [s[attr][:3] for s in snaps] == [
        (f"{desc} 0: ", 3, 1),
        (f"{desc} 0: ", 3, 2),
        (f"{desc} 0: ", 3, 3),
        (f"{desc} 1: ", 2, 1),
        (f"{desc} 1: ", 2, 2),
    ]
    assert snaps[0][attr][4:] == (0, True)  # standalone: position 0, left on screen
    assert f"{desc} 1: 100%|" in tty.getvalue()


def test_infinite_total_shows_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    tty = use_stdout(monkeypatch, terminal=True)
    bar = unthrottled()
    trainer = FakeTrainer(num_training_batches=math.inf)
    bar.setup(trainer, SimpleNamespace(), "fit")  # type: ignore[arg-type]
    bar.on_train_start(trainer, SimpleNamespace())  # type: ignore[arg-type]
    bar.on_train_epoch_start(trainer, SimpleNamespace())  # type: ignore[arg-type]
    bar.on_train_batch_end(trainer, SimpleNamespace(), None, None, 6)  # type: ignore[arg-type]
    assert bar.train_progress_bar.total is None
    assert "Epoch 0: |" in tty.getvalue().split("\r")[-1]
    assert " 7/? [" in tty.getvalue().split("\r")[-1]


@pytest.mark.parametrize(
    ("loggers", "expected"),
    [
        ([], {}),
        ([SimpleNamespace(version=3)], {"v_num": 3}),
        ([SimpleNamespace(version="version_12345")], {"v_num": "2345"}),
        ([SimpleNamespace(version="")], {}),
        ([SimpleNamespace(version=None)], {}),
        ([SimpleNamespace(version=1), SimpleNamespace(version="abc"), SimpleNamespace(version=1)], {"v_num": "_abc"}),
    ],
)
def test_v_num(loggers: list[Any], expected: dict[str, Any]) -> None:
    trainer = FakeTrainer(loggers=loggers, metrics={"loss": 0.5})
    assert TQDMProgressBar().get_metrics(trainer, SimpleNamespace()) == {**expected, "loss": 0.5}  # type: ignore[arg-type]


def test_logged_v_num_overrides_with_warning() -> None:
    trainer = FakeTrainer(metrics={"v_num": 7.0})
    with pytest.warns(UserWarning, match=r"already tracks a metric with the name\(s\) 'v_num'"):
        assert TQDMProgressBar().get_metrics(trainer, SimpleNamespace()) == {"v_num": 7.0}  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "text"),
    [(2.75, "2.750"), (0.694, "0.694"), (1.0, "1.000"), (123.456, "123.0"), (1234.5, "1234.5"), (1e-5, "1e-5"),
     (0.0, "0.000"), (7, "7"), ("ab", "ab")],
)  # fmt: skip
def test_postfix_number_format(value: Any, text: str) -> None:
    assert Tqdm.format_num(value) == text


def test_totals() -> None:
    bar = TQDMProgressBar()
    trainer = FakeTrainer(max_epochs=-1, max_steps=5, global_step=3, num_training_batches=10, num_val_batches=[2, 5])
    trainer.num_sanity_val_batches = [2, 4]
    bar.setup(trainer, SimpleNamespace(), "fit")  # type: ignore[arg-type]
    assert bar.total_train_batches == 2
    assert bar.total_val_batches == 7
    trainer.check_val_every_n_epoch = 2
    assert bar.total_val_batches == 0
    bar.has_dataloader_changed(1)
    assert bar.total_val_batches_current_dataloader == 5
    trainer.sanity_checking = True
    assert bar.total_val_batches_current_dataloader == 4


def test_isinstance_and_marker() -> None:
    assert isinstance(TQDMProgressBar(), ProgressBar)
    assert TQDMProgressBar.is_progress_bar is True


def test_progress_bar_base_leaves_the_hooks_to_subclasses() -> None:
    # A user's bar built on `ProgressBar` (as in Lightning's docs) gets no hook bodies it did not write: a hook it does
    # not override stays `Callback`'s, which the Trainer never dispatches. The shared bodies live one level down.
    from fulgor.callbacks.callback import Callback
    from fulgor.callbacks.progress_stages import StagedProgressBar

    for hook in ("on_train_batch_end", "on_validation_batch_end", "on_train_epoch_start", "on_test_end"):
        assert getattr(ProgressBar, hook) is getattr(Callback, hook)
    assert issubclass(TQDMProgressBar, StagedProgressBar)


def test_overridden_init_and_setter_are_used(monkeypatch: pytest.MonkeyPatch) -> None:
    # Lightning users customise the bars through `init_*_tqdm` and the bar property setters.
    use_stdout(monkeypatch, terminal=True)
    made: list[str] = []
    set_bars: list[str] = []

    class Custom(TQDMProgressBar):
        def init_train_tqdm(self) -> Tqdm:
            made.append("train")
            return super().init_train_tqdm()

        def init_validation_tqdm(self) -> Tqdm:
            made.append("validation")
            return super().init_validation_tqdm()

        @property
        def train_progress_bar(self) -> Tqdm:
            return super().train_progress_bar

        @train_progress_bar.setter
        def train_progress_bar(self, bar: Tqdm) -> None:
            set_bars.append(bar.desc)
            self._train_progress_bar = bar

    run_fit(Custom(leave=True), FakeTrainer(), epochs=2)
    assert made == ["train", "train", "validation", "train", "validation"]
    assert set_bars == ["Training", "Training", "Training"]


def test_unset_trainer_error() -> None:
    with pytest.raises(TypeError, match=r"`TQDMProgressBar\._trainer` reference has not been set yet"):
        _ = TQDMProgressBar().trainer


# ---- disabling and performance ----


def test_refresh_rate_zero_disables(monkeypatch: pytest.MonkeyPatch) -> None:
    tty = use_stdout(monkeypatch, terminal=True)
    bar = TQDMProgressBar(refresh_rate=0)
    trainer = FakeTrainer()
    run_fit(bar, trainer)
    assert bar.is_disabled
    assert tty.getvalue() == ""
    assert trainer.metric_reads == 0


def test_other_ranks_are_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    tty = use_stdout(monkeypatch, terminal=True)
    trainer = FakeTrainer(is_global_zero=False)
    run_fit(TQDMProgressBar(), trainer)
    assert tty.getvalue() == ""
    assert trainer.metric_reads == 0


def test_refresh_rate_limits_draws_and_metric_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    use_stdout(monkeypatch, terminal=True)
    trainer = FakeTrainer(num_training_batches=10, num_val_batches=[0], num_sanity_val_batches=[0])
    run_fit(unthrottled(refresh_rate=4), trainer, epochs=1)
    # batches 4, 8 and the last one (10), then the epoch end and the end of validation
    assert trainer.metric_reads == 5


def test_time_throttle_limits_redraws(monkeypatch: pytest.MonkeyPatch) -> None:
    use_stdout(monkeypatch, terminal=True)
    clock = iter(i * 0.01 for i in range(10**6))  # every call to the clock advances 10 ms
    monkeypatch.setattr(progress_stages.time, "monotonic", lambda: next(clock))
    refreshes = 0
    original = Tqdm.refresh

    def counting_refresh(self: Tqdm, *args: Any, **kwargs: Any) -> Any:
        nonlocal refreshes
        refreshes += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Tqdm, "refresh", counting_refresh)
    trainer = FakeTrainer(num_training_batches=1000, num_val_batches=[0], num_sanity_val_batches=[0])
    run_fit(TQDMProgressBar(), trainer, epochs=1)
    # 1000 batches in ~10 s of fake time: at most one redraw per 0.1 s, plus the last batch
    assert 90 <= trainer.metric_reads <= 105
    assert refreshes <= 115  # + creation, reset and the epoch-end/validation-end redraws


# ---- logs that are not terminals ----


def test_log_file_gets_one_line_per_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    log_file = use_stdout(monkeypatch, terminal=False)
    trainer = FakeTrainer(num_training_batches=50, num_val_batches=[20], max_epochs=3)
    run_fit(TQDMProgressBar(), trainer, epochs=3)
    lines = log_file.getvalue().splitlines()
    assert "\r" not in log_file.getvalue()
    assert len(lines) == 3
    for epoch, line in enumerate(lines):
        assert line.startswith(f"Epoch {epoch}: 100%|██████████| 50/50 [")
        assert line.endswith(f"v_num=0, tl={Tqdm.format_num(round(1.0 / (epoch * 10 + 50), 4))}, vl={epoch + 0.5:.3f}]")
    assert trainer.metric_reads <= 2 * 3  # epoch end and validation end only


def test_log_file_eval_one_line_per_dataloader(monkeypatch: pytest.MonkeyPatch) -> None:
    log_file = use_stdout(monkeypatch, terminal=False)
    trainer = FakeTrainer(num_test_batches=[30, 7])
    run_eval(TQDMProgressBar(), trainer, "test", [30, 7])
    lines = log_file.getvalue().splitlines()
    assert [line.split(" [")[0] for line in lines] == [
        "Testing DataLoader 0: 100%|██████████| 30/30",
        "Testing DataLoader 1: 100%|██████████| 7/7",
    ]


def test_log_file_long_epochs_write_periodic_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    log_file = use_stdout(monkeypatch, terminal=False)
    clock = iter(i * 1.0 for i in range(10**6))  # one second per clock read
    monkeypatch.setattr(progress_stages.time, "monotonic", lambda: next(clock))
    trainer = FakeTrainer(num_training_batches=100, num_val_batches=[0], num_sanity_val_batches=[0])
    run_fit(TQDMProgressBar(), trainer, epochs=1)
    lines = log_file.getvalue().splitlines()
    # ~100 s of fake time, a line every 30 s, then the epoch's line
    assert [line.split("|")[0] for line in lines] == [
        "Epoch 0:  30%",
        "Epoch 0:  60%",
        "Epoch 0:  90%",
        "Epoch 0: 100%",
    ]


def test_print_goes_to_stdout(monkeypatch: pytest.MonkeyPatch) -> None:
    log_file = use_stdout(monkeypatch, terminal=False)
    bar = TQDMProgressBar()
    run_eval(bar, FakeTrainer(), "validate", [1])
    bar.print("hello", 3)
    assert log_file.getvalue().splitlines()[-1] == "hello 3"


# ---- oracle: the same hook sequence drives Lightning's bar and ours ----


@pytest.mark.oracle
def test_bars_match_lightning_during_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    use_stdout(monkeypatch, terminal=True)
    pytest.importorskip("pytorch_lightning")
    from pytorch_lightning.callbacks import TQDMProgressBar as PLBar

    ours: list[Any] = []
    theirs: list[Any] = []
    run_fit(unthrottled(), FakeTrainer(num_val_batches=[2, 3]), snapshots=ours)
    run_fit(PLBar(), FakeTrainer(num_val_batches=[2, 3]), snapshots=theirs)
    assert ours == theirs


@pytest.mark.oracle
@pytest.mark.parametrize("stage", ["validate", "test", "predict"])
def test_bars_match_lightning_eval(stage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    use_stdout(monkeypatch, terminal=True)
    pytest.importorskip("pytorch_lightning")
    from pytorch_lightning.callbacks import TQDMProgressBar as PLBar

    ours: list[Any] = []
    theirs: list[Any] = []
    kwargs = {"num_val_batches": [3, 2], "num_test_batches": [3, 2], "num_predict_batches": [3, 2]}
    run_eval(unthrottled(), FakeTrainer(**kwargs), stage, [3, 2], ours)
    run_eval(PLBar(), FakeTrainer(**kwargs), stage, [3, 2], theirs)
    assert ours == theirs


@pytest.mark.oracle
@pytest.mark.parametrize("value", [2.75, 0.694, 1.0, 123.456, 1234.5, 1e-5, 0.0, 7, "ab", 12345678.9, -0.5])
def test_number_format_matches_lightning(value: Any) -> None:
    pytest.importorskip("pytorch_lightning")
    from pytorch_lightning.callbacks.progress.tqdm_progress import Tqdm as PLTqdm

    assert Tqdm.format_num(value) == PLTqdm.format_num(value)


@pytest.mark.oracle
@pytest.mark.parametrize(
    "loggers",
    [[], [SimpleNamespace(version=3)], [SimpleNamespace(version="version_12345")], [SimpleNamespace(version="")],
     [SimpleNamespace(version=1), SimpleNamespace(version="abc")]],
)  # fmt: skip
def test_metrics_match_lightning(loggers: list[Any]) -> None:
    pytest.importorskip("pytorch_lightning")
    from pytorch_lightning.callbacks import TQDMProgressBar as PLBar

    trainer = FakeTrainer(loggers=loggers, metrics={"a": 1.0})
    module = SimpleNamespace()
    assert TQDMProgressBar().get_metrics(trainer, module) == PLBar().get_metrics(trainer, module)  # type: ignore[arg-type]


def test_pickles_without_bars(monkeypatch: pytest.MonkeyPatch) -> None:
    import pickle

    use_stdout(monkeypatch, terminal=False)
    bar = TQDMProgressBar(refresh_rate=3)
    run_eval(bar, FakeTrainer(), "test", [1])
    bar._trainer = None  # the fake trainer holds a property and is not what this test is about
    clone = pickle.loads(pickle.dumps(bar))
    assert clone._test_progress_bar is None
    assert clone.refresh_rate == 3
    assert clone._out is sys.stdout
