"""`self.log` semantics (reference §3): per-hook defaults and errors, reductions, batch-size inference, forked and
per-dataloader names, logging cadence and CSV steps, Metric objects by duck typing, and no host syncs per step.
Tests parametrized over `lib` also run against pytorch-lightning 2.6.6 (oracle) to pin the expected behaviour."""

from __future__ import annotations

import csv
import re
import sys
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


def trainer(lib: ModuleType, root: Path, **flags: Any) -> Any:
    settings: dict[str, Any] = {
        "max_epochs": 1,
        "limit_train_batches": 2,
        "limit_val_batches": 2,
        "num_sanity_val_steps": 0,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "default_root_dir": root,
        "logger": False,
    }
    settings.update(flags)
    return lib.Trainer(**settings)


def model_with(lib: ModuleType, hook: str, body: Callable[..., Any], **class_kwargs: Any) -> Any:
    """The §2 model where `hook` first runs `body(self, *args)` then the original hook."""
    base = trace_model_class(lib, **class_kwargs)
    original = getattr(base, hook)

    def replaced(self: Any, *args: Any, **kwargs: Any) -> Any:
        body(self, *args, **kwargs)
        return original(self, *args, **kwargs)

    import inspect

    replaced.__signature__ = inspect.signature(original)  # type: ignore[attr-defined]
    return type("Model", (base,), {hook: replaced})()


def quiet(fn: Callable[[], Any]) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn()


def raises(lib: ModuleType, exc: str, text: str, fn: Callable[[], Any]) -> None:
    """`fn()` raises an exception whose class is named `exc` with exactly `text` as its message."""
    with pytest.raises(Exception) as info:
        quiet(fn)
    assert type(info.value).__name__ == exc, repr(info.value)
    assert str(info.value) == text


# ------------------------------------------------------------------------------------------------ errors (§3.1-3.2)
HINT = " HINT: You can still log directly to the logger by using `self.logger.experiment`."


@pytest.mark.parametrize(
    "hook",
    [
        "on_train_end",
        "on_fit_start",
        "setup",
        "configure_optimizers",
        "on_validation_end",
        "on_before_batch_transfer",
        "on_validation_model_eval",
    ],
)
def test_log_in_unsupported_hook(lib: ModuleType, tmp_path: Path, hook: str) -> None:
    model = model_with(lib, hook, lambda self, *a, **k: self.log("x", 1.0))
    raises(
        lib,
        "MisconfigurationException",
        f"You can't `self.log()` inside `{hook}`.{HINT}",
        lambda: trainer(lib, tmp_path).fit(model),
    )


@pytest.mark.parametrize(
    ("hook", "kwargs", "text"),
    [
        (
            "on_train_epoch_end",
            {"on_step": True},
            "You can't `self.log(on_step=True)` inside `on_train_epoch_end`, must be one of (False,).",
        ),
        (
            "on_train_epoch_start",
            {"on_epoch": False},
            "You can't `self.log(on_epoch=False)` inside `on_train_epoch_start`, must be one of (True,).",
        ),
        (
            "on_validation_epoch_end",
            {"on_step": True},
            "You can't `self.log(on_step=True)` inside `on_validation_epoch_end`, must be one of (False,).",
        ),
        (
            "on_train_start",
            {"on_step": True},
            "You can't `self.log(on_step=True)` inside `on_train_start`, must be one of (False,).",
        ),
        (
            "training_step",
            {"on_step": False, "on_epoch": False},
            "`self.log(on_step=False, on_epoch=False)` is not useful.",
        ),
    ],
)
def test_log_invalid_levels(lib: ModuleType, tmp_path: Path, hook: str, kwargs: dict[str, Any], text: str) -> None:
    model = model_with(lib, hook, lambda self, *a, **k: self.log("x", 1.0, **kwargs))
    raises(lib, "MisconfigurationException", text, lambda: trainer(lib, tmp_path).fit(model))


