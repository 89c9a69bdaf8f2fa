"""LambdaCallback (hooks from keyword functions) and BasePredictionWriter (batch / epoch writing of predictions)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import fulgor
from fulgor.callbacks.lambda_function import HOOK_NAMES, LambdaCallback
from fulgor.callbacks.prediction_writer import BasePredictionWriter
from fulgor.errors import MisconfigurationException


def model_class(lib: Any) -> type:
    class Model(lib.LightningModule):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)
            with torch.no_grad():
                self.layer.weight.fill_(1.0)
                self.layer.bias.zero_()

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            return self.layer(batch[0]).sum()

        def predict_step(self, batch: Any, batch_idx: int) -> Any:
            return self.layer(batch[0])

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.0)

    return Model


def loader() -> DataLoader[Any]:
    return DataLoader(TensorDataset(torch.arange(10.0).reshape(5, 2)), batch_size=2)


def trainer(lib: Any, root: Path, callbacks: list[Any], **kw: Any) -> Any:
    return lib.Trainer(default_root_dir=str(root), callbacks=callbacks, logger=False, enable_progress_bar=False,
                       enable_model_summary=False, enable_checkpointing=False, **kw)  # fmt: skip


def test_lambda_callback_calls_the_functions_it_was_given(tmp_path: Path) -> None:
    calls: list[str] = []
    callback = LambdaCallback(
        on_train_epoch_start=lambda t, m: calls.append(f"epoch_start {t.current_epoch}"),
        on_train_batch_end=lambda t, m, out, batch, idx: calls.append(f"batch_end {idx} {float(out['loss']):.1f}"),
        on_fit_end=lambda t, m: calls.append("fit_end"),
        setup=None,
    )
    trainer(fulgor, tmp_path, [callback], max_epochs=2, limit_train_batches=2).fit(model_class(fulgor)(), loader())
    assert calls == ["epoch_start 0", "batch_end 0 6.0", "batch_end 1 22.0", "epoch_start 1", "batch_end 0 6.0",
                     "batch_end 1 22.0", "fit_end"]  # fmt: skip


def test_lambda_callback_accepts_lightnings_hook_names_only() -> None:
    pl = pytest.importorskip("pytorch_lightning")
    import inspect

    lightning_names = set(inspect.signature(pl.callbacks.LambdaCallback.__init__).parameters) - {"self"}
    assert lightning_names <= set(HOOK_NAMES)
    with pytest.raises(TypeError, match="unexpected keyword argument 'on_epoch_end': it is not a callback hook"):
        LambdaCallback(on_epoch_end=print)


class Writer(BasePredictionWriter):
    def __init__(self, write_interval: str) -> None:
        super().__init__(write_interval)
        self.batches: list[tuple[list[float], Any, int, int]] = []
        self.epochs: list[tuple[Any, Any]] = []

    def write_on_batch_end(self, trainer: Any, pl_module: Any, prediction: Any, batch_indices: Any, batch: Any,
                           batch_idx: int, dataloader_idx: int) -> None:  # fmt: skip
        self.batches.append((prediction.flatten().tolist(), batch_indices, batch_idx, dataloader_idx))

    def write_on_epoch_end(self, trainer: Any, pl_module: Any, predictions: Any, batch_indices: Any) -> None:
        self.epochs.append(([p.flatten().tolist() for p in predictions], batch_indices))


EXPECTED_BATCHES = [([1.0, 5.0], [0, 1], 0, 0), ([9.0, 13.0], [2, 3], 1, 0), ([17.0], [4], 2, 0)]
EXPECTED_EPOCH = ([[1.0, 5.0], [9.0, 13.0], [17.0]], [[[0, 1], [2, 3], [4]]])


@pytest.mark.parametrize("interval", ["batch", "epoch", "batch_and_epoch"])
def test_prediction_writer(tmp_path: Path, interval: str) -> None:
    writer = Writer(interval)
    result = trainer(fulgor, tmp_path, [writer]).predict(model_class(fulgor)(), loader(), return_predictions=False)
    assert result is None
    assert writer.batches == (EXPECTED_BATCHES if interval != "epoch" else [])
    assert writer.epochs == ([EXPECTED_EPOCH] if interval != "batch" else [])


@pytest.mark.oracle
@pytest.mark.parametrize("interval", ["batch", "epoch", "batch_and_epoch"])
def test_prediction_writer_matches_lightning(tmp_path: Path, interval: str) -> None:
    pl = pytest.importorskip("pytorch_lightning")

    class PLWriter(pl.callbacks.BasePredictionWriter):  # type: ignore[misc, name-defined]
        write_on_batch_end = Writer.write_on_batch_end
        write_on_epoch_end = Writer.write_on_epoch_end

        def __init__(self, write_interval: str) -> None:
            super().__init__(write_interval)
            self.batches: list[Any] = []
            self.epochs: list[Any] = []

    pl_writer = PLWriter(interval)
    trainer(pl, tmp_path / "pl", [pl_writer]).predict(model_class(pl)(), loader(), return_predictions=False)
    assert (pl_writer.batches, pl_writer.epochs) == (
        EXPECTED_BATCHES if interval != "epoch" else [],
        [EXPECTED_EPOCH] if interval != "batch" else [],
    )


def test_prediction_writer_reads_the_predict_loop_record() -> None:
    """Without the Trainer: the writer passes on what `trainer.predict_loop` holds."""
    writer = Writer("batch_and_epoch")
    loop = SimpleNamespace(current_batch_indices=[7], predictions=[torch.tensor([1.0])], epoch_batch_indices=[[[7]]])
    fake = SimpleNamespace(predict_loop=loop)
    writer.on_predict_batch_end(fake, None, torch.tensor([2.0]), None, 0)  # type: ignore[arg-type]
    writer.on_predict_epoch_end(fake, None)  # type: ignore[arg-type]
    assert writer.batches == [([2.0], [7], 0, 0)]
    assert writer.epochs == [([[1.0]], [[[7]]])]


def test_prediction_writer_bad_interval() -> None:
    with pytest.raises(MisconfigurationException, match=r"`write_interval` should be one of \['batch', 'epoch',"):
        Writer("step")
