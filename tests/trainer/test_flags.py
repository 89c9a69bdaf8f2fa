"""Trainer flags (issue #2 item 3, reference §1 and §9) with measured numbers, files and messages. Tests taking
`lib` also run against pytorch-lightning 2.6.6 (oracle), which pins the expected numbers to the real thing."""

from __future__ import annotations

import importlib.util
import logging
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader

import fulgor
from helpers.boring import XYDataset, trace_model_class
from helpers.core_only import hide_optional


def _libs() -> list[Any]:
    params: list[Any] = [pytest.param(fulgor, id="fulgor")]
    try:
        import pytorch_lightning
    except ImportError:
        return params
    return [*params, pytest.param(pytorch_lightning, id="lightning", marks=pytest.mark.oracle)]


@pytest.fixture(params=_libs())
def lib(request: pytest.FixtureRequest) -> ModuleType:
    return request.param  # type: ignore[no-any-return]


def quiet(fn: Callable[[], Any]) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn()


def counting_model(lib: ModuleType, shuffle: bool = False) -> Any:
    """§9 setup: 40 train samples / batch 4 = 10 batches, 20 val samples = 5 batches; counts what runs."""

    class Counting(trace_model_class(lib, n_samples=40)):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.train_batches = 0
            self.val_batches = 0
            self.sanity_batches = 0
            self.validations: list[tuple[int, int]] = []  # (epoch, global_step) of each in-fit validation
            self.loader_calls = {"train": 0, "val": 0}

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            self.train_batches += 1
            return super().training_step(batch, batch_idx)

        def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
            if self.trainer.sanity_checking:
                self.sanity_batches += 1
            else:
                self.val_batches += 1
            return super().validation_step(batch, batch_idx)

        def on_validation_epoch_end(self) -> None:
            if not self.trainer.sanity_checking:
                self.validations.append((self.current_epoch, self.global_step))

        def train_dataloader(self) -> Any:
            self.loader_calls["train"] += 1
            return DataLoader(XYDataset(40, seed=1), batch_size=4, shuffle=shuffle)

        def val_dataloader(self) -> Any:
            self.loader_calls["val"] += 1
            return DataLoader(XYDataset(20, seed=2), batch_size=4)

    return Counting()


def fit(lib: ModuleType, root: Path, model: Any = None, **flags: Any) -> tuple[Any, Any]:
    settings: dict[str, Any] = {
        "max_epochs": 2,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "logger": False,
        "default_root_dir": root,
    }
    settings.update(flags)
    model = model if model is not None else counting_model(lib)
    trainer = quiet(lambda: lib.Trainer(**settings))
    quiet(lambda: trainer.fit(model))
    return trainer, model


def raises(exc: str, text: str, fn: Callable[[], Any], prefix: bool = False) -> None:
    with pytest.raises(Exception) as info:
        quiet(fn)
    assert type(info.value).__name__ == exc, repr(info.value)
    assert str(info.value).startswith(text) if prefix else str(info.value) == text


# ------------------------------------------------------------------------------------------ loop length
def test_max_epochs_default_warns_and_is_1000(lib: ModuleType, tmp_path: Path) -> None:
    class StopAfterOneBatch(type(counting_model(lib))):  # type: ignore[misc]
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            self.trainer.should_stop = True
            return super().training_step(batch, batch_idx)

    trainer = lib.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    message = (
        "`max_epochs` was not set. Setting it to 1000 epochs. To train without an epoch limit, set `max_epochs=-1`."
    )
    with pytest.warns(Warning, match=re.escape(message)):
        trainer.fit(StopAfterOneBatch())
    assert trainer.max_epochs == 1000
    assert (trainer.global_step, trainer.current_epoch) == (1, 1)


def test_max_steps_mid_epoch(lib: ModuleType, tmp_path: Path) -> None:
    trainer, model = fit(lib, tmp_path, max_epochs=None, max_steps=13)
    assert (trainer.global_step, trainer.current_epoch) == (13, 2)
    assert model.train_batches == 13
    assert model.validations == [(0, 10)], "no validation where max_steps is reached mid-epoch"


