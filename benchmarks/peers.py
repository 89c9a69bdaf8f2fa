"""W1 and W3 run by the other training libraries, when installed: PyTorch-Ignite and HF Accelerate.

Each runner does the same math on the same batches as the raw loop of workloads.py (same `w1_net`/`w3_nets` init,
same loaders and optimizers; zero_grad, backward, step every batch) so that run.py checks it with `workloads.check`.
Neither library has Lightning's default features (W2) or a LightningModule to hand to the fresh-process workloads,
so only W1, W3 and the import time of W4 are measured for them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from workloads import W3_TRAIN, W3_VAL, Result, _weights, quiet, timed, w1_loader, w1_net, w3_loaders, w3_nets

# The module each peer is imported as (run.py's column names, child.py's W4 import).
MODULES = {"ignite": "ignite.engine", "accelerate": "accelerate"}


# ----------------------------------------------------------------------------------------------------- Ignite


def ignite_w1(steps: int) -> Result:
    """`create_supervised_trainer` (zero_grad, forward, MSE, backward, step per iteration) run for one epoch."""
    from ignite.engine import create_supervised_trainer

    net, loader = w1_net(), w1_loader(steps)
    with quiet(), timed() as t:
        opt = torch.optim.SGD(net.parameters(), lr=0.01)
        trainer = create_supervised_trainer(net, opt, F.mse_loss)
        trainer.run(loader, max_epochs=1)
    return Result(t[0], t[1], _weights(net), float(trainer.state.output))


def _autoencoder_batch(batch: tuple[Tensor, Tensor], device: Any, non_blocking: bool) -> tuple[Tensor, Tensor]:
    return batch[0], batch[0]  # the target of the autoencoder is its input


def ignite_w3(n_train: int = W3_TRAIN, n_val: int = W3_VAL) -> Result:
    """A supervised trainer for the epoch, then an evaluator whose `Loss` metric is the batch-size-weighted mean."""
    from ignite.engine import create_supervised_evaluator, create_supervised_trainer
    from ignite.metrics import Loss

    (encoder, decoder), (train, val) = w3_nets(), w3_loaders(n_train, n_val)
    model = nn.Sequential(encoder, decoder)  # the same parameters, in the raw loop's order
    with quiet(), timed() as t:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        trainer = create_supervised_trainer(model, opt, F.mse_loss, prepare_batch=_autoencoder_batch)
        trainer.run(train, max_epochs=1)
        metrics = {"val_loss": Loss(F.mse_loss)}
        evaluator = create_supervised_evaluator(model, metrics, prepare_batch=_autoencoder_batch)
        val_loss = float(evaluator.run(val).metrics["val_loss"])
    return Result(t[0], t[1], _weights(encoder) + _weights(decoder), val_loss)


# ------------------------------------------------------------------------------------------------ Accelerate


def accelerate_w1(steps: int) -> Result:
    """`Accelerator(cpu=True)`, `prepare`, and the raw loop with `accelerator.backward(loss)`."""
    from accelerate import Accelerator

    net, loader = w1_net(), w1_loader(steps)
    with quiet(), timed() as t:
        accelerator = Accelerator(cpu=True)
        opt = torch.optim.SGD(net.parameters(), lr=0.01)
        model, opt, loader = accelerator.prepare(net, opt, loader)
        for x, y in loader:
            loss = F.mse_loss(model(x), y)
            opt.zero_grad()
            accelerator.backward(loss)
            opt.step()
    return Result(t[0], t[1], _weights(net), float(loss.detach()))


def accelerate_w3(n_train: int = W3_TRAIN, n_val: int = W3_VAL) -> Result:
    """The raw W3 loop on prepared objects, validation loss reduced as the raw loop does (one process here)."""
    from accelerate import Accelerator

    (encoder, decoder), (train, val) = w3_nets(), w3_loaders(n_train, n_val)
    with quiet(), timed() as t:
        accelerator = Accelerator(cpu=True)
        opt = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=1e-3)
        enc, dec, opt, train, val = accelerator.prepare(encoder, decoder, opt, train, val)
        for x, _ in train:
            loss = F.mse_loss(dec(enc(x)), x)
            opt.zero_grad()
            accelerator.backward(loss)
            opt.step()
        total, count = torch.zeros(()), 0
        with torch.no_grad():
            for x, _ in val:
                total += F.mse_loss(dec(enc(x)), x) * x.size(0)
                count += x.size(0)
        val_loss = float(total / count)
    return Result(t[0], t[1], _weights(encoder) + _weights(decoder), val_loss)


W1: dict[str, Callable[[int], Result]] = {"ignite": ignite_w1, "accelerate": accelerate_w1}
W3: dict[str, Callable[[int], Result]] = {"ignite": ignite_w3, "accelerate": accelerate_w3}
