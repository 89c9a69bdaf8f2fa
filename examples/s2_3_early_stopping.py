"""Seed notes, section 2.3 "Enable early stopping": the `EarlyStopping` callback as written in the notes (only the
import changed), on small synthetic data, printing the epoch each run stopped at. The notes' first method (return -1
from `on_train_batch_start`) and "the other EarlyStopping parameters" are in docs/callbacks.md.

Run: `python examples/s2_3_early_stopping.py [--root DIR]` (default: a new temp directory).
"""

import argparse
import os
import tempfile

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import fulgor
from fulgor import LightningModule, Trainer
from fulgor.callbacks.early_stopping import EarlyStopping


def noisy_blobs(n: int, seed: int) -> TensorDataset:
    """Two overlapping Gaussian blobs in 10 dimensions with 20% flipped labels: easy to overfit."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 10, generator=g) + 0.5 * y[:, None]
    flip = torch.rand(n, generator=g) < 0.2
    return TensorDataset(x, torch.where(flip, 1 - y, y))


class LitModel(LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(10, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    # --- section 2.3, as written in the notes (with the loss filled in)
    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        loss = F.cross_entropy(logits, y)
        self.log("val_loss", loss)
        self.log("val_accuracy", (logits.argmax(dim=1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.01)

    def train_dataloader(self):
        return DataLoader(noisy_blobs(64, seed=1), batch_size=16, shuffle=True)

    def val_dataloader(self):
        return DataLoader(noisy_blobs(256, seed=2), batch_size=256)


def main(root: str) -> None:
    os.makedirs(root, exist_ok=True)  # like the other examples: a missing --root folder is created
    os.chdir(root)  # the default logger and checkpoints go to ./lightning_logs, as in the notes
    fulgor.seed_everything(0)

    # --- section 2.3, as written in the notes
    model = LitModel()
    trainer = Trainer(callbacks=[EarlyStopping(monitor="val_loss", mode="min")])
    trainer.fit(model)
    es = trainer.early_stopping_callback
    print(f"val_loss run: stopped at epoch {es.stopped_epoch} (epochs run: {trainer.current_epoch}),"
          f" best val_loss {float(es.best_score):.4f}, reason {es.stopping_reason.name}")  # fmt: skip

    # You can customize the callbacks behaviour by changing its parameters.
    early_stop_callback = EarlyStopping(monitor="val_accuracy", min_delta=0.00, patience=3, verbose=False, mode="max")
    trainer = Trainer(callbacks=[early_stop_callback])
    trainer.fit(LitModel())
    print(f"val_accuracy run: stopped at epoch {early_stop_callback.stopped_epoch}"
          f" (epochs run: {trainer.current_epoch}), best val_accuracy {float(early_stop_callback.best_score):.4f},"
          f" reason {early_stop_callback.stopping_reason.name}")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", default=None, help="working directory (default: a new temp directory)")
    main(parser.parse_args().root or tempfile.mkdtemp(prefix="fulgor_s2_3_"))
