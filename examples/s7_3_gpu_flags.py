"""Seed notes, section 7.3 "GPU Training": every `Trainer(accelerator="gpu", devices=...)` form of the notes.

Without a GPU each form raises fulgor's clear error, printed here; with GPUs they select them (forms that need
more than one GPU need the DDP work and say so). Then the CPU equivalents, which run anywhere, train a few steps.
Run: `python examples/s7_3_gpu_flags.py [--root DIR]` (default: a new temp directory).
"""

import torch
from torch import nn
from torch.utils.data import DataLoader

import fulgor as pl
from fulgor import Trainer

k = 2


def attempt(label, make_trainer):
    """Build a Trainer and print the devices it chose, or the error it raised."""
    try:
        trainer = make_trainer()
    except Exception as error:
        print(f"{label} -> {type(error).__name__}: {error}")
        return None
    print(
        f"{label} -> accelerator={trainer.accelerator} devices={trainer.device_ids}"
        f" root_device={trainer.strategy.root_device}"
    )
    return trainer


class TinyModel(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        (x,) = batch
        return self.layer(x).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


if __name__ == "__main__":
    from _digits import enter_root

    enter_root(__doc__)
    print(f"cuda available: {torch.cuda.is_available()}, cuda devices: {torch.cuda.device_count()}")

    # DEFAULT (int) specifies how many GPUs to use per node
    attempt('Trainer(accelerator="gpu", devices=k)', lambda: Trainer(accelerator="gpu", devices=k))

    # Above is equivalent to
    attempt(
        'Trainer(accelerator="gpu", devices=list(range(k)))',
        lambda: Trainer(accelerator="gpu", devices=list(range(k))),
    )

    # Specify which GPUs to use (don't use when running on cluster)
    attempt('Trainer(accelerator="gpu", devices=[0, 1])', lambda: Trainer(accelerator="gpu", devices=[0, 1]))

    # Equivalent using a string
    attempt('Trainer(accelerator="gpu", devices="0, 1")', lambda: Trainer(accelerator="gpu", devices="0, 1"))

    # To use all available GPUs put -1 or '-1'
    # equivalent to list(range(torch.cuda.device_count()))
    attempt('Trainer(accelerator="gpu", devices=-1)', lambda: Trainer(accelerator="gpu", devices=-1))
    attempt("Trainer(accelerator=\"gpu\", devices='-1')", lambda: Trainer(accelerator="gpu", devices="-1"))

    # CPU equivalents that run anywhere
    data = DataLoader(torch.utils.data.TensorDataset(torch.randn(16, 4)), batch_size=4)
    quiet = {"max_epochs": 1, "enable_progress_bar": False, "enable_model_summary": False, "logger": False}
    for label, make in (
        ('Trainer(accelerator="cpu")', lambda: Trainer(accelerator="cpu", **quiet)),
        ('Trainer(accelerator="cpu", devices=1)', lambda: Trainer(accelerator="cpu", devices=1, **quiet)),
        ('Trainer(accelerator="cpu", devices="1")', lambda: Trainer(accelerator="cpu", devices="1", **quiet)),
        ('Trainer(accelerator="auto")', lambda: Trainer(accelerator="auto", **quiet)),
    ):
        trainer = attempt(label, make)
        trainer.fit(TinyModel(), data)
        print(f"  trained {trainer.global_step} steps on {trainer.strategy.root_device}")
    # More than one device selects DDP (k processes; see docs/distributed.md). Constructed only: no fit here.
    ddp = attempt('Trainer(accelerator="cpu", devices=k)', lambda: Trainer(accelerator="cpu", devices=k))
    print(f"  strategy: {type(ddp.strategy).__name__}")
