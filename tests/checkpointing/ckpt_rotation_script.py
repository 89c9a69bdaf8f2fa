"""Trains with top-k rotation at every step and `last` as a link (or a file) until killed; prints READY once
the first save check is complete. Run by test_ckpt_rotation_kill.py: `python ckpt_rotation_script.py DIR SAVE_LAST`."""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

import fulgor


class Rotating(fulgor.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(64, 64)

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        loss = self.layer(batch[0]).pow(2).mean()
        self.log("score", float(self.global_step))  # rises every step: each save replaces the previous best
        return loss

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.parameters(), lr=1e-3)


class Ready(fulgor.Callback):
    def on_train_batch_start(self, trainer: Any, *args: Any) -> None:
        if trainer.global_step >= 1 and not getattr(self, "said", False):  # the first save check is complete
            self.said = True
            print("READY", flush=True)


def main() -> None:
    dirpath, save_last = sys.argv[1], sys.argv[2]
    checkpoint = fulgor.callbacks.ModelCheckpoint(
        dirpath=dirpath,
        monitor="score",
        mode="max",
        save_top_k=1,  # each new best replaces the file `last` links to
        every_n_train_steps=1,
        save_last="link" if save_last == "link" else True,
    )
    x = torch.randn(32, 64, generator=torch.Generator().manual_seed(0))
    trainer = fulgor.Trainer(
        max_steps=100_000,
        callbacks=[checkpoint, Ready()],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=dirpath,
    )
    trainer.fit(Rotating(), DataLoader(TensorDataset(x), batch_size=4))


if __name__ == "__main__":
    main()
