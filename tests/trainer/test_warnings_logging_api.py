"""`self.log` from callbacks, the torchmetrics `metric_attribute` errors and Lightning's deprecated
`*PrecisionPlugin` names, each checked against the real Lightning 2.6.6 (the oracle) where it is installed."""

from __future__ import annotations

import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

import fulgor
import fulgor.demos.boring_classes
from fulgor.errors import MisconfigurationException
from fulgor.lightning_errors import LightningDeprecationWarning

pl = pytest.importorskip("pytorch_lightning")
pl_demos = pytest.importorskip("pytorch_lightning.demos.boring_classes")
torchmetrics = pytest.importorskip("torchmetrics")


def demos(lib: ModuleType) -> Any:
    return fulgor.demos.boring_classes if lib is fulgor else pl_demos


def fit(lib: ModuleType, model: Any, tmp: Path, **flags: Any) -> Any:
    trainer = lib.Trainer(
        default_root_dir=str(tmp),
        limit_train_batches=2,
        limit_val_batches=1,
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        **flags,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model)
    return trainer


@pytest.mark.oracle
def test_callbacks_can_self_log_as_in_lightning(tmp_path: Path) -> None:
    def run(lib: ModuleType) -> dict[str, float]:
        class LoggingCallback(lib.Callback):  # type: ignore[misc,name-defined]
            def on_train_start(self, trainer: Any, pl_module: Any) -> None:
                self.log("on_train_start", 1)

            def on_train_batch_end(self, trainer: Any, pl_module: Any, *args: Any) -> None:
                self.log_dict({"on_train_batch_end": 3})

            def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
                self.log("on_validation_epoch_end", 4)

        trainer = fit(lib, demos(lib).BoringModel(), tmp_path / lib.__name__, callbacks=[LoggingCallback()])
        return {k: float(v) for k, v in trainer.callback_metrics.items()}

    ours = run(fulgor)
    assert ours == run(pl)
    assert ours == {"on_train_start": 1.0, "on_train_batch_end": 3.0, "on_validation_epoch_end": 4.0}


def metric_module(lib: ModuleType, attribute: bool, logged_is_attribute: bool) -> Any:
    class Model(demos(lib).BoringModel):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            if attribute:
                self.bar = torchmetrics.classification.MulticlassAccuracy(num_classes=2)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            out = super().training_step(batch, batch_idx)
            metric = self.bar if logged_is_attribute else torchmetrics.classification.MulticlassAccuracy(num_classes=2)
            metric(torch.tensor([0, 1]), torch.tensor([0, 1]))
            self.log("foo", metric)
            return out

    return Model()


@pytest.mark.oracle
@pytest.mark.parametrize(
    ("attribute", "expected"),
    [
        (False, r"You can fix this by setting an attribute for the metric in your `LightningModule`\.$"),
        (True, r"You can fix this by calling `self\.log\(foo, \.\.\., metric_attribute=name\)` where `name` is one of"),
    ],
)
def test_metric_that_is_not_an_attribute_is_refused_as_in_lightning(
    attribute: bool, expected: str, tmp_path: Path
) -> None:
    messages = []
    for lib in (pl, fulgor):
        with pytest.raises(MisconfigurationException if lib is fulgor else Exception, match=expected) as error:
            fit(lib, metric_module(lib, attribute, logged_is_attribute=False), tmp_path / lib.__name__)
        messages.append(str(error.value))
    assert messages[0] == messages[1]
    assert messages[0].startswith("Could not find the `LightningModule` attribute for the `torchmetrics.Metric`")


def test_metric_that_is_an_attribute_logs(tmp_path: Path) -> None:
    trainer = fit(fulgor, metric_module(fulgor, True, logged_is_attribute=True), tmp_path)
    assert float(trainer.callback_metrics["foo"]) == 1.0


DEPRECATED = [
    ("precision", "PrecisionPlugin", {}),
    ("double", "DoublePrecisionPlugin", {}),
    ("half", "HalfPrecisionPlugin", {}),
    ("amp", "MixedPrecisionPlugin", {"precision": "bf16-mixed", "device": "cpu"}),
]


@pytest.mark.oracle
@pytest.mark.parametrize(("module", "name", "kwargs"), DEPRECATED)
def test_deprecated_precision_plugin_names(module: str, name: str, kwargs: dict[str, Any]) -> None:
    import importlib

    from fulgor import deprecated_precision, precision

    theirs_cls = getattr(importlib.import_module(f"pytorch_lightning.plugins.precision.{module}"), name)
    ours_cls = getattr(deprecated_precision, name)
    with pytest.warns(Warning, match="is deprecated") as theirs:
        theirs_cls(**kwargs)
    with pytest.warns(LightningDeprecationWarning) as ours:
        plugin = ours_cls(**kwargs)
    assert [str(w.message) for w in ours] == [str(w.message) for w in theirs if "deprecated" in str(w.message)]
    assert isinstance(plugin, getattr(precision, name.replace("Plugin", "")))
