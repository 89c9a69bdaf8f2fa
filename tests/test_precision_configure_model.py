"""Layers built in `configure_model` get the "*-true" precision's dtype (and the root device), and a strategy's
`tensor_init_context(empty_init=True)` skips `torch.nn.init`, as in Lightning; the same runs under the real
pytorch-lightning 2.6.6 when it is installed."""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import fulgor


def _libs() -> list[Any]:
    oracle = pytest.param("pytorch_lightning", marks=pytest.mark.oracle)
    return [pytest.param("fulgor"), oracle]


def _lib(name: str) -> ModuleType:
    return fulgor if name == "fulgor" else pytest.importorskip(name)


def _model_class(lib: ModuleType) -> type:
    class Built(lib.LightningModule):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            self.seen: dict[str, Any] = {}
            self.register_buffer("complex_before", torch.complex(torch.rand(4), torch.rand(4)), persistent=False)

        def configure_model(self) -> None:
            self.layer = torch.nn.Linear(2, 3)
            if torch.get_default_dtype() != torch.bfloat16:  # torch has no bfloat16 complex type
                self.register_buffer("complex_inside", torch.complex(torch.rand(4), torch.rand(4)), persistent=False)
            self.seen["configure_model"] = (self.layer.weight.dtype, self.layer.weight.device.type)

        def on_test_start(self) -> None:
            self.seen["hook"] = torch.tensor([1.5]).dtype  # hooks run outside the precision's context

        def test_step(self, batch: Any, batch_idx: int) -> None:
            self.seen["step_new_tensor"] = torch.tensor([1.5]).dtype
            self.seen["step_output"] = self.layer(batch[0]).dtype

    return Built


def _run(lib: ModuleType, precision: str) -> dict[str, Any]:
    model = _model_class(lib)()
    trainer = lib.Trainer(barebones=True, precision=precision, accelerator="cpu", devices=1, limit_test_batches=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.test(model, DataLoader(TensorDataset(torch.randn(2, 2)), batch_size=2))
    return {
        **model.seen,
        "weight_after": model.layer.weight.dtype,
        "complex_before": model.complex_before.dtype,
        "complex_inside": model.complex_inside.dtype if hasattr(model, "complex_inside") else None,
        "default_dtype_after": torch.get_default_dtype(),
    }


@pytest.mark.parametrize("lib_name", _libs())
@pytest.mark.parametrize(
    ("precision", "dtype", "complex_dtype", "complex_before"),
    [
        # `module.to(half dtype)` casts complex buffers too (dropping the imaginary part); `module.double()` does not.
        ("bf16-true", torch.bfloat16, None, torch.bfloat16),
        ("16-true", torch.float16, torch.float16, torch.float16),
        ("64-true", torch.float64, torch.complex128, torch.complex64),
        ("32-true", torch.float32, torch.complex64, torch.complex64),
    ],
)
def test_configure_model_layers_get_the_precision_dtype(
    lib_name: str, precision: str, dtype: torch.dtype, complex_dtype: torch.dtype | None, complex_before: torch.dtype
) -> None:
    seen = _run(_lib(lib_name), precision)
    assert seen["configure_model"] == (dtype, "cpu")
    assert seen["weight_after"] == dtype
    # Under "64-true" only a complex buffer created under the precision's context is complex128.
    assert seen["complex_before"] == complex_before
    assert seen["complex_inside"] == complex_dtype
    assert seen["step_new_tensor"] == seen["step_output"] == dtype
    assert seen["hook"] == torch.float32
    assert seen["default_dtype_after"] == torch.float32


@pytest.mark.oracle
@pytest.mark.parametrize("precision", ["bf16-true", "16-true", "64-true"])
def test_same_dtypes_as_lightning(precision: str) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    assert _run(fulgor, precision) == _run(pl, precision)


def _plugin(lib_name: str, precision: str) -> Any:
    plugins = importlib.import_module("fulgor.precision") if lib_name == "fulgor" else _lib(f"{lib_name}.plugins")
    return plugins.DoublePrecision() if precision == "64-true" else plugins.HalfPrecision(precision)


@pytest.mark.parametrize("lib_name", _libs())
@pytest.mark.parametrize("empty_init", [None, False, True])
@pytest.mark.parametrize(("precision", "dtype"), [("64-true", torch.float64), ("16-true", torch.float16)])
def test_strategy_tensor_init_context(
    lib_name: str, empty_init: bool | None, precision: str, dtype: torch.dtype
) -> None:
    """The strategy's own context: the precision's dtype, and with `empty_init=True` no `torch.nn.init` call (the
    random generator is left untouched)."""
    strategy = _lib(lib_name).strategies.SingleDeviceStrategy(
        device="cpu", precision_plugin=_plugin(lib_name, precision)
    )
    torch.manual_seed(0)
    with strategy.tensor_init_context(empty_init=empty_init):
        layer = torch.nn.Linear(3, 3)
    next_draw = torch.rand(1)
    torch.manual_seed(0)
    assert layer.weight.dtype == layer.bias.dtype == dtype
    assert torch.equal(next_draw, torch.rand(1)) is bool(empty_init)
