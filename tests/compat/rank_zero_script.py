"""A Lightning script that logs through lightning_utilities' `rank_zero_only` at start-up and in a hook, run on 2 CPU
DDP processes by test_rank_sync.py (under `fulgor run`): each line must come from rank 0 only."""

import sys

import pytorch_lightning as pl
import torch
from lightning_utilities.core.rank_zero import rank_zero_only as lu_rank_zero_only
from pytorch_lightning.utilities.rank_zero import rank_zero_only
from torch.utils.data import DataLoader, TensorDataset


@lu_rank_zero_only
def shout(message: str) -> None:
    print(message, flush=True)


class Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def on_train_start(self) -> None:
        shout(f"START global_rank={self.global_rank} lu={lu_rank_zero_only.rank} pl={rank_zero_only.rank}")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


if __name__ == "__main__":
    shout("IMPORTED")
    data = DataLoader(TensorDataset(torch.randn(8, 2), torch.randn(8, 1)), batch_size=2)
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", max_steps=2, default_root_dir=sys.argv[1],
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(Tiny(), data)
    print(f"END global_rank={trainer.global_rank} lu={lu_rank_zero_only.rank} pl={rank_zero_only.rank}", flush=True)
