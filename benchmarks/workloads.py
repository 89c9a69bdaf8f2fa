"""The benchmark workloads W1-W6: for each, a raw PyTorch loop and a LightningModule run by fulgor or
pytorch-lightning, doing the same math on the same batches; each run returns its timings and final weights.

Imported by run.py (in-process runs) and child.py (fresh-process runs); it never imports a framework itself.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

W1_BATCH, W3_BATCH = 32, 64
W3_TRAIN, W3_VAL = 60_000, 10_000


@dataclass
class Result:
    """One timed run: wall and process-CPU seconds of the timed region, and what the correctness check compares."""

    wall: float
    cpu: float
    weights: list[Tensor] = field(repr=False)
    loss: float  # last training loss (W1/W2) or the epoch's validation loss (W3)


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    """Yield a list that receives [wall, cpu] seconds of the block (process CPU time is what the shared machine
    disturbs least: another tenant's work delays us but is not charged to us)."""
    out: list[float] = []
    wall, cpu = time.perf_counter(), time.process_time()
    yield out
    out.extend([time.perf_counter() - wall, time.process_time() - cpu])


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Send fd 1 and 2 to /dev/null: progress bars and summaries still render (their cost counts), unseen."""
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


# ----------------------------------------------------------------------------------------------- W1 / W2: tiny MLP


def w1_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1))


def w1_loader(steps: int) -> DataLoader[tuple[Tensor, ...]]:
    g = torch.Generator().manual_seed(1)
    n = steps * W1_BATCH
    return DataLoader(TensorDataset(torch.randn(n, 32, generator=g), torch.randn(n, 1, generator=g)), W1_BATCH)


def raw_w1(steps: int) -> Result:
    """The loop a user writes by hand: forward, MSE, zero_grad, backward, SGD step."""
    net, loader = w1_net(), w1_loader(steps)
    with timed() as t:
        opt = torch.optim.SGD(net.parameters(), lr=0.01)
        for x, y in loader:
            loss = F.mse_loss(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return Result(t[0], t[1], _weights(net), float(loss.detach()))


def w1_module(pl: ModuleType, log: bool) -> Any:
    """W1's MLP as a LightningModule of framework `pl`; with `log`, `self.log("train_loss", loss)` every step."""

    class TinyMLP(pl.LightningModule):  # type: ignore[name-defined, misc]
        def __init__(self) -> None:
            super().__init__()
            self.net = w1_net()
            self.last = [torch.zeros(())]  # a list: assigning a module attribute per step would cost a few µs

        def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
            x, y = batch
            loss = F.mse_loss(self.net(x), y)
            if log:
                self.log("train_loss", loss)
            self.last[0] = loss
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    return TinyMLP()


MINIMAL = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False}


def framework_w1(pl: ModuleType, steps: int, defaults: bool) -> Result:
    """W1 (`defaults=False`: the minimal config) or W2 (`defaults=True`: every default feature, self.log per step)."""
    model, loader = w1_module(pl, log=defaults), w1_loader(steps)
    flags = {} if defaults else MINIMAL
    with tempfile.TemporaryDirectory() as root, quiet(), timed() as t:
        trainer = pl.Trainer(max_epochs=1, default_root_dir=root, **flags)
        trainer.fit(model, loader)
    return Result(t[0], t[1], _weights(model.net), float(model.last[0].detach()))


# ------------------------------------------------------------------------------------------- W3: seed autoencoder


def w3_nets() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Linear(28 * 28, 64), nn.ReLU(), nn.Linear(64, 3))
    decoder = nn.Sequential(nn.Linear(3, 64), nn.ReLU(), nn.Linear(64, 28 * 28))
    return encoder, decoder


def w3_loaders(n_train: int = W3_TRAIN, n_val: int = W3_VAL) -> tuple[DataLoader[Any], DataLoader[Any]]:
    g = torch.Generator().manual_seed(1)
    train = TensorDataset(torch.rand(n_train, 784, generator=g), torch.zeros(n_train))
    val = TensorDataset(torch.rand(n_val, 784, generator=g), torch.zeros(n_val))
    return DataLoader(train, batch_size=W3_BATCH), DataLoader(val, batch_size=W3_BATCH)


def raw_w3(n_train: int = W3_TRAIN, n_val: int = W3_VAL) -> Result:
    """One epoch of Adam on the autoencoder, then the batch-size-weighted mean validation loss (as `self.log`)."""
    (encoder, decoder), (train, val) = w3_nets(), w3_loaders(n_train, n_val)
    with timed() as t:
        opt = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=1e-3)
        for x, _ in train:
            loss = F.mse_loss(decoder(encoder(x)), x)
            opt.zero_grad()
            loss.backward()
            opt.step()
        total, count = torch.zeros(()), 0
        with torch.no_grad():
            for x, _ in val:
                total += F.mse_loss(decoder(encoder(x)), x) * x.size(0)
                count += x.size(0)
        val_loss = float(total / count)
    return Result(t[0], t[1], _weights(encoder) + _weights(decoder), val_loss)


def w3_module(pl: ModuleType) -> Any:
    """The seed notes' LitAutoEncoder, logging train_loss every step and val_loss per epoch."""

    class LitAutoEncoder(pl.LightningModule):  # type: ignore[name-defined, misc]
        def __init__(self) -> None:
            super().__init__()
            self.encoder, self.decoder = w3_nets()

        def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
            x, _ = batch
            loss = F.mse_loss(self.decoder(self.encoder(x)), x)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
            x, _ = batch
            self.log("val_loss", F.mse_loss(self.decoder(self.encoder(x)), x))

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    return LitAutoEncoder()


def framework_w3(pl: ModuleType, n_train: int = W3_TRAIN, n_val: int = W3_VAL) -> Result:
    """W3 with every default feature on (sanity check, summary, progress bar, CSV logger, checkpoint)."""
    model, (train, val) = w3_module(pl), w3_loaders(n_train, n_val)
    with tempfile.TemporaryDirectory() as root, quiet(), timed() as t:
        trainer = pl.Trainer(max_epochs=1, default_root_dir=root)
        trainer.fit(model, train, val)
    val_loss = float(trainer.callback_metrics["val_loss"])
    return Result(t[0], t[1], _weights(model.encoder) + _weights(model.decoder), val_loss)


# ------------------------------------------------------------------------------------------------ correctness check


def _weights(*modules: nn.Module) -> list[Tensor]:
    return [p.detach().clone() for m in modules for p in m.parameters()]


def check(reference: Result, other: Result, loss_rtol: float) -> str:
    """Assert `other` trained to the same weights and loss as the raw loop; return the check as one line."""
    max_diff = max(float((a - b).abs().max()) for a, b in zip(reference.weights, other.weights, strict=True))
    loss_diff = abs(reference.loss - other.loss)
    assert max_diff <= 1e-6, f"final weights differ from the raw loop's by up to {max_diff:.3g}"
    assert loss_diff <= loss_rtol * abs(reference.loss), f"loss {other.loss!r} != raw {reference.loss!r}"
    same = "bit-identical" if max_diff == 0 else f"max |diff| {max_diff:.2g}"
    return f"weights {same}, loss {other.loss:.8f} vs raw {reference.loss:.8f} (|diff| {loss_diff:.2g})"
