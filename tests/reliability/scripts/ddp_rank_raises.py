"""Two-process DDP (gloo, CPU) where one rank raises at a chosen step: `python ddp_rank_raises.py ROOT RANK STEP`."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

import fulgor


class Model(fulgor.LightningModule):
    def __init__(self, bad_rank: int, bad_step: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layer = torch.nn.Linear(4, 1)
        self.bad_rank, self.bad_step = bad_rank, bad_step

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        if self.global_rank == self.bad_rank and self.global_step == self.bad_step:
            Path(self.trainer.default_root_dir, "raised_at").write_text(repr(time.time()))
            raise ValueError(f"rank {self.global_rank} broke at step {self.global_step}")
        return self.layer(batch[0]).pow(2).mean()

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def main() -> None:
    root, bad_rank, bad_step = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    trainer = fulgor.Trainer(default_root_dir=root, accelerator="cpu", strategy="ddp", devices=2, max_epochs=50,
                             logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False)  # fmt: skip
    trainer.fit(Model(bad_rank, bad_step), DataLoader(TensorDataset(x), batch_size=4))


if __name__ == "__main__":
    main()
