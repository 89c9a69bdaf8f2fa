"""CUDA paths of the core: device placement, 16-mixed with GradScaler, bf16-mixed, and no host syncs per step.

Marked `gpu`: skipped without CUDA (CI never has one); run on a GPU machine with `pytest -m gpu tests/gpu`."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import fulgor as pl

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


class Recorder(pl.LightningModule):
    """Records where batches and computations happen."""

    def __init__(self, log_every_step: bool = True) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 1))
        self.register_buffer("scale", torch.ones(1))
        self.log_every_step = log_every_step
        self.seen: dict[str, object] = {}

    def training_step(self, batch, batch_idx):
        x, y = batch
        hidden = self.net(x)
        out = hidden * self.scale  # fp16/bf16 times a float32 buffer promotes back to float32, autocast or not
        self.seen["batch_device"] = x.device
        self.seen["module_device"] = self.device
        self.seen["out_dtype"] = hidden.dtype
        loss = nn.functional.mse_loss(out.float(), y)
        if self.log_every_step:
            self.log("loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.net(x).float(), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _loader(n: int = 256) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(n, 32, generator=g), torch.randn(n, 1, generator=g)), batch_size=32)


def _trainer(tmp_path, **kwargs) -> pl.Trainer:
    defaults = {
        "accelerator": "gpu", "devices": 1, "max_epochs": 1, "default_root_dir": tmp_path,
        "enable_progress_bar": False, "enable_model_summary": False, "enable_checkpointing": False, "logger": False,
    }  # fmt: skip
    return pl.Trainer(**{**defaults, **kwargs})


def test_device_placement(tmp_path):
    model = Recorder()
    trainer = _trainer(tmp_path)
    trainer.fit(model, _loader(), _loader(64))
    assert model.seen["batch_device"].type == "cuda"
    assert model.seen["module_device"].type == "cuda"
    assert trainer.strategy.root_device == torch.device("cuda", 0)
    assert trainer.global_step == 8
    assert trainer.callback_metrics["val_loss"].device.type == "cpu"  # moved back at the end of the run
    assert next(model.parameters()).device.type == "cpu"  # as Lightning: the model returns to the CPU


def test_16_mixed_uses_grad_scaler(tmp_path):
    model = Recorder()
    trainer = _trainer(tmp_path, precision="16-mixed")
    assert trainer.precision == "16-mixed"
    assert trainer.precision_plugin.scaler is not None
    trainer.fit(model, _loader())
    assert model.seen["out_dtype"] == torch.float16
    assert trainer.global_step == 8
    assert torch.isfinite(trainer.callback_metrics["loss"])
    assert trainer.precision_plugin.state_dict()["scale"] > 0


def test_bf16_mixed_autocasts_to_bfloat16(tmp_path):
    model = Recorder()
    trainer = _trainer(tmp_path, precision="bf16-mixed")
    trainer.fit(model, _loader())
    assert model.seen["out_dtype"] == torch.bfloat16
    assert trainer.precision_plugin.scaler is None
    assert trainer.global_step == 8


class SyncDebug(pl.Callback):
    """Turns CUDA's sync debug mode on for the training batches only (setup copies weights to the GPU, which it
    would flag), in "error" mode (any sync raises) or "warn" mode (syncs are counted)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 1:  # after the first batch: lazy CUDA initialisations (cuBLAS handles...) are done
            torch.cuda.set_sync_debug_mode(self.mode)

    def on_train_end(self, trainer, pl_module):
        torch.cuda.set_sync_debug_mode(0)


def _gpu_loader(steps: int, batch_size: int = 8) -> DataLoader:
    # Data already on the GPU, so the only device work per step is the framework's and the model's.
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(
        torch.randn(steps * batch_size, 32, generator=g).cuda(), torch.randn(steps * batch_size, 1, generator=g).cuda()
    )
    return DataLoader(data, batch_size=batch_size)


def test_no_host_sync_per_step_without_loggers(tmp_path):
    """With self.log every step but nothing that reads values, the training steps must not synchronise."""
    model = Recorder()
    trainer = _trainer(tmp_path, num_sanity_val_steps=0, callbacks=[SyncDebug("error")])
    try:
        trainer.fit(model, _gpu_loader(64))
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert trainer.global_step == 64


def test_syncs_with_logger_and_checkpoint_are_per_log_interval(tmp_path):
    """Default logger and checkpointing, self.log every step: syncs happen when a logger reads values
    (every `log_every_n_steps`), not at every step."""
    model = Recorder()
    steps, every = 400, 50
    trainer = _trainer(
        tmp_path, logger=True, enable_checkpointing=True, log_every_n_steps=every, num_sanity_val_steps=0,
        callbacks=[SyncDebug("warn")],
    )  # fmt: skip
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.fit(model, _gpu_loader(steps))
    finally:
        torch.cuda.set_sync_debug_mode(0)
    syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
    assert trainer.global_step == steps
    # One read per logged value per logging step (8 here), plus the epoch-end log and checkpoint of the last batch.
    assert len(syncs) <= steps // every + 8, f"{len(syncs)} synchronising calls for {steps} steps"
