"""Seed notes, section 5.1 "Debug your model": fast_dev_run, limit_*_batches (fraction and count),
num_sanity_val_steps and the model summary printed by `fit`.

Each Trainer of the notes trains a fresh model for one epoch on 100 training batches and 100 validation batches;
the script prints how many batches each flag let through.
Run: `python examples/s5_1_debugging_flags.py [--root DIR]` (default: a new temp directory).
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

import fulgor as pl
from fulgor import Trainer
from fulgor.callbacks import ModelSummary


class CountingAutoEncoder(pl.LightningModule):
    """The section-1 autoencoder (on 8x8 images) that counts the steps each loop ran."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3))
        self.decoder = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 64))
        self.counts = {"train": 0, "val": 0}

    def training_step(self, batch, batch_idx):
        self.counts["train"] += 1
        x = batch[0].view(batch[0].size(0), -1)
        return F.mse_loss(self.decoder(self.encoder(x)), x)

    def validation_step(self, batch, batch_idx):
        self.counts["val"] += 1  # sanity-check batches included
        x = batch[0].view(batch[0].size(0), -1)
        self.log("val_loss", F.mse_loss(self.decoder(self.encoder(x)), x))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class SummaryModel(pl.LightningModule):
    """The model behind the table in the notes: a Linear(256, 512) and a BatchNorm1d(512) in `net`."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(256, 512), nn.BatchNorm1d(512))
        self.example_input_array = torch.zeros(2, 256)  # adds the In sizes / Out sizes columns

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        return self(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def run(label, trainer, train_loader, val_loader):
    model = CountingAutoEncoder()
    trainer.fit(model, train_loader, val_loader)
    print(
        f"{label}: global_step={trainer.global_step} training_steps={model.counts['train']}"
        f" validation_steps={model.counts['val']} sanity_batches={trainer.num_sanity_val_batches}"
        f" val_batches={trainer.num_val_batches}"
    )


if __name__ == "__main__":
    from _digits import enter_root

    enter_root(__doc__)
    pl.seed_everything(0)
    from sklearn.datasets import load_digits

    images = torch.tensor(load_digits().images[:500] / 16.0, dtype=torch.float32)
    train_loader = DataLoader(torch.utils.data.TensorDataset(images[:400]), batch_size=4)  # 100 batches
    val_loader = DataLoader(torch.utils.data.TensorDataset(images[400:]), batch_size=1)  # 100 batches
    quiet = {"enable_progress_bar": False, "enable_model_summary": False}

    # Run all your model code once quickly -- fast_dev_run argument
    trainer = Trainer(fast_dev_run=True, **quiet)
    run("fast_dev_run=True", trainer, train_loader, val_loader)
    trainer = Trainer(fast_dev_run=7, **quiet)
    run("fast_dev_run=7", trainer, train_loader, val_loader)

    # Shorten the epoch length using a fraction of your training, val, test, or predict dat
    # use only 10% of training data and 1% of val data
    trainer = Trainer(limit_train_batches=0.1, limit_val_batches=0.01, max_epochs=1, **quiet)
    run("limit_train_batches=0.1, limit_val_batches=0.01", trainer, train_loader, val_loader)
    # use 10 batches of train and 5 batches of val
    trainer = Trainer(limit_train_batches=10, limit_val_batches=5, max_epochs=1, **quiet)
    run("limit_train_batches=10, limit_val_batches=5", trainer, train_loader, val_loader)

    # Run a Sanity Check
    trainer = Trainer(num_sanity_val_steps=2, limit_train_batches=10, max_epochs=1, **quiet)
    run("num_sanity_val_steps=2", trainer, train_loader, val_loader)

    # Print LightningModule weights summary: whenever .fit() is called, the Trainer prints the summary.
    # max_depth=-1 lists the nested layers too, like the table in the notes; In/Out sizes come from
    # `example_input_array`.
    trainer = Trainer(max_epochs=1, limit_train_batches=2, enable_progress_bar=False, callbacks=[ModelSummary(-1)])
    trainer.fit(SummaryModel(), DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 256)), batch_size=4))
    print(f"summary printed; SummaryModel has {sum(p.numel() for p in SummaryModel().parameters())} parameters")
