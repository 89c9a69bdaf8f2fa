"""LightningModule basics: device/dtype tracking, the trainer handle, freeze/unfreeze, example_input_array,
batch transfer (nested batches and the hook order/override rules), and what a step's return value reaches."""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections import namedtuple
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader

import fulgor
from helpers.boring import HookRecorder, XYDataset, trace_model_class

TraceModel = trace_model_class(fulgor)


def quiet_trainer(root: Path, **flags: Any) -> fulgor.Trainer:
    settings: dict[str, Any] = {
        "max_epochs": 1,
        "limit_train_batches": 2,
        "limit_val_batches": 2,
        "limit_test_batches": 2,
        "num_sanity_val_steps": 0,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "logger": False,
        "default_root_dir": root,
    }
    settings.update(flags)
    return fulgor.Trainer(**settings)


class WithBuffer(fulgor.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("seed", torch.tensor(7.1))


def test_device_and_dtype_follow_conversions() -> None:
    model = WithBuffer()
    assert (model.device, model.dtype) == (torch.device("cpu"), torch.float32)
    model.double()
    assert model.dtype == torch.float64 and model.seed.dtype == torch.float64  # noqa: PT018
    assert model.seed.item() == pytest.approx(7.1)
    model.half()
    assert model.dtype == torch.float16 and model.seed.dtype == torch.float16  # noqa: PT018
    model.to(torch.float32)
    assert model.dtype == torch.float32
    model.to("cpu")
    assert model.device == torch.device("cpu")


def test_trainer_reference_when_detached() -> None:
    with pytest.raises(RuntimeError, match=re.escape("WithBuffer is not attached to a `Trainer`.")):
        _ = WithBuffer().trainer


def test_current_epoch_and_global_step(tmp_path: Path) -> None:
    model = TraceModel()
    assert (model.current_epoch, model.global_step) == (0, 0)
    seen = []

    class Spy(fulgor.Callback):
        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            seen.append((pl_module.current_epoch, pl_module.global_step))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quiet_trainer(tmp_path, max_epochs=2, callbacks=[Spy()]).fit(model)
    assert seen == [(0, 1), (0, 2), (1, 3), (1, 4)]
    assert (model.current_epoch, model.global_step) == (2, 4)


def test_print(capsys: pytest.CaptureFixture[str]) -> None:
    WithBuffer().print("hello", 3)
    assert capsys.readouterr().out == "hello 3\n"


def test_freeze_unfreeze() -> None:
    model = TraceModel()
    model.freeze()
    assert not model.training and all(not p.requires_grad for p in model.parameters())  # noqa: PT018
    model.unfreeze()
    assert model.training and all(p.requires_grad for p in model.parameters())  # noqa: PT018


def test_example_input_array() -> None:
    model = TraceModel()
    assert model.example_input_array is None
    model.example_input_array = torch.zeros(1, 4)
    assert torch.equal(model.example_input_array, torch.zeros(1, 4))


Pair = namedtuple("Pair", ["a", "b"])


@dataclasses.dataclass
class Holder:
    x: torch.Tensor
    label: str


def test_transfer_batch_to_device_nested() -> None:
    model = WithBuffer().double()  # device cpu; the point is the structure is rebuilt with tensors moved
    batch = {"l": [torch.ones(1), (torch.zeros(2), "s")], "p": Pair(torch.ones(1), 3), "d": Holder(torch.ones(2), "y")}
    moved = model.transfer_batch_to_device(batch, torch.device("cpu"), 0)
    assert isinstance(moved["l"], list) and isinstance(moved["l"][1], tuple) and moved["l"][1][1] == "s"  # noqa: PT018
    assert isinstance(moved["p"], Pair) and moved["p"].b == 3  # noqa: PT018
    assert isinstance(moved["d"], Holder) and moved["d"].label == "y" and torch.equal(moved["d"].x, torch.ones(2))  # noqa: PT018
    assert moved["l"][0].device.type == "cpu"


def test_batch_transfer_hooks_order_and_values(tmp_path: Path) -> None:
    recorder = HookRecorder(fulgor)

    class Shifted(TraceModel):  # type: ignore[misc,valid-type]
        def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
            x, y = batch
            return x + 1, y

        def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
            x, y = batch
            return x * 0, y

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            assert torch.equal(batch[0], torch.zeros_like(batch[0]))
            return super().training_step(batch, batch_idx)

    model = recorder.module_class(Shifted)()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quiet_trainer(tmp_path, limit_train_batches=1, limit_val_batches=0).fit(model)
    transfer = [c for c in recorder.calls if "batch_transfer" in c or "transfer_batch" in c]
    assert transfer == [
        "M.on_before_batch_transfer(dl=0)",
        "M.transfer_batch_to_device(dl=0)",
        "M.on_after_batch_transfer(dl=0)",
    ]


def test_datamodule_batch_transfer_wins_with_warning(tmp_path: Path) -> None:
    used = []

    class Model(TraceModel):  # type: ignore[misc,valid-type]
        def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
            used.append("module")
            return batch

    class DataModule(fulgor.LightningDataModule):
        def train_dataloader(self) -> Any:
            return DataLoader(XYDataset(8), batch_size=4)

        def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
            used.append("datamodule")
            return batch

    with pytest.warns(
        UserWarning,
        match=re.escape(
            "You have overridden `on_before_batch_transfer` in both"
            " `LightningModule` and `LightningDataModule`. It will use the"
            " implementation from `LightningDataModule` instance."
        ),
    ):
        quiet_trainer(tmp_path, limit_val_batches=0).fit(Model(), datamodule=DataModule())
    assert used == ["datamodule", "datamodule"]


def test_load_from_checkpoint_on_instance() -> None:
    with pytest.raises(
        TypeError,
        match=re.escape(
            "The classmethod `WithBuffer.load_from_checkpoint` cannot be called"
            " on an instance. Please call it on the class type and make sure the"
            " return value is used."
        ),
    ):
        WithBuffer().load_from_checkpoint("x.ckpt")


class OutputSpy(fulgor.Callback):
    def __init__(self) -> None:
        self.train: list[Any] = []
        self.test: list[Any] = []

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.train.append(outputs)

    def on_test_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self.test.append(outputs)


def test_test_step_output_reaches_on_test_batch_end(tmp_path: Path) -> None:
    """The seed's question: test_step may return anything; it reaches `on_test_batch_end(outputs, ...)` as is."""

    class Model(TraceModel):  # type: ignore[misc,valid-type]
        def test_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            return {"preds": self(x), "target": y, "batch_idx": batch_idx, "note": "any object"}

    spy = OutputSpy()
    quiet_trainer(tmp_path, callbacks=[spy]).test(Model(), verbose=False)
    assert [o["batch_idx"] for o in spy.test] == [0, 1]
    assert spy.test[0]["note"] == "any object"
    assert spy.test[0]["preds"].shape == (4, 2)
    assert torch.equal(spy.test[1]["target"], XYDataset(16, seed=3).y[4:8])


def test_training_step_dict_reaches_on_train_batch_end(tmp_path: Path) -> None:
    class Model(TraceModel):  # type: ignore[misc,valid-type]
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            return {"loss": self._loss(batch), "extra": batch_idx * 10}

    spy = OutputSpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quiet_trainer(tmp_path, limit_val_batches=0, callbacks=[spy]).fit(Model())
    assert [o["extra"] for o in spy.train] == [0, 10]
    assert spy.train[0]["loss"].requires_grad is False, "the loss reaching callbacks is detached"


def test_training_step_returning_none_skips(tmp_path: Path) -> None:
    class Model(TraceModel):  # type: ignore[misc,valid-type]
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            return None if batch_idx == 0 else super().training_step(batch, batch_idx)

    model = Model()
    before = model.layer.weight.detach().clone()
    trainer = quiet_trainer(tmp_path, limit_train_batches=1, limit_val_batches=0)
    with pytest.warns(
        UserWarning, match=re.escape("`training_step` returned `None`. If this was on purpose, ignore this warning...")
    ):
        trainer.fit(model)
    assert torch.equal(model.layer.weight, before)
    assert trainer.global_step == 1, "Lightning still counts the (gradient-less) optimizer step"