def test_log_in_predict_hook(lib: ModuleType, tmp_path: Path) -> None:
    model = model_with(lib, "predict_step", lambda self, *a, **k: self.log("x", 1.0))
    text = (
        "You are trying to `self.log()` but the loop's result collection is not registered yet. This is most likely"
        " because you are trying to log in a `predict` hook, but it doesn't support logging"
    )
    raises(lib, "MisconfigurationException", text, lambda: trainer(lib, tmp_path).predict(model))


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ({"a": {"b": 1}}, "`self.log(x, {'a': {'b': 1}})` was called, but nested dictionaries cannot be logged"),
        ("text", "`self.log(x, text)` was called, but `str` values cannot be logged"),
        (
            torch.tensor([1.0, 2.0]),
            "`self.log(x, tensor([1., 2.]))` was called, but the tensor must have a single element."
            " You can try doing `self.log(x, tensor([1., 2.]).mean())`",
        ),
    ],
)
def test_log_invalid_values(lib: ModuleType, tmp_path: Path, value: Any, text: str) -> None:
    model = model_with(lib, "training_step", lambda self, *a, **k: self.log("x", value))
    raises(lib, "ValueError", text, lambda: trainer(lib, tmp_path).fit(model))


def test_log_dataloader_idx_in_key(lib: ModuleType, tmp_path: Path) -> None:
    model = model_with(lib, "validation_step", lambda self, *a, **k: self.log("v/dataloader_idx_0", 1.0))
    text = (
        "You called `self.log` with the key `v/dataloader_idx_0` but it should not contain information about"
        " `dataloader_idx` when `add_dataloader_idx=True`"
    )
    raises(lib, "MisconfigurationException", text, lambda: trainer(lib, tmp_path).validate(model))


def test_log_twice_with_different_arguments(lib: ModuleType, tmp_path: Path) -> None:
    def body(self: Any, *args: Any, **kwargs: Any) -> None:
        self.log("x", 1.0)
        self.log("x", 1.0, prog_bar=True)

    model = model_with(lib, "training_step", body)
    with pytest.raises(
        Exception,
        match=re.escape(
            "You called `self.log(x, ...)` twice in `training_step` with different arguments. This is not allowed"
        ),
    ):
        quiet(lambda: trainer(lib, tmp_path).fit(model))


def test_invalid_reduce_fx(lib: ModuleType, tmp_path: Path) -> None:
    model = model_with(lib, "training_step", lambda self, *a, **k: self.log("x", 1.0, reduce_fx="median"))
    text = (
        "Only `self.log(..., reduce_fx={min,max,mean,sum})` are supported. If you need a custom reduction, please"
        " log a `torchmetrics.Metric` instance instead. Found: median"
    )
    raises(lib, "MisconfigurationException", text, lambda: trainer(lib, tmp_path).fit(model))


def test_log_outside_trainer_warns(lib: ModuleType) -> None:
    model = trace_model_class(lib)()
    with pytest.warns(
        UserWarning,
        match=re.escape(
            "You are trying to `self.log()` but the `self.trainer` reference is not registered on the model yet."
        ),
    ):
        model.log("x", 1.0)


def test_logger_true_without_logger_warns(lib: ModuleType, tmp_path: Path) -> None:
    model = model_with(lib, "training_step", lambda self, *a, **k: self.log("x", 1.0, logger=True))
    with pytest.warns(
        UserWarning, match=re.escape("You called `self.log('x', ..., logger=True)` but have no logger configured.")
    ):
        trainer(lib, tmp_path).fit(model)


def test_non_floating_value_is_cast_with_warning(lib: ModuleType, tmp_path: Path) -> None:
    model = model_with(lib, "training_step", lambda self, *a, **k: self.log("x", torch.tensor(3)))
    t = trainer(lib, tmp_path)
    with pytest.warns(UserWarning, match="floating"):
        t.fit(model)
    assert t.callback_metrics["x"].dtype == torch.float32
    assert t.callback_metrics["x"].item() == 3.0


# ------------------------------------------------------------------------------------------ reductions (§3.3)
def eval_model(lib: ModuleType, sizes: list[tuple[int, int]], log: Callable[..., None]) -> Any:
    """Validation over loaders of (n_samples, batch_size); validation_step calls `log(self, batch, batch_idx)`."""

    class Model(trace_model_class(lib)):  # type: ignore[misc]
        def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
            log(self, batch, batch_idx)

        def val_dataloader(self) -> Any:
            loaders = [DataLoader(XYDataset(n), batch_size=bs) for n, bs in sizes]
            return loaders[0] if len(loaders) == 1 else loaders

    return Model()


