"""Exporting a LightningModule to ONNX (`LightningModule.to_onnx`) and TensorRT (`LightningModule.to_tensorrt`): the
example input goes through the module's batch-transfer hooks, the module runs in eval mode, and its training mode
(and, for TensorRT, its device) is restored after."""

from __future__ import annotations

import contextlib
import copy
import importlib.util
from pathlib import Path
from typing import Any

import torch

from fulgor.errors import MisconfigurationException
from fulgor.torchscript import jit_scripting

__all__ = ["to_onnx", "to_tensorrt"]


def _example_input(module: Any, input_sample: Any, target: str) -> Any:
    if input_sample is None:
        if module.example_input_array is None:
            raise ValueError(
                f"Could not export to {target} since neither `input_sample` nor"
                " `model.example_input_array` attribute is set."
            )
        input_sample = module.example_input_array
    batch = module.on_before_batch_transfer(input_sample, 0)
    batch = module.transfer_batch_to_device(batch, module.device, 0)
    return module.on_after_batch_transfer(batch, 0)


@torch.no_grad()
def to_onnx(self: Any, file_path: Any = None, input_sample: Any = None, **kwargs: Any) -> Any:
    """Save the model in ONNX format with `torch.onnx.export`.

    Args:
        file_path: where to write the model (a path or a binary file object); None writes nothing.
        input_sample: the input to trace with; default the module's `example_input_array`.
        **kwargs: passed to `torch.onnx.export` (e.g. `dynamo=False` for the TorchScript-based exporter,
            `export_params`, `dynamic_axes`).

    Returns:
        What `torch.onnx.export` returns: an `ONNXProgram` with the dynamo exporter (torch's default), else None.

    Raises:
        ModuleNotFoundError: `onnx` is not installed (or `onnxscript`, which the dynamo exporter needs).
        ValueError: there is neither an `input_sample` nor an `example_input_array`.
    """
    name = type(self).__name__
    if importlib.util.find_spec("onnx") is None:
        raise ModuleNotFoundError(f"`{name}.to_onnx()` requires `onnx` to be installed. Install it: pip install onnx")
    if kwargs.get("dynamo", False) and importlib.util.find_spec("onnxscript") is None:
        raise ModuleNotFoundError(
            f"`{name}.to_onnx(dynamo=True)` requires `onnxscript` and `torch>=2.5.0` to be installed."
        )
    training = self.training
    sample = _example_input(self, input_sample, "ONNX")
    path = str(file_path) if isinstance(file_path, Path) else file_path
    result = torch.onnx.export(self, sample, path, **kwargs)
    self.train(training)
    return result


@torch.no_grad()
def to_tensorrt(
    self: Any,
    file_path: Any = None,
    input_sample: Any = None,
    ir: str = "default",
    output_format: str = "exported_program",
    retrace: bool = False,
    default_device: str | torch.device = "cuda",
    **compile_kwargs: Any,
) -> Any:
    """Compile the model with TensorRT (`torch_tensorrt.compile`) on a CUDA device; save it when `file_path` is given.

    Args:
        file_path: where to save the compiled model; None writes nothing.
        input_sample: the compile input; default the module's `example_input_array`.
        ir: TensorRT's IR mode: "default", "dynamo" or "ts" (TorchScript; saves only as "torchscript").
        output_format: "exported_program" or "torchscript", for the saved file.
        retrace: passed to `torch_tensorrt.save`.
        default_device: the CUDA device to compile on when the module is not on one (it moves back after).
        **compile_kwargs: passed to `torch_tensorrt.compile`.

    Raises:
        ModuleNotFoundError: `torch_tensorrt` is not installed.
        MisconfigurationException: no CUDA device to compile on.
        ValueError: no input to compile with, or `ir="ts"` with another `output_format` than "torchscript".
    """
    if importlib.util.find_spec("torch_tensorrt") is None:
        raise ModuleNotFoundError(f"`{type(self).__name__}.to_tensorrt` requires `torch_tensorrt` to be installed. ")
    training, device = self.training, self.device
    if device.type != "cuda":
        target = torch.device(default_device)
        if not torch.cuda.is_available() or target.type != "cuda":
            raise MisconfigurationException(
                f"TensorRT only supports CUDA devices. The current device is {device}."
                " Please set the `default_device` argument to a CUDA device."
            )
        self.to(target)
    if ir == "ts" and file_path is not None and output_format != "torchscript":
        raise ValueError(
            "TensorRT with IR mode 'ts' only supports output format 'torchscript'."
            f" The current output format is {output_format}."
        )
    sample = _example_input(self, input_sample, "TensorRT")
    sample = copy.deepcopy((sample,) if isinstance(sample, torch.Tensor) else sample)
    import torch_tensorrt  # optional, large: imported only here

    with jit_scripting(_scripting_base(self)) if ir == "ts" else contextlib.nullcontext():
        compiled = torch_tensorrt.compile(module=self.eval(), ir=ir, inputs=sample, **compile_kwargs)
    self.train(training)
    self.to(device)
    if file_path is not None:
        if ir == "ts":
            torch.jit.save(compiled, file_path)
        else:
            torch_tensorrt.save(compiled, file_path, inputs=sample, output_format=output_format, retrace=retrace)
    return compiled


def _scripting_base(module: Any) -> type:
    """The class whose `_jit_is_scripting` switch the module's properties read (LightningModule)."""
    return next(cls for cls in type(module).__mro__ if "_jit_is_scripting" in vars(cls))
