"""MLFlowLogger against a local MLflow file store and WandbLogger in offline mode (each skipped when the package is
not installed): what the stores hold after the same calls a Trainer makes."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch


def _checkpoint_callback(tmp_path: Path) -> SimpleNamespace:
    best, last = tmp_path / "epoch=1-step=4.ckpt", tmp_path / "last.ckpt"
    best.write_bytes(b"best")
    last.write_bytes(b"last")
    return SimpleNamespace(
        best_model_path=str(best),
        best_model_score=torch.tensor(0.25),
        best_k_models={str(best): torch.tensor(0.25)},
        last_model_path=str(last),
        current_score=torch.tensor(0.5),
        monitor="val_loss",
        mode="min",
        save_last=True,
        save_top_k=1,
        save_weights_only=False,
    )


# ---------------------------------------------------------------------------------------------------------------------
# MLflow


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses file stores without it
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path / "mlruns"


def test_mlflow_metrics_params_tags_and_status(mlflow_store: Path) -> None:
    from mlflow.tracking import MlflowClient

    from fulgor.loggers import MLFlowLogger

    logger = MLFlowLogger("digits", run_name="first", save_dir=str(mlflow_store), tags={"team": "x"}, prefix="p")
    assert logger.save_dir == str(mlflow_store)
    logger.log_hyperparams({"lr": 0.1, "nested": {"a": 1}, "long": "y" * 300})
    for step in range(3):
        logger.log_metrics({"loss": 1.0 / (step + 1), "acc": torch.tensor(0.5)}, step=step)
    with pytest.warns(RuntimeWarning, match="Replacing p-val_loss@1 with p-val_loss1"):
        logger.log_metrics({"val_loss@1": 0.3, "note": "text"}, step=2)
    logger.finalize("success")

    client = MlflowClient(f"file:{mlflow_store}")
    run = client.get_run(logger.run_id)
    assert logger.name == run.info.experiment_id == client.get_experiment_by_name("digits").experiment_id
    assert logger.version == run.info.run_id
    assert run.info.status == "FINISHED"
    assert run.data.params == {"lr": "0.1", "nested/a": "1", "long": "y" * 250}
    assert run.data.tags["team"] == "x"
    assert run.data.tags["mlflow.runName"] == "first"
    history = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "p-loss")]
    assert history == [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3))]
    assert run.data.metrics == {"p-loss": pytest.approx(1 / 3), "p-acc": 0.5, "p-val_loss1": 0.3}


def test_mlflow_resumes_run_and_marks_failure(mlflow_store: Path) -> None:
    from mlflow.tracking import MlflowClient

    from fulgor.loggers import MLFlowLogger

    first = MLFlowLogger(save_dir=str(mlflow_store))
    first.log_metrics({"m": 1.0}, step=0)
    second = MLFlowLogger(save_dir=str(mlflow_store), run_id=first.run_id)
    second.log_metrics({"m": 2.0}, step=1)
    second.finalize("failed")
    client = MlflowClient(f"file:{mlflow_store}")
    assert [m.value for m in client.get_metric_history(first.run_id, "m")] == [1.0, 2.0]
    assert client.get_run(first.run_id).info.status == "FAILED"
    untouched = MLFlowLogger(save_dir=str(mlflow_store))
    untouched.finalize("success")  # never used: no run is created
    assert untouched._run_id is None


def test_mlflow_log_model_uploads_checkpoints_at_the_end(mlflow_store: Path, tmp_path: Path) -> None:
    from fulgor.loggers import MLFlowLogger

    logger = MLFlowLogger(save_dir=str(mlflow_store), log_model=True)
    callback = _checkpoint_callback(tmp_path)
    logger.after_save_checkpoint(callback)
    artifacts = Path(mlflow_store, logger.experiment_id, logger.run_id, "artifacts")  # type: ignore[arg-type]
    assert not artifacts.exists() or list(artifacts.iterdir()) == []
    logger.finalize("success")
    assert sorted(str(p.relative_to(artifacts)) for p in artifacts.rglob("*") if p.is_file()) == [
        "epoch=1-step=4/aliases.txt",
        "epoch=1-step=4/epoch=1-step=4.ckpt",
        "epoch=1-step=4/metadata.yaml",
        "last/aliases.txt",
        "last/last.ckpt",
        "last/metadata.yaml",
    ]
    assert (artifacts / "epoch=1-step=4" / "aliases.txt").read_text() == "['latest', 'best']"
    assert "score: 0.25" in (artifacts / "epoch=1-step=4" / "metadata.yaml").read_text()


def test_mlflow_missing_package_message(monkeypatch: pytest.MonkeyPatch) -> None:
    from fulgor.loggers import mlflow as module

    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(ModuleNotFoundError, match="pip install mlflow"):
        module.MLFlowLogger()


# ---------------------------------------------------------------------------------------------------------------------
# W&B


@pytest.fixture
def wandb_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    yield wandb
    if wandb.run is not None:
        wandb.finish()


def test_wandb_offline_run_records_config_and_metrics(wandb_offline: Any, tmp_path: Path) -> None:
    from fulgor.loggers import WandbLogger

    logger = WandbLogger(name="first", save_dir=tmp_path, version="abc123", prefix="p")
    assert (logger.name, logger.version, logger.save_dir) == ("lightning_logs", "abc123", str(tmp_path))
    logger.log_hyperparams({"lr": 0.1, "act": torch.nn.ReLU, "obj": object})
    for step in range(3):
        logger.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    run = logger.experiment
    assert (run.id, run.name, run.project) == ("abc123", "first", "lightning_logs")
    assert run.config["lr"] == 0.1
    assert run.config["act"] == "ReLU"
    assert run.config["obj"] == "object"
    assert run.summary["p-loss"] == pytest.approx(1 / 3)
    assert run.summary["trainer/global_step"] == 2
    run_dir = Path(run.dir).parent
    wandb_offline.finish()
    assert run_dir.parent == tmp_path / "wandb"
    assert run_dir.name.startswith("offline-run-")
    assert run_dir.name.endswith("-abc123")
    # The offline record file (uploaded later by `wandb sync`) holds the history rows and the config.
    records = b""
    for _ in range(50):  # wandb-core may still be writing the file for a moment after `finish()`
        records = (run_dir / "run-abc123.wandb").read_bytes()
        if records.count(b"p-loss") >= 3:
            break
        time.sleep(0.1)
    assert records.count(b"p-loss") >= 3
    assert b"trainer/global_step" in records
    assert b"ReLU" in records


def test_wandb_rejects_offline_log_model(wandb_offline: Any) -> None:
    from fulgor.errors import MisconfigurationException
    from fulgor.loggers import WandbLogger

    with pytest.raises(MisconfigurationException, match="log_model=True and offline=True is an invalid"):
        WandbLogger(offline=True, log_model=True)


def test_wandb_project_from_env_and_lazy_run(wandb_offline: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from fulgor.loggers import WandbLogger

    monkeypatch.setenv("WANDB_PROJECT", "proj")
    logger = WandbLogger(id="zzz")
    assert (logger.name, logger.version, logger._experiment) == ("proj", "zzz", None)  # no run until used


class _FakeRun:
    def __init__(self, **init: Any) -> None:
        self.id, self.name = init.get("id") or "run-1", init.get("name") or "generated"


def test_wandb_pickling_starts_the_run_so_spawned_processes_join_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import pickle
    import types

    from fulgor.loggers import WandbLogger

    started: list[dict[str, Any]] = []

    def init(**kwargs: Any) -> _FakeRun:
        started.append(kwargs)
        return _FakeRun(**kwargs)

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(run=None, init=init))
    logger = WandbLogger(project="proj")
    assert logger._experiment is None
    assert started == []
    copy = pickle.loads(pickle.dumps(logger))  # what the "spawn" launcher does with the Trainer's logger
    assert len(started) == 1  # the run started in the launching process
    assert logger._experiment is not None
    assert copy._experiment is None
    assert copy.version == "run-1"  # the copy attaches to that run, not a new one
    assert copy.experiment.id == "run-1"
    assert started[-1]["id"] == "run-1"


def test_wandb_missing_package_message(monkeypatch: pytest.MonkeyPatch) -> None:
    from fulgor.loggers import wandb as module

    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ModuleNotFoundError, match="pip install wandb"):
        module.WandbLogger()


def test_optional_logger_packages_stay_unimported() -> None:
    import subprocess

    code = (
        "import sys, fulgor, fulgor.loggers as L; L.MLFlowLogger; L.WandbLogger; L.TensorBoardLogger;"
        " print(sorted(m for m in ('mlflow', 'wandb', 'tensorboard', 'torch.utils.tensorboard') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "[]"
