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
        out = self.net(x) * self.scale
        self.seen["batch_device"] = x.device
        self.seen["module_device"] = self.device
        self.seen["out_dtype"] = out.dtype
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


def test_no_host_sync_per_step_without_loggers(tmp_path):
    """With self.log every step but nothing that reads values, the step loop must not synchronise."""
    model = Recorder()
    trainer = _trainer(tmp_path, num_sanity_val_steps=0)
    loader = _loader(512)
    torch.cuda.set_sync_debug_mode("error")
    try:
        trainer.fit(model, loader)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert trainer.global_step == 16


def test_syncs_with_default_features_are_per_log_interval(tmp_path):
    """Default logger + progress bar: syncs happen at log intervals and redraws, not at every step."""
    model = Recorder()
    trainer = _trainer(tmp_path, logger=True, enable_progress_bar=True, log_every_n_steps=50, num_sanity_val_steps=0)
    steps = 400
    loader = DataLoader(TensorDataset(torch.randn(steps * 8, 32), torch.randn(steps * 8, 1)), batch_size=8)
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.fit(model, loader)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
    assert trainer.global_step == steps
    assert len(syncs) < steps / 10, f"{len(syncs)} synchronising calls for {steps} steps"
