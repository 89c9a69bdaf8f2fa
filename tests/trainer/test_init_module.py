"""`Trainer.init_module(empty_init=None)`: tensors created inside get the Trainer's device and its precision's dtype,
and with `empty_init=True` skip their initialisation; compared with pytorch-lightning 2.6.6."""

from __future__ import annotations

import warnings
from types import ModuleType

import pytest
import torch

import fulgor

PRECISIONS = ["32-true", "64-true", "bf16-true", "16-true", "bf16-mixed"]


def _created_under(lib: ModuleType, precision: str) -> tuple[torch.dtype, str, torch.dtype]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = lib.Trainer(accelerator="cpu", precision=precision, logger=False, enable_progress_bar=False)
    with trainer.init_module():
        layer = torch.nn.Linear(3, 2)
        inside = torch.get_default_dtype()
    return layer.weight.dtype, layer.weight.device.type, inside


@pytest.mark.parametrize(
    ("precision", "dtype"),
    [("32-true", torch.float32), ("64-true", torch.float64), ("bf16-true", torch.bfloat16),
     ("16-true", torch.float16), ("bf16-mixed", torch.float32)],
)  # fmt: skip
def test_init_module_creates_weights_in_the_precisions_dtype(precision: str, dtype: torch.dtype) -> None:
    before = torch.get_default_dtype()
    weight_dtype, device, inside = _created_under(fulgor, precision)
    assert (weight_dtype, device, inside) == (dtype, "cpu", dtype)
    assert torch.get_default_dtype() == before  # restored on exit


@pytest.mark.oracle
@pytest.mark.parametrize("precision", PRECISIONS)
def test_init_module_matches_lightning(precision: str) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    assert _created_under(fulgor, precision) == _created_under(pl, precision)


def test_empty_init_skips_initialisation_and_default_keeps_it() -> None:
    trainer = fulgor.Trainer(logger=False, enable_progress_bar=False)
    torch.manual_seed(0)
    expected = torch.nn.Linear(4, 4).weight.detach().clone()
    for empty_init, initialised in ((None, True), (False, True), (True, False)):
        torch.manual_seed(0)
        with trainer.init_module(empty_init=empty_init):
            layer = torch.nn.Linear(4, 4)
        assert torch.equal(layer.weight, expected) is initialised, empty_init
    # Outside the context, `torch.nn.init` works again.
    tensor = torch.zeros(3)
    torch.nn.init.ones_(tensor)
    assert tensor.tolist() == [1.0, 1.0, 1.0]


def test_init_module_restores_the_dtype_after_an_error() -> None:
    trainer = fulgor.Trainer(precision="64-true", logger=False, enable_progress_bar=False)
    with pytest.raises(RuntimeError, match="boom"), trainer.init_module():
        raise RuntimeError("boom")
    assert torch.get_default_dtype() == torch.float32


def test_a_model_built_under_init_module_trains(tmp_path: object) -> None:
    from helpers.boring import boring_classes

    trainer = fulgor.Trainer(
        precision="64-true", max_epochs=1, limit_train_batches=2, limit_val_batches=0, logger=False,
        enable_progress_bar=False, enable_checkpointing=False, default_root_dir=str(tmp_path),
    )  # fmt: skip

    class Model(boring_classes(fulgor).BoringModel):  # type: ignore[misc,name-defined]
        def training_step(self, batch: torch.Tensor, batch_idx: int) -> object:
            return super().training_step(batch.to(self.dtype), batch_idx)

    with trainer.init_module():
        model = Model()
    assert model.layer.weight.dtype == torch.float64
    trainer.fit(model)
    assert trainer.global_step == 2