@pytest.mark.parametrize(("n", "bs", "expected"), [(10, 4, 0.8), (6, 4, 1 / 3), (6, 3, 0.5)])
def test_mean_is_weighted_by_batch_size(lib: ModuleType, tmp_path: Path, n: int, bs: int, expected: float) -> None:
    model = eval_model(lib, [(n, bs)], lambda self, batch, i: self.log("v", float(i)))
    (result,) = quiet(lambda: trainer(lib, tmp_path, limit_val_batches=None).validate(model, verbose=False))
    assert result == {"v": pytest.approx(expected, abs=1e-6)}


@pytest.mark.parametrize(
    ("reduce_fx", "expected"),
    [
        ("sum", 3.0),
        ("SUM", 3.0),
        ("max", 2.0),
        ("min", 0.0),
        ("avg", 0.8),
        ("mean", 0.8),
        (torch.sum, 3.0),
        (torch.max, 2.0),
        (torch.min, 0.0),
        (torch.mean, 0.8),
    ],
)
def test_reduce_fx(lib: ModuleType, tmp_path: Path, reduce_fx: Any, expected: float) -> None:
    model = eval_model(lib, [(10, 4)], lambda self, batch, i: self.log("v", float(i), reduce_fx=reduce_fx))
    (result,) = quiet(lambda: trainer(lib, tmp_path, limit_val_batches=None).validate(model, verbose=False))
    assert result == {"v": pytest.approx(expected, abs=1e-6)}


def test_explicit_batch_size(lib: ModuleType, tmp_path: Path) -> None:
    model = eval_model(lib, [(10, 4)], lambda self, batch, i: self.log("v", float(i), batch_size=i + 1))
    (result,) = quiet(lambda: trainer(lib, tmp_path, limit_val_batches=None).validate(model, verbose=False))
    assert result["v"] == pytest.approx((0 * 1 + 1 * 2 + 2 * 3) / 6)


def test_batch_size_inference_ambiguous_warning(lib: ModuleType, tmp_path: Path) -> None:
    class Model(trace_model_class(lib)):  # type: ignore[misc]
        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self.log("v", torch.tensor(1.0))

        def val_dataloader(self) -> Any:
            return DataLoader([(torch.zeros(3), torch.zeros(5, 2))] * 4, batch_size=2, collate_fn=lambda b: b[0])

    with pytest.warns(
        UserWarning,
        match=re.escape(
            "Trying to infer the `batch_size` from an ambiguous collection. The"
            " batch size we found is 3. To avoid any miscalculations, use"
            " `self.log(..., batch_size=batch_size)`."
        ),
    ):
        trainer(lib, tmp_path).validate(Model(), verbose=False)


def test_batch_size_inference_error(lib: ModuleType, tmp_path: Path) -> None:
    class Model(trace_model_class(lib)):  # type: ignore[misc]
        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self.log("v", torch.tensor(1.0))

        def val_dataloader(self) -> Any:
            return DataLoader(["a", "b"], batch_size=1)

    text = (
        "We could not infer the batch_size from the batch. Either simplify its structure or provide the batch_size"
        " as `self.log(..., batch_size=batch_size)`."
    )
    raises(lib, "MisconfigurationException", text, lambda: trainer(lib, tmp_path).validate(Model(), verbose=False))


def test_no_batch_size_needed_for_step_only_or_sum(lib: ModuleType, tmp_path: Path) -> None:
    class Model(trace_model_class(lib)):  # type: ignore[misc]
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            self.log("step_only", torch.tensor(1.0))
            self.log("summed", torch.tensor(2.0), on_epoch=True, reduce_fx="sum")
            return super().training_step(batch, batch_idx)

        def train_dataloader(self) -> Any:
            return DataLoader(
                XYDataset(8),
                batch_size=4,
                collate_fn=lambda b: ["tag", torch.stack([x for x, _ in b]), torch.stack([y for _, y in b])],
            )

        def _loss(self, batch: Any) -> torch.Tensor:
            return torch.nn.functional.mse_loss(self(batch[1]), batch[2])

    t = trainer(lib, tmp_path, limit_val_batches=0)
    quiet(lambda: t.fit(Model()))
    assert t.callback_metrics["summed_epoch"].item() == 4.0


