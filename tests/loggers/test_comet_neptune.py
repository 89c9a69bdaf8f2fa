"""CometLogger against a stand-in `comet_ml` module (the calls it makes, its name/version/save_dir, the old argument
names), compared with pytorch-lightning 2.6.6 given the same stand-in; NeptuneLogger's refusal; the missing-package
error."""

from __future__ import annotations

import sys
from argparse import Namespace
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
import torch

import fulgor
from fulgor.loggers import CometLogger


class _Experiment:
    def __init__(self, calls: list[Any], key: str, project: str | None) -> None:
        self.calls = calls
        self.key = key
        self.project_name = project or "Uncategorized"

    def get_key(self) -> str:
        return self.key

    def log_other(self, key: str, value: Any) -> None:
        self.calls.append(("log_other", key, value))

    def __internal_api__log_parameters__(self, **kwargs: Any) -> None:
        self.calls.append(("log_parameters", kwargs))

    def __internal_api__log_metrics__(self, metrics: dict[str, Any], **kwargs: Any) -> None:
        clean = {k: v.tolist() if isinstance(v, torch.Tensor) else v for k, v in metrics.items()}
        self.calls.append(("log_metrics", clean, kwargs))

    def __internal_api__set_model_graph__(self, **kwargs: Any) -> None:
        self.calls.append(("set_model_graph", type(kwargs["graph"]).__name__, kwargs["framework"]))

    def flush(self) -> None:
        self.calls.append(("flush",))


def fake_comet(calls: list[Any]) -> ModuleType:
    module = ModuleType("comet_ml")

    class ExperimentConfig:
        def __init__(self, **kwargs: Any) -> None:
            calls.append(("ExperimentConfig", dict(kwargs)))
            self.offline_directory = kwargs.get("offline_directory")

    def start(**kwargs: Any) -> _Experiment:
        calls.append(("start", {k: v for k, v in kwargs.items() if k != "experiment_config"}))
        return _Experiment(calls, kwargs["experiment_key"] or "k" * 32, kwargs["project"])

    module.ExperimentConfig = ExperimentConfig  # type: ignore[attr-defined]
    module.start = start  # type: ignore[attr-defined]
    module.exceptions = SimpleNamespace(ExperimentNotFound=RuntimeError)  # type: ignore[attr-defined]
    return module


def _use(logger_class: Any, **kwargs: Any) -> tuple[list[Any], tuple[Any, ...]]:
    calls: list[Any] = []
    sys.modules["comet_ml"] = fake_comet(calls)
    try:
        logger = logger_class(**kwargs)
        before = (logger.name, logger.version, logger.save_dir)
        logger.log_hyperparams({"lr": 0.1, "nested": {"a": 1}})
        logger.log_hyperparams(Namespace(batch_size=4))
        logger.log_metrics({"loss": torch.tensor(0.5), "epoch": 1, "acc": 0.25}, step=3)
        logger.log_graph(torch.nn.Linear(2, 2))
        logger.finalize("success")
        state = logger.__getstate__()  # what a copy sent to another process gets
        return calls, (*before, state["_experiment"], state["_experiment_key"])
    finally:
        del sys.modules["comet_ml"]


ARGUMENTS = [
    {},
    {"project": "digits", "workspace": "me", "online": False, "offline_directory": "out", "prefix": "run1"},
    {"experiment_key": "e" * 40, "mode": "get", "api_key": "secret", "name": "first"},
    {"experiment_name": "old", "project_name": "legacy", "save_dir": "logs"},
]


