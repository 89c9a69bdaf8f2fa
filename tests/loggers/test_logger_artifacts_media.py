"""Logger details Lightning's users rely on, with stand-in `mlflow` / `wandb` modules (no service, no network):
checkpoints found for upload without a monitored metric, MLflow's `synchronous` flag on every batch call, W&B's
`log_audio` / `log_video` / `download_artifact`."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest

from fulgor.loggers._utils import scan_checkpoints


def test_checkpoints_without_a_monitor_are_found_for_upload(tmp_path: Path) -> None:
    path = tmp_path / "epoch=1-step=4.ckpt"
    path.write_bytes(b"x")
    callback = SimpleNamespace(best_model_path=str(path), best_model_score=None, best_k_models={},
                               last_model_path="", current_score=None)  # fmt: skip
    found = scan_checkpoints(callback, {})
    assert [(p, score, tag) for _, p, score, tag in found] == [(str(path), None, "best")]
    # logged already at this mtime: nothing new
    assert scan_checkpoints(callback, {str(path): found[0][0]}) == []


def test_a_path_in_several_roles_takes_lightnings_tag(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    path.write_bytes(b"x")
    callback = SimpleNamespace(best_model_path=str(path), best_model_score=1.0, best_k_models={str(path): 2.0},
                               last_model_path=str(path), current_score=3.0)  # fmt: skip
    assert [(score, tag) for _, _, score, tag in scan_checkpoints(callback, {})] == [(2.0, "best_k")]


@pytest.fixture
def fake_mlflow(monkeypatch: pytest.MonkeyPatch) -> Any:
    root = types.ModuleType("mlflow")
    root.set_tracking_uri = mock.Mock()  # type: ignore[attr-defined]
    tracking = types.ModuleType("mlflow.tracking")
    tracking.MlflowClient = mock.Mock()  # type: ignore[attr-defined]
    entities = types.ModuleType("mlflow.entities")
    entities.Metric = mock.Mock()  # type: ignore[attr-defined]
    entities.Param = mock.Mock()  # type: ignore[attr-defined]
    for name, module in (("mlflow", root), ("mlflow.tracking", tracking), ("mlflow.entities", entities)):
        monkeypatch.setitem(sys.modules, name, module)
    return SimpleNamespace(client=tracking.MlflowClient.return_value, metric=entities.Metric, param=entities.Param)


@pytest.mark.parametrize("synchronous", [None, False, True])
def test_mlflow_synchronous_reaches_every_log_batch(tmp_path: Path, fake_mlflow: Any, synchronous: Any) -> None:
    from fulgor.loggers import MLFlowLogger

    fake_mlflow.client.get_experiment_by_name.return_value = None
    logger = MLFlowLogger("exp", save_dir=str(tmp_path), synchronous=synchronous)
    logger.log_hyperparams({"lr": 0.1})
    logger.log_metrics({"loss": 1.0}, step=3)
    expected = {} if synchronous is None else {"synchronous": synchronous}
    calls = fake_mlflow.client.log_batch.call_args_list
    assert len(calls) == 2
    assert all({k: v for k, v in call.kwargs.items() if k == "synchronous"} == expected for call in calls)


def test_mlflow_synchronous_needs_mlflow_2_8(tmp_path: Path, fake_mlflow: Any) -> None:
    from fulgor.loggers import MLFlowLogger

    with (
        mock.patch("importlib.metadata.version", return_value="2.7.1"),
        pytest.raises(ModuleNotFoundError, match=r"`synchronous` requires mlflow>=2\.8\.0"),
    ):
        MLFlowLogger("exp", save_dir=str(tmp_path), synchronous=True)


@pytest.fixture
def fake_wandb(monkeypatch: pytest.MonkeyPatch) -> Any:
    wandb = mock.MagicMock(name="wandb")
    wandb.run = None
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    return wandb


@pytest.mark.parametrize(("method", "argument", "media"), [("log_audio", "audios", "Audio"),
                                                          ("log_video", "videos", "Video")])  # fmt: skip
def test_wandb_audio_and_video(fake_wandb: Any, method: str, argument: str, media: str) -> None:
    from fulgor.loggers import WandbLogger

    logger = WandbLogger()
    run = logger.experiment
    getattr(logger, method)("samples", ["a", "b"], caption=["one", "two"])
    build = getattr(fake_wandb, media)
    assert build.call_args_list == [mock.call("a", caption="one"), mock.call("b", caption="two")]
    assert run.log.call_args.args[0] == {"samples": [build.return_value, build.return_value]}
    with pytest.raises(TypeError, match=f"Expected a list as \"{argument}\", found <class 'str'>"):
        getattr(logger, method)("samples", "a")
    with pytest.raises(ValueError, match="Expected 2 items but only found 1 for caption"):
        getattr(logger, method)("samples", ["a", "b"], caption=["one"])


def test_wandb_download_artifact_through_the_run_or_the_api(fake_wandb: Any, tmp_path: Path) -> None:
    from fulgor.loggers import WandbLogger

    fake_wandb.run = mock.MagicMock(name="run")
    fake_wandb.run.use_artifact.return_value.download.return_value = str(tmp_path / "a")
    assert WandbLogger.download_artifact("team/proj/model:v1", tmp_path, "model") == str(tmp_path / "a")
    fake_wandb.run.use_artifact.assert_called_once_with("team/proj/model:v1")
    fake_wandb.run.use_artifact.return_value.download.assert_called_once_with(root=str(tmp_path))
    fake_wandb.run = None
    WandbLogger.download_artifact("team/proj/model:v1", None, "model")
    fake_wandb.Api.return_value.artifact.assert_called_once_with("team/proj/model:v1", type="model")