# ------------------------------------------------------------------------------------------ naming (§3.3-3.4)
def test_forked_names_and_dataloader_suffix(lib: ModuleType, tmp_path: Path) -> None:
    def log(self: Any, batch: Any, i: int) -> None:
        self.log("v", float(i))
        self.log("vs", float(i), on_step=True)
        self.log(f"plain{len(batch[0]) % 3}", float(i), add_dataloader_idx=False)

    model = eval_model(lib, [(10, 4), (6, 3)], log)
    t = trainer(lib, tmp_path, limit_val_batches=None)
    results = quiet(lambda: t.validate(model, verbose=False))
    # add_dataloader_idx=False keys stay in the result of the loader that logged them.
    assert results == [
        {
            "v/dataloader_idx_0": pytest.approx(0.8),
            "vs_epoch/dataloader_idx_0": pytest.approx(0.8),
            "plain1": 0.5,
            "plain2": 2.0,
        },
        {"v/dataloader_idx_1": 0.5, "vs_epoch/dataloader_idx_1": 0.5, "plain0": 0.5},
    ]
    fixed = ["plain0", "plain1", "plain2", "v/dataloader_idx_0", "v/dataloader_idx_1"]
    assert sorted(t.logged_metrics) == [
        *fixed,
        "vs_epoch/dataloader_idx_0",
        "vs_epoch/dataloader_idx_1",
        "vs_step/dataloader_idx_0",
        "vs_step/dataloader_idx_1",
    ]
    assert sorted(t.callback_metrics) == [
        *fixed,
        "vs/dataloader_idx_0",
        "vs/dataloader_idx_1",
        "vs_epoch/dataloader_idx_0",
        "vs_epoch/dataloader_idx_1",
    ]


def test_same_key_from_two_dataloaders_without_suffix(lib: ModuleType, tmp_path: Path) -> None:
    model = eval_model(lib, [(10, 4), (6, 4)], lambda self, b, i: self.log("plain", float(i), add_dataloader_idx=False))
    with pytest.raises(
        Exception,
        match=re.escape(
            "You called `self.log(plain, ...)` twice in `validation_step` with different arguments. This is not allowed"
        ),
    ):
        quiet(lambda: trainer(lib, tmp_path, limit_val_batches=None).validate(model, verbose=False))


def test_training_fork_step_and_epoch(lib: ModuleType, tmp_path: Path) -> None:
    def body(self: Any, batch: Any, batch_idx: int) -> None:
        self.log("b", float(batch_idx + 1), on_epoch=True, prog_bar=True)

    t = trainer(lib, tmp_path, limit_val_batches=0, limit_train_batches=3, logger=lib.loggers.CSVLogger(tmp_path))
    quiet(lambda: t.fit(model_with(lib, "training_step", body)))
    metrics = {k: v.item() for k, v in t.callback_metrics.items() if k.startswith("b")}
    assert metrics == {"b": 2.0, "b_step": 3.0, "b_epoch": 2.0}
    assert sorted(t.logged_metrics) == ["b_epoch", "b_step", "train_loss"]
    assert t.progress_bar_metrics == {"b_step": 3.0, "b_epoch": 2.0}


# ------------------------------------------------------------------------------------------ cadence and CSV steps
def csv_rows(root: Path) -> list[dict[str, str]]:
    (path,) = root.rglob("metrics.csv")
    with path.open() as f:
        return list(csv.DictReader(f))


def test_log_every_n_steps_csv_steps(lib: ModuleType, tmp_path: Path) -> None:
    model = model_with(lib, "training_step", lambda self, batch, i: self.log("a", float(i)), n_samples=40)
    t = trainer(
        lib,
        tmp_path,
        limit_train_batches=10,
        limit_val_batches=0,
        log_every_n_steps=3,
        logger=lib.loggers.CSVLogger(tmp_path),
    )
    quiet(lambda: t.fit(model))
    rows = csv_rows(tmp_path)
    assert [(r["step"], r["a"], r["epoch"]) for r in rows if r["a"]] == [
        ("2", "2.0", "0"),
        ("5", "5.0", "0"),
        ("8", "8.0", "0"),
    ]


def test_short_epoch_logging_interval_warning(lib: ModuleType, tmp_path: Path) -> None:
    with pytest.warns(
        Warning,
        match=re.escape(
            "The number of training batches (2) is smaller than the logging interval"
            " Trainer(log_every_n_steps=50). Set a lower value for log_every_n_steps"
            " if you want to see logs for the training epoch."
        ),
    ):
        trainer(lib, tmp_path, logger=lib.loggers.CSVLogger(tmp_path)).fit(trace_model_class(lib)())


