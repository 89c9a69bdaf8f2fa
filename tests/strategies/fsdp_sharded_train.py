"""A Trainer fit under FSDP on 2 CPU processes (gloo) with sharded checkpoints, for test_fsdp_sharded_trainer.py.

Usage: python fsdp_sharded_train.py ROOT OUT [--max_epochs N] [--ckpt_path PATH] [--state_dict_type sharded|full]
       [--empty_init]
The `ddp` launcher re-runs this script per rank; rank 0 writes the final full weights, the global step and the
checkpoint names (relative to ROOT) to OUT as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import fulgor as pl
from fulgor.callbacks import ModelCheckpoint
from fulgor.strategies.fsdp import FSDPStrategy
from fulgor.strategies.fsdp_checkpoint import module_state


class Model(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.net(x), y), sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=0.05)


def data() -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, generator=generator)
    return TensorDataset(x, x.sum(dim=1, keepdim=True))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("out")
    parser.add_argument("--max_epochs", type=int, default=3)
    parser.add_argument("--ckpt_path", default=None)
    parser.add_argument("--state_dict_type", default="sharded")
    parser.add_argument("--empty_init", action="store_true", help="create the model on the meta device")
    args = parser.parse_args()
    pl.seed_everything(1, verbose=False)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy=FSDPStrategy(state_dict_type=args.state_dict_type),
        max_epochs=args.max_epochs,
        default_root_dir=args.root,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        callbacks=[ModelCheckpoint(monitor="val_loss", save_top_k=2, save_last=True)],
    )
    with trainer.init_module(empty_init=args.empty_init):
        model = Model()
    on_meta = all(p.is_meta for p in model.parameters())
    trainer.fit(model, DataLoader(data(), batch_size=8), DataLoader(data(), batch_size=8), ckpt_path=args.ckpt_path)
    weights = module_state(model, full=True)  # a collective: every rank gathers
    if trainer.is_global_zero:
        names = sorted(os.listdir(os.path.join(args.root, "checkpoints")))
        result = {
            "weights": {k: v.flatten().tolist() for k, v in weights.items()},
            "global_step": trainer.global_step,
            "on_meta": on_meta,
            "checkpoints": names,
        }
        with open(args.out, "w") as f:
            json.dump(result, f)


if __name__ == "__main__":
    main()