@pytest.mark.parametrize("kwargs", ARGUMENTS)
def test_comet_logger_calls(kwargs: dict[str, Any]) -> None:
    calls, (name, version, save_dir, experiment, key) = _use(CometLogger, **kwargs)
    assert calls[0][0] == "ExperimentConfig"
    assert calls[1][0] == "start"
    assert calls[2] == ("log_other", "Created from", "pytorch-lightning")
    assert calls[3] == (
        "log_parameters",
        {"parameters": {"lr": 0.1, "nested": {"a": 1}}, "framework": "pytorch-lightning", "flatten_nested": True,
         "source": "manual"},
    )  # fmt: skip
    prefix = kwargs.get("prefix")
    options = {"step": 3, "epoch": 1, "prefix": prefix, "framework": "pytorch-lightning"}
    assert calls[5] == ("log_metrics", {"loss": 0.5, "acc": 0.25}, options)
    assert calls[6:] == [("set_model_graph", "Linear", "pytorch-lightning"), ("flush",)]
    assert name == kwargs.get("project", kwargs.get("project_name", "Uncategorized"))
    assert version == kwargs.get("experiment_key", "k" * 32)
    assert save_dir == kwargs.get("offline_directory", kwargs.get("save_dir"))
    assert experiment is None
    assert key == version


@pytest.mark.oracle
@pytest.mark.parametrize("kwargs", ARGUMENTS)
def test_comet_logger_matches_lightning(kwargs: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    comet = pytest.importorskip("pytorch_lightning.loggers.comet")
    monkeypatch.setattr(comet, "_COMET_AVAILABLE", True)
    assert _use(CometLogger, **kwargs) == _use(comet.CometLogger, **kwargs)


def test_comet_old_offline_flag_means_offline() -> None:
    # Lightning passes `offline=True` on as `online=True` (a bug); fulgor logs offline, as the flag says.
    calls, _ = _use(CometLogger, offline=True)
    assert calls[0] == ("ExperimentConfig", {"disabled": True})
    assert calls[1][1]["online"] is False


def test_comet_logger_in_a_fit(tmp_path: Any) -> None:
    from helpers.boring import boring_classes

    calls: list[Any] = []
    sys.modules["comet_ml"] = fake_comet(calls)
    try:
        trainer = fulgor.Trainer(
            max_epochs=1, limit_train_batches=2, limit_val_batches=1, log_every_n_steps=1, enable_progress_bar=False,
            logger=CometLogger(project="p"), default_root_dir=tmp_path,
        )  # fmt: skip

        class Logged(boring_classes(fulgor).BoringModel):  # type: ignore[misc,name-defined]
            def training_step(self, batch: Any, batch_idx: int) -> Any:
                out = super().training_step(batch, batch_idx)
                self.log("train_loss", out["loss"])
                return out

        trainer.fit(Logged())
    finally:
        del sys.modules["comet_ml"]
    metric_rows = [c for c in calls if c[0] == "log_metrics"]
    assert [(row[2]["step"], row[2]["epoch"], sorted(row[1])) for row in metric_rows] == [
        (0, 0, ["train_loss"]),
        (1, 0, ["train_loss"]),
    ]
    assert calls[-1] == ("flush",)


def test_comet_without_the_package_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "comet_ml", None)
    with pytest.raises(ModuleNotFoundError, match="pip install comet-ml"):
        CometLogger()


def test_neptune_logger_is_refused_with_the_alternatives() -> None:
    from fulgor.loggers import NeptuneLogger

    with pytest.raises(RuntimeError, match="Neptune has been sunset") as raised:
        NeptuneLogger(project="a/b", api_key="x")
    assert "CSVLogger" in str(raised.value)
    assert "CometLogger" in str(raised.value)


@pytest.mark.oracle
def test_neptune_refusal_matches_lightning() -> None:
    neptune = pytest.importorskip("pytorch_lightning.loggers.neptune")
    from fulgor.loggers.neptune import NeptuneLogger

    for cls in (NeptuneLogger, neptune.NeptuneLogger):
        with pytest.raises(RuntimeError, match=r"NeptuneLogger is no longer supported\. Neptune has been sunset\."):
            cls()


def test_import_fulgor_loggers_does_not_import_comet() -> None:
    import subprocess

    code = "import sys, fulgor.loggers; print('comet_ml' in sys.modules, 'fulgor.loggers.comet' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["False", "False"]
