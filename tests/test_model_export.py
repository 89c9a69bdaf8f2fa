"""`LightningModule.to_onnx` and `to_tensorrt`: the exported graph, the input through the batch-transfer hooks, the
training mode restored, and the errors; differential against pytorch-lightning 2.6.6 (oracle) where it runs here."""

from __future__ import annotations

import io
from importlib import import_module
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from fulgor.errors import MisconfigurationException

onnx = pytest.importorskip("onnx")


def _model(lib: ModuleType) -> Any:
    boring = import_module(f"{lib.__name__}.demos.boring_classes")

    class Scaled(boring.BoringModel):  # type: ignore[misc,name-defined]
        def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
            return batch * 2  # seen by the export: the graph is traced on the transformed input

    torch.manual_seed(0)
    model = Scaled()
    model.example_input_array = torch.ones(3, 32)
    return model


def test_to_onnx_writes_the_graph_and_keeps_training_mode(lib: ModuleType, tmp_path: Path) -> None:
    model = _model(lib)
    path = tmp_path / "model.onnx"
    assert model.to_onnx(path, dynamo=False) is None  # a Path is accepted
    assert model.training
    graph = onnx.load(str(path)).graph
    assert [node.op_type for node in graph.node] == ["Gemm"]
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == [3, 32]
    buffer = io.BytesIO()
    model.eval().to_onnx(buffer, input_sample=torch.zeros(5, 32), dynamo=False, export_params=False)
    assert not model.training  # the mode it had
    assert 0 < len(buffer.getvalue()) < path.stat().st_size  # no weights inside


def test_to_onnx_dynamo_returns_the_program(lib: ModuleType, tmp_path: Path) -> None:
    pytest.importorskip("onnxscript")
    model = _model(lib).eval()
    program = model.to_onnx(tmp_path / "model.onnx")
    assert type(program).__name__ == "ONNXProgram"
    graph = onnx.load(str(tmp_path / "model.onnx")).graph
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == [3, 32]
    assert [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim] == [3, 2]


def test_export_errors(lib: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    boring = import_module(f"{lib.__name__}.demos.boring_classes")
    with pytest.raises(ValueError, match=r"neither `input_sample` nor `model\.example_input_array`"):
        boring.BoringModel().to_onnx("unused.onnx")
    with pytest.raises(ModuleNotFoundError, match=r"`BoringModel.to_tensorrt` requires `torch_tensorrt`"):
        boring.BoringModel().to_tensorrt("unused.trt")


def test_missing_onnx_and_cpu_tensorrt_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    from fulgor import model_export
    from fulgor.demos.boring_classes import BoringModel

    real = model_export.importlib.util.find_spec
    monkeypatch.setattr(model_export.importlib.util, "find_spec", lambda name: None if name == "onnx" else real(name))
    with pytest.raises(ModuleNotFoundError, match=r"`BoringModel.to_onnx\(\)` requires `onnx` to be installed"):
        BoringModel().to_onnx("unused.onnx")
    monkeypatch.setattr(model_export.importlib.util, "find_spec", lambda name: object())  # "torch_tensorrt is here"
    with pytest.raises(MisconfigurationException, match=r"TensorRT only supports CUDA devices\. The current device is"):
        BoringModel().to_tensorrt("unused.trt", default_device="cpu")