@pytest.mark.parametrize("value", [-2, -5])
def test_max_steps_invalid(lib: ModuleType, value: int) -> None:
    raises(
        "MisconfigurationException",
        f"`max_steps` must be a non-negative integer or -1 (infinite steps). You passed in {value}.",
        lambda: lib.Trainer(max_steps=value),
    )


def test_min_steps(lib: ModuleType, tmp_path: Path) -> None:
    trainer, _model = fit(lib, tmp_path, max_epochs=1, min_steps=15, limit_val_batches=0)
    # max_epochs wins over min_steps: the loop stops at max_epochs.
    assert (trainer.global_step, trainer.current_epoch) == (10, 1)
    assert trainer.min_epochs == 1


def test_min_epochs_blocks_should_stop(lib: ModuleType, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    class StopAlways(type(counting_model(lib))):  # type: ignore[misc]
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            self.trainer.should_stop = True
            return super().training_step(batch, batch_idx)

    with caplog.at_level(logging.INFO):
        trainer, model = fit(lib, tmp_path, StopAlways(), min_epochs=3, max_epochs=5, limit_val_batches=2)
    assert (trainer.global_step, trainer.current_epoch) == (MIN_EPOCHS_STEPS, 3)
    assert model.validations == MIN_EPOCHS_VALIDATIONS
    assert (
        "Trainer was signaled to stop but the required `min_epochs=3` or `min_steps=None` has not been met."
        " Training will continue..."
    ) in caplog.text


def test_max_time(lib: ModuleType, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        trainer, model = fit(lib, tmp_path, max_epochs=5, max_time={"microseconds": 1}, limit_val_batches=0)
    assert model.train_batches == 1
    assert trainer.global_step == 1
    assert "Time limit reached. Elapsed time is 0:00:00. Signaling Trainer to stop." in caplog.text


# ------------------------------------------------------------------------------------------ limits / overfit
@pytest.mark.parametrize(
    ("flags", "train", "sanity", "val", "epoch_batches"),
    [
        ({"limit_train_batches": 3, "limit_val_batches": 2}, 6, 2, 4, 3),
        ({"limit_train_batches": 0.5, "limit_val_batches": 0.4}, 10, 2, 4, 5),
        ({"limit_train_batches": 1, "limit_val_batches": 1}, 2, 1, 2, 1),
        ({"limit_train_batches": 1.0, "limit_val_batches": 1.0}, 20, 2, 10, 10),
        ({"limit_val_batches": 0}, 20, 0, 0, 10),
        ({"overfit_batches": 2}, 4, 2, 4, 2),
        ({"overfit_batches": 0.3}, 6, 1, 2, 3),
        ({"num_sanity_val_steps": -1}, 20, 5, 10, 10),
        ({"num_sanity_val_steps": 0}, 20, 0, 10, 10),
    ],
)
def test_batch_counts(
    lib: ModuleType, tmp_path: Path, flags: dict[str, Any], train: int, sanity: int, val: int, epoch_batches: int
) -> None:
    trainer, model = fit(lib, tmp_path, **flags)
    assert (model.train_batches, model.sanity_batches, model.val_batches) == (train, sanity, val)
    assert trainer.num_training_batches == epoch_batches


def test_limit_val_batches_zero_has_no_val_batches(lib: ModuleType, tmp_path: Path) -> None:
    trainer, _ = fit(lib, tmp_path, limit_val_batches=0)
    assert trainer.num_val_batches == []


@pytest.mark.parametrize(
    "name",
    ["limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches", "overfit_batches"],
)
def test_limit_invalid_value(lib: ModuleType, name: str) -> None:
    raises(
        "MisconfigurationException",
        f"You have passed invalid value 1.5 for {name}, it has to be in [0.0, 1.0] or an int.",
        lambda: lib.Trainer(**{name: 1.5}),
    )


def test_limit_too_small_fraction(lib: ModuleType, tmp_path: Path) -> None:
    raises(
        "MisconfigurationException",
        "You requested to check 0.01 of the `train_dataloader` but 0.01 * 10 < 1. Please increase the"
        " `limit_train_batches` argument. Try at least `limit_train_batches=0.1`",
        lambda: fit(lib, tmp_path, limit_train_batches=0.01),
    )


def test_overfit_turns_off_shuffling(lib: ModuleType, tmp_path: Path) -> None:
    trainer = lib.Trainer(
        overfit_batches=2,
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    with pytest.warns(
        UserWarning,
        match="You requested to overfit but enabled train dataloader shuffling. We are"
        " turning off the train dataloader shuffling for you.",
    ):
        trainer.fit(counting_model(lib, shuffle=True))


# ------------------------------------------------------------------------------------------ fast_dev_run
@pytest.mark.parametrize(("value", "batches"), [(True, 1), (3, 3)])
def test_fast_dev_run(
    lib: ModuleType, tmp_path: Path, caplog: pytest.LogCaptureFixture, value: Any, batches: int
) -> None:
    with caplog.at_level(logging.INFO):
        trainer, model = fit(lib, tmp_path, fast_dev_run=value, logger=True, enable_checkpointing=True, max_epochs=5)
    assert (model.train_batches, model.sanity_batches, model.val_batches) == (batches, 0, batches)
    assert (trainer.global_step, trainer.current_epoch) == (batches, 1)
    assert list(tmp_path.iterdir()) == [], "fast_dev_run writes no files"
    assert (
        f"Running in `fast_dev_run` mode: will run the requested loop using {batches} batch(es). Logging and"
        " checkpointing is suppressed."
    ) in caplog.text
    assert quiet(lambda: trainer.test(model, verbose=False)) == [
        {"test_loss": pytest.approx(trainer.callback_metrics["test_loss"].item())}
    ]


def test_fast_dev_run_negative(lib: ModuleType) -> None:
    raises(
        "MisconfigurationException",
        "fast_dev_run=-1 is not a valid configuration. It should be >= 0.",
        lambda: lib.Trainer(fast_dev_run=-1),
    )


# ------------------------------------------------------------------------------------------ validation schedule
@pytest.mark.parametrize(
    ("flags", "validations"),
    [
        ({"val_check_interval": 0.25, "max_epochs": 1}, [(0, 2), (0, 4), (0, 6), (0, 8), (0, 10)]),
        ({"val_check_interval": 3, "max_epochs": 1}, [(0, 3), (0, 6), (0, 9)]),
        ({"val_check_interval": 7, "check_val_every_n_epoch": None}, [(0, 7), (1, 14)]),
        ({"check_val_every_n_epoch": 2, "max_epochs": 4}, [(1, 20), (3, 40)]),
    ],
)
def test_validation_schedule(
    lib: ModuleType, tmp_path: Path, flags: dict[str, Any], validations: list[tuple[int, int]]
) -> None:
    _, model = fit(lib, tmp_path, limit_val_batches=1, **flags)
    assert model.validations == validations


def test_val_check_interval_too_large(lib: ModuleType, tmp_path: Path) -> None:
    raises(
        "ValueError",
        " `val_check_interval` (20) must be less than or equal to the number of the training batches (10). If you"
        " want to disable validation set `limit_val_batches` to 0.0 instead. If you want to validate based on the"
        " total training batches, set `check_val_every_n_epoch=None`.",
        lambda: fit(lib, tmp_path, val_check_interval=20),
    )


# ------------------------------------------------------------------------------------------ logging cadence
def test_log_every_n_steps(lib: ModuleType, tmp_path: Path) -> None:
    _trainer, _ = fit(
        lib, tmp_path, logger=lib.loggers.CSVLogger(tmp_path), log_every_n_steps=4, max_epochs=1, limit_val_batches=0
    )
    (path,) = tmp_path.rglob("metrics.csv")
    assert path.read_text().splitlines()[0] == "epoch,step,train_loss"
    assert [line.split(",")[:2] for line in path.read_text().splitlines()[1:]] == [["0", "3"], ["0", "7"]]


# ------------------------------------------------------------------------------------------ devices / precision
@pytest.mark.parametrize(
    ("flags", "exc", "text"),
    [
        ({"accelerator": "gpu"}, "MisconfigurationException", "No supported gpu backend found!"),
        (
            {"accelerator": "cuda"},
            "MisconfigurationException",
            "`CUDAAccelerator` can not run on your system since the accelerator is not available. The following accelerator(s)"  # noqa: E501
            " is available and can be passed into `accelerator` argument of `Trainer`: ['cpu'].",
        ),
        (
            {"accelerator": "cpu", "devices": 0},
            "MisconfigurationException",
            "`Trainer(devices=0)` value is not a valid input using cpu accelerator.",
        ),
        (
            {"accelerator": "cpu", "devices": -1},
            "TypeError",
            "`devices` selected with `CPUAccelerator` should be an int > 0.",
        ),
        (
            {"accelerator": "cpu", "devices": "0, 1"},
            "TypeError",
            "`devices` selected with `CPUAccelerator` should be an int > 0.",
        ),
        (
            {"accelerator": "cpu", "devices": [0, 1]},
            "TypeError",
            "`devices` selected with `CPUAccelerator` should be an int > 0.",
        ),
        ({"num_nodes": 0}, "ValueError", "`num_nodes` must be a positive integer, but got 0."),
    ],
)
def test_device_errors(lib: ModuleType, flags: dict[str, Any], exc: str, text: str) -> None:
    if torch.cuda.is_available():
        pytest.skip("these are the errors of a machine without a GPU")
    # fulgor adds the fix after Lightning's text (e.g. "No supported gpu backend found! ... Use accelerator='cpu'").
    raises(exc, text, lambda: lib.Trainer(**flags), prefix=True)


def test_unknown_accelerator(lib: ModuleType) -> None:
    raises(
        "ValueError",
        "You selected an invalid accelerator name: `accelerator='foo'`. Available names are:",
        lambda: lib.Trainer(accelerator="foo"),
        prefix=True,
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "32-true"),
        (32, "32-true"),
        ("32", "32-true"),
        (64, "64-true"),
        ("64", "64-true"),
        ("bf16", "bf16-mixed"),
        ("bf16-mixed", "bf16-mixed"),
        ("64-true", "64-true"),
        ("bf16-true", "bf16-true"),
        ("16-true", "16-true"),
    ],
)
def test_precision_values(lib: ModuleType, value: Any, expected: str) -> None:
    assert quiet(lambda: lib.Trainer(accelerator="cpu", precision=value)).precision == expected


@pytest.mark.parametrize("value", [16, "16", "16-mixed"])
def test_precision_16_on_cpu_becomes_bf16(lib: ModuleType, value: Any) -> None:
    with pytest.warns(
        UserWarning,
        match=re.escape(
            "You passed `Trainer(accelerator='cpu', precision='16-mixed')` but AMP"
            " with fp16 is not supported on CPU. Using `precision='bf16-mixed'`"
            " instead."
        ),
    ):
        trainer = lib.Trainer(accelerator="cpu", precision=value)
    assert trainer.precision == "bf16-mixed"


def test_precision_invalid(lib: ModuleType) -> None:
    raises(
        "ValueError",
        "Precision 'fp8' is invalid. Allowed precision values: ('transformer-engine',"
        " 'transformer-engine-float16', '16-true', '16-mixed', 'bf16-true', 'bf16-mixed', '32-true', '64-true',"
        " 64, 32, 16, '64', '32', '16', 'bf16')",
        lambda: lib.Trainer(precision="fp8"),
    )


# ------------------------------------------------------------------------------------------ torch switches
@pytest.fixture
def restore_torch_flags() -> Any:
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    yield
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    torch.backends.cudnn.benchmark = benchmark


def test_deterministic(lib: ModuleType, restore_torch_flags: None) -> None:
    lib.Trainer(deterministic=True)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.benchmark is False
    lib.Trainer(deterministic="warn")
    assert torch.is_deterministic_algorithms_warn_only_enabled()
    lib.Trainer(deterministic=False)
    assert not torch.are_deterministic_algorithms_enabled()


def test_benchmark(lib: ModuleType, restore_torch_flags: None) -> None:
    lib.Trainer(benchmark=True)
    assert torch.backends.cudnn.benchmark is True
    lib.Trainer(benchmark=False)
    assert torch.backends.cudnn.benchmark is False


def grad_modes(lib: ModuleType) -> Any:
    class Modes(trace_model_class(lib)):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[tuple[str, bool, bool]] = []

        def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
            fn = "sanity" if self.trainer.sanity_checking else str(self.trainer.state.fn.value)
            self.seen.append((fn, torch.is_inference_mode_enabled(), torch.is_grad_enabled()))
            return super().validation_step(batch, batch_idx)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            self.seen.append(("train", torch.is_inference_mode_enabled(), torch.is_grad_enabled()))
            return super().training_step(batch, batch_idx)

    return Modes()


@pytest.mark.parametrize(("inference_mode", "validate_mode"), [(True, (True, False)), (False, (False, False))])
def test_inference_mode(
    lib: ModuleType, tmp_path: Path, inference_mode: bool, validate_mode: tuple[bool, bool]
) -> None:
    model = grad_modes(lib)
    trainer, _ = fit(
        lib,
        tmp_path,
        model,
        max_epochs=1,
        limit_train_batches=1,
        limit_val_batches=1,
        num_sanity_val_steps=1,
        inference_mode=inference_mode,
    )
    quiet(lambda: trainer.validate(model, verbose=False))
    assert sorted(set(model.seen)) == sorted(
        {("sanity", False, False), ("train", False, True), ("fit", False, False), ("validate", *validate_mode)}
    )


def test_detect_anomaly(lib: ModuleType, tmp_path: Path) -> None:
    seen = []

    class Anomaly(trace_model_class(lib)):  # type: ignore[misc]
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            seen.append(torch.is_anomaly_enabled())
            return super().training_step(batch, batch_idx)

    fit(lib, tmp_path, Anomaly(), max_epochs=1, limit_train_batches=1, limit_val_batches=0, detect_anomaly=True)
    assert seen == [True]
    assert not torch.is_anomaly_enabled()


# ------------------------------------------------------------------------------------------ files and callbacks
def test_default_root_dir_layout(lib: ModuleType, tmp_path: Path) -> None:
    for _ in range(2):
        fit(lib, tmp_path, logger=True, max_epochs=1, limit_train_batches=2, limit_val_batches=1, log_every_n_steps=1)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    if importlib.util.find_spec("tensorboard") is not None:  # both libraries default to TensorBoard then
        assert sorted({f.rsplit("/", 1)[0] for f in files}) == ["lightning_logs/version_0", "lightning_logs/version_1"]
        names = [f.rsplit("/", 1)[1] for f in files]
        assert all(n.startswith("events.out.tfevents.") or n == "hparams.yaml" for n in names), names
    else:
        assert files == ["lightning_logs/version_0/metrics.csv", "lightning_logs/version_1/metrics.csv"]


def test_default_root_dir_layout_without_tensorboard(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    hide_optional(monkeypatch)
    for _ in range(2):
        fit(fulgor, tmp_path, logger=True, max_epochs=1, limit_train_batches=2, limit_val_batches=1)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["lightning_logs/version_0/metrics.csv", "lightning_logs/version_1/metrics.csv"]


def test_enable_checkpointing_false_with_model_checkpoint(lib: ModuleType) -> None:
    raises(
        "MisconfigurationException",
        "Trainer was configured with `enable_checkpointing=False` but found `ModelCheckpoint` in callbacks list.",
        lambda: lib.Trainer(enable_checkpointing=False, callbacks=[lib.callbacks.ModelCheckpoint()]),
    )


def test_enable_progress_bar_false_with_progress_bar(lib: ModuleType) -> None:
    raises(
        "MisconfigurationException",
        "Trainer was configured with `enable_progress_bar=False` but found `TQDMProgressBar` in callbacks list.",
        lambda: lib.Trainer(enable_progress_bar=False, callbacks=[lib.callbacks.TQDMProgressBar()]),
    )


def test_default_callbacks(lib: ModuleType) -> None:
    # Both libraries pick the rich bar and summary when rich is installed (the test extras install it).
    rich = importlib.util.find_spec("rich") is not None
    names = [type(c).__name__ for c in lib.Trainer().callbacks]
    expected = ["RichProgressBar", "RichModelSummary"] if rich else ["TQDMProgressBar", "ModelSummary"]
    assert names == [*expected, "ModelCheckpoint"]


def test_default_callbacks_without_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_optional(monkeypatch)
    names = [type(c).__name__ for c in fulgor.Trainer().callbacks]
    assert names == ["TQDMProgressBar", "ModelSummary", "ModelCheckpoint"]


# ------------------------------------------------------------------------------------------ barebones
def test_barebones(lib: ModuleType, tmp_path: Path) -> None:
    trainer = lib.Trainer(barebones=True, default_root_dir=tmp_path, max_epochs=1)
    assert trainer.callbacks == []
    assert trainer.loggers == []
    assert trainer.log_every_n_steps == 0
    assert trainer.num_sanity_val_steps == 0
    model = counting_model(lib)
    with pytest.warns(
        UserWarning,
        match=re.escape(
            "You are trying to `self.log()` but `Trainer(barebones=True)` is"
            " configured. Logging can impact raw speed so it is disabled under"
            " this setting."
        ),
    ):
        trainer.fit(model)
    assert trainer.callback_metrics == {}
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("flag", "value", "reason"),
    [
        ("enable_checkpointing", True, "Checkpointing can impact raw speed so it is disabled in barebones mode."),
        (
            "fast_dev_run",
            True,
            "Development run is not meant for raw speed evaluation so it is disabled in barebones mode.",
        ),
    ],
)
def test_barebones_conflicts(lib: ModuleType, flag: str, value: Any, reason: str) -> None:
    raises(
        "ValueError",
        f"`Trainer(barebones=True, {flag}={value!r})` was passed. {reason}",
        lambda: lib.Trainer(barebones=True, **{flag: value}),
    )


# ------------------------------------------------------------------------------------------ reloads, env, positional
def test_reload_dataloaders_every_n_epochs(lib: ModuleType, tmp_path: Path) -> None:
    _, model = fit(
        lib, tmp_path, max_epochs=3, limit_train_batches=1, limit_val_batches=1, reload_dataloaders_every_n_epochs=1
    )
    assert model.loader_calls == RELOAD_CALLS


def test_env_defaults(lib: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PL_TRAINER_MAX_EPOCHS", "3")
    monkeypatch.setenv("PL_TRAINER_LOGGER", "False")
    monkeypatch.setenv("PL_TRAINER_DEFAULT_ROOT_DIR", "/tmp/not-a-literal")
    trainer = lib.Trainer()
    assert trainer.max_epochs == 3
    assert trainer.loggers == []
    assert trainer.default_root_dir == "/tmp/not-a-literal"
    assert lib.Trainer(max_epochs=7).max_epochs == 7


def test_positional_arguments(lib: ModuleType) -> None:
    trainer = lib.Trainer("cpu", "auto", 1, 1, "64")
    assert trainer.precision == "64-true"
    assert trainer.num_nodes == 1


# `plugins` and `sync_batchnorm` are implemented: tests/test_plugins.py.
@pytest.mark.parametrize(("flag", "value"), [("model_registry", "my-model")])
def test_unimplemented_flags_are_refused(flag: str, value: Any) -> None:
    with pytest.raises(NotImplementedError, match=re.escape(flag)):
        fulgor.Trainer(accelerator="cpu", **{flag: value})


# ------------------------------------------------------------------------------------------ properties
def test_trainer_properties(lib: ModuleType, tmp_path: Path) -> None:
    trainer, _ = fit(
        lib,
        tmp_path,
        logger=lib.loggers.CSVLogger(tmp_path),
        limit_train_batches=3,
        limit_val_batches=2,
        accumulate_grad_batches=2,
    )
    assert (trainer.global_step, trainer.current_epoch) == (4, 2)
    assert trainer.should_stop is False
    assert trainer.is_global_zero is True
    assert trainer.num_training_batches == 3
    assert trainer.num_val_batches == [2]
    assert trainer.num_sanity_val_batches == [2]
    assert trainer.estimated_stepping_batches == 4
    assert Path(trainer.log_dir) == tmp_path / "lightning_logs" / "version_0"
    assert sorted(trainer.callback_metrics) == ["train_loss", "val_loss"]
    assert sorted(trainer.logged_metrics) == ["train_loss", "val_loss"]
    assert trainer.progress_bar_metrics == {}


def test_estimated_stepping_batches_before_fit(lib: ModuleType) -> None:
    assert quiet(lambda: lib.Trainer(max_steps=7).estimated_stepping_batches) == 7


MIN_EPOCHS_STEPS = 30
MIN_EPOCHS_VALIDATIONS = [(0, 10), (1, 20), (2, 30)]
RELOAD_CALLS = {"train": 3, "val": 3}
