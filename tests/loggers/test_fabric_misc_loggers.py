"""Fabric's CSV and TensorBoard loggers (`root_dir` is the folder given; `log_dir` is `root_dir/name/version`, with
`~` and `$VARS` expanded for TensorBoard) and graph logging: Fabric's logger always draws the graph, of the module
inside a Fabric wrapper; the Trainer's draws a LightningModule that is not attached to a Trainer. Differential
against the real lightning_fabric where it is installed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import torch
from torch import nn

from fulgor.demos import BoringModel
from fulgor.fabric_loggers import CSVLogger, TensorBoardLogger
from fulgor.loggers import TensorBoardLogger as TrainerTensorBoardLogger


def _dirs(logger: object) -> tuple[str, str, str]:
    return (logger.root_dir, logger.log_dir, logger.name)  # type: ignore[attr-defined]


def test_tensorboard_root_dir_is_the_folder_given() -> None:
    logger = TensorBoardLogger("~/tmp", name="name", version="version", sub_dir="sub_dir")
    assert logger.root_dir == "~/tmp"
    assert logger.log_dir == os.path.join(os.path.expanduser("~/tmp"), "name", "version", "sub_dir")


def test_tensorboard_expands_variables_in_log_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FULGOR_H4_DIR", "somewhere")
    logger = TensorBoardLogger("$FULGOR_H4_DIR/tmp", name="n", version=3)
    assert logger.root_dir == "$FULGOR_H4_DIR/tmp"
    assert logger.log_dir == os.path.join("somewhere", "tmp", "n", "version_3")


def test_csv_root_dir_and_versions(tmp_path: Path) -> None:
    (tmp_path / "exp" / "version_0").mkdir(parents=True)
    (tmp_path / "exp" / "version_4").mkdir()
    logger = CSVLogger(tmp_path, name="exp")
    assert logger.root_dir == str(tmp_path)
    assert logger.version == 5
    assert logger.log_dir == os.path.join(str(tmp_path), "exp", "version_5")
    logger.log_metrics({"a": 1.0})
    logger.save()
    assert (tmp_path / "exp" / "version_5" / "metrics.csv").read_text().splitlines() == ["a,step", "1.0,0"]


@pytest.mark.parametrize("name", [None, ""])
def test_csv_without_name(tmp_path: Path, name: str | None) -> None:
    logger = CSVLogger(root_dir=tmp_path, name=name)
    logger.log_metrics({"a": 1})
    logger.save()
    assert os.path.normpath(logger.root_dir) == str(tmp_path)
    assert os.listdir(tmp_path / "version_0") == ["metrics.csv"]


@pytest.mark.oracle
def test_dirs_match_lightning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loggers = pytest.importorskip("lightning_fabric.loggers")
    monkeypatch.setenv("FULGOR_H4_DIR", "elsewhere")
    (tmp_path / "lightning_logs" / "version_2").mkdir(parents=True)
    cases: list[tuple[tuple[str], dict[str, Any]]] = [
        ((str(tmp_path),), {}),
        (("~/tmp",), {"name": "name", "version": "v"}),
        (("$FULGOR_H4_DIR/x",), {"name": None, "version": 1}),
    ]
    for args, kwargs in cases:
        assert _dirs(CSVLogger(*args, **kwargs)) == _dirs(loggers.CSVLogger(*args, **kwargs))
        tb_kwargs = {**kwargs, "sub_dir": "sub"}
        assert _dirs(TensorBoardLogger(*args, **tb_kwargs)) == _dirs(loggers.TensorBoardLogger(*args, **tb_kwargs))


def _mock_writer(logger: TensorBoardLogger | TrainerTensorBoardLogger) -> mock.Mock:
    writer = mock.Mock()
    logger._experiment = writer  # the writer tensorboard would open; the calls are what matters here
    return writer


def test_fabric_tensorboard_graph_of_a_plain_module(tmp_path: Path) -> None:
    model = nn.Linear(32, 2)
    logger = TensorBoardLogger(tmp_path)
    writer = _mock_writer(logger)
    with pytest.warns(UserWarning, match="Could not log computational graph"):
        logger.log_graph(model)  # no input and no `example_input_array`
    writer.add_graph.assert_not_called()
    x = torch.rand(2, 32)
    logger.log_graph(model, x)
    writer.add_graph.assert_called_once_with(model, x)


def test_fabric_tensorboard_graph_of_a_wrapped_module(tmp_path: Path) -> None:
    from fulgor.fabric import Fabric

    fabric = Fabric(accelerator="cpu", devices=1)
    model = nn.Linear(32, 2)
    wrapped = fabric.setup_module(model)
    logger = TensorBoardLogger(tmp_path)
    writer = _mock_writer(logger)
    x = torch.rand(2, 32)
    logger.log_graph(wrapped, x)
    writer.add_graph.assert_called_once_with(model, x)


def test_a_submodule_named_module_is_not_unwrapped(tmp_path: Path) -> None:
    class Holder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.module = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> Any:
            return self.module(x) * 2

    model = Holder()
    logger = TensorBoardLogger(tmp_path)
    writer = _mock_writer(logger)
    x = torch.rand(1, 4)
    logger.log_graph(model, x)
    writer.add_graph.assert_called_once_with(model, x)


def test_trainer_tensorboard_graph_of_a_detached_lightning_module(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    model = BoringModel()
    model.example_input_array = None
    logger = TrainerTensorBoardLogger(tmp_path, log_graph=True)
    logger.log_graph(model, torch.rand(2, 32))  # tracing reads `model.trainer`: must not raise
    logger.finalize("success")
    events = list((tmp_path / "lightning_logs" / "version_0").glob("events.out.tfevents.*"))
    assert len(events) == 1
    assert events[0].stat().st_size > 200  # more than the file header: the graph is in it
    assert BoringModel._jit_is_scripting is False