# ------------------------------------------------------------------------------------------ Metric by duck typing
class CountingMetric:
    """A torchmetrics-like object: update/compute/reset and `_forward_cache` (no torchmetrics import)."""

    def __init__(self) -> None:
        self.total = torch.tensor(0.0)
        self.count = 0
        self._forward_cache: torch.Tensor | None = None
        self._update_count = 0
        self._computed = None

    def __call__(self, value: torch.Tensor) -> torch.Tensor:
        self._forward_cache = value.detach().clone()
        self.update(value)
        return self._forward_cache

    def update(self, value: torch.Tensor) -> None:
        self.total = self.total + value
        self.count += 1
        self._update_count += 1

    def compute(self) -> torch.Tensor:
        return self.total / self.count

    def reset(self) -> None:
        self.total = torch.tensor(0.0)
        self.count = 0
        self._update_count = 0


def test_duck_typed_metric_on_step_and_epoch(tmp_path: Path) -> None:
    class Model(trace_model_class(fulgor)):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.metric = CountingMetric()
            self.epoch_values: list[float] = []

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            self.metric(torch.tensor(float(batch_idx + 1)))
            self.log("m", self.metric, on_step=True, on_epoch=True)
            return super().training_step(batch, batch_idx)

    model = Model()
    t = trainer(
        fulgor,
        tmp_path,
        limit_train_batches=4,
        limit_val_batches=0,
        log_every_n_steps=1,
        logger=fulgor.loggers.CSVLogger(tmp_path),
    )
    quiet(lambda: t.fit(model))
    rows = csv_rows(tmp_path)
    assert [r["m_step"] for r in rows if r["m_step"]] == ["1.0", "2.0", "3.0", "4.0"]
    assert [r["m_epoch"] for r in rows if r["m_epoch"]] == ["2.5"]
    assert t.callback_metrics["m_epoch"].item() == 2.5
    assert model.metric.count == 0, "the metric is reset after the epoch value is computed"


# ------------------------------------------------------------------------------------------ no host syncs
def count_item_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    original = torch.Tensor.item

    def item(self: torch.Tensor) -> Any:
        # DataLoader draws its base seed with one `.item()` per epoch: that one is torch's, not a logging sync.
        if "torch/utils/data" not in sys._getframe(1).f_code.co_filename.replace("\\", "/"):
            calls[0] += 1
        return original(self)

    monkeypatch.setattr(torch.Tensor, "item", item)
    return calls


def logging_every_step_model() -> Any:
    class Model(trace_model_class(fulgor, n_samples=400)):  # type: ignore[misc]
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            loss = self._loss(batch)
            self.log("loss", loss)
            self.log("loss_epoch_mean", loss, on_step=False, on_epoch=True)
            return loss

    return Model()


def test_self_log_does_no_host_sync_without_logger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t = trainer(fulgor, tmp_path, limit_train_batches=None, limit_val_batches=0, logger=False)
    calls = count_item_calls(monkeypatch)
    quiet(lambda: t.fit(logging_every_step_model()))
    assert t.global_step == 100
    assert calls[0] == 0


def test_self_log_syncs_only_when_logging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t = trainer(
        fulgor,
        tmp_path,
        limit_train_batches=None,
        limit_val_batches=0,
        log_every_n_steps=50,
        logger=fulgor.loggers.CSVLogger(tmp_path),
    )
    calls = count_item_calls(monkeypatch)
    quiet(lambda: t.fit(logging_every_step_model()))
    assert t.global_step == 100
    assert calls[0] <= 2 * 2, f"{calls[0]} .item() calls for 2 logged keys"


@pytest.mark.parametrize(
    ("hook", "fn"),
    [
        ("on_train_start", "fit"),
        ("on_train_epoch_start", "fit"),
        ("on_validation_start", "validate"),
        ("on_validation_epoch_start", "validate"),
        ("on_test_start", "test"),
        ("on_test_epoch_end", "test"),
    ],
)
def test_log_in_epoch_level_hooks(lib: ModuleType, tmp_path: Path, hook: str, fn: str) -> None:
    model = model_with(lib, hook, lambda self, *a, **k: self.log("x", 4.0))
    t = trainer(lib, tmp_path, limit_val_batches=1, limit_test_batches=1)
    quiet(lambda: getattr(t, fn)(model))
    assert t.callback_metrics["x"].item() == 4.0
