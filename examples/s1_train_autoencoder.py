"""Seed notes, section 1 "Train a model": the LitAutoEncoder, trained with `pl.Trainer()`.

The notes' code as written, with `import fulgor as pl` and the shipped digits in place of the MNIST download.
Run: `python examples/s1_train_autoencoder.py [--root DIR]` (default: a new temp directory).
"""

import os

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

import fulgor as pl


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = nn.Sequential(nn.Linear(28 * 28, 64), nn.ReLU(), nn.Linear(64, 3))

    def forward(self, x):
        return self.l1(x)


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = nn.Sequential(nn.Linear(3, 64), nn.ReLU(), nn.Linear(64, 28 * 28))

    def forward(self, x):
        return self.l1(x)


class LitAutoEncoder(pl.LightningModule):
    def __init__(self, encoder, decoder):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def training_step(self, batch, batch_idx):
        # training_step defines the train loop.
        x, y = batch  # noqa: RUF059 (the notes' code, as written)
        x = x.view(x.size(0), -1)
        z = self.encoder(x)
        x_hat = self.decoder(z)
        loss = F.mse_loss(x_hat, x)
        return loss

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=1e-3)
        return optimizer


def reconstruction_mse(model, dataset):
    """Mean squared reconstruction error over the whole dataset (to show that training helped)."""
    x = torch.stack([image for image, _ in dataset]).view(len(dataset), -1)
    with torch.no_grad():
        return F.mse_loss(model.decoder(model.encoder(x)), x).item()


if __name__ == "__main__":
    from _digits import enter_root, mnist_like

    enter_root(__doc__)
    # The notes' `pl.Trainer()` would train for 1000 epochs (Lightning's default when max_epochs is unset).
    # PL_TRAINER_MAX_EPOCHS sets a Trainer default from the environment (a Lightning feature fulgor keeps),
    # so the notes' code below stays as written and trains one epoch.
    os.environ.setdefault("PL_TRAINER_MAX_EPOCHS", "1")
    pl.seed_everything(0)

    dataset = mnist_like(512)  # the notes: MNIST(os.getcwd(), download=True, transform=transforms.ToTensor())
    train_loader = DataLoader(dataset)

    # model
    autoencoder = LitAutoEncoder(Encoder(), Decoder())
    before = reconstruction_mse(autoencoder, dataset)

    # train model
    trainer = pl.Trainer()
    trainer.fit(model=autoencoder, train_dataloaders=train_loader)

    print(f"epochs: {trainer.current_epoch}, steps: {trainer.global_step}")
    print(f"reconstruction mse: before {before:.4f} -> after {reconstruction_mse(autoencoder, dataset):.4f}")
    print(f"log_dir: {os.path.relpath(trainer.log_dir)}")
    for name in sorted(os.listdir(trainer.log_dir)):
        print(f"wrote: {os.path.relpath(os.path.join(trainer.log_dir, name))}")
