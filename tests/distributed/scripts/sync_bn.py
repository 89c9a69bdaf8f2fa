"""A DDP (or FSDP) fit of Linear -> BatchNorm1d -> Linear launched by tests/distributed/test_sync_batchnorm.py: 16 fixed
samples, 2 epochs; rank 0 writes the final state dict and the class of each BatchNorm layer to `--out` (torch.save).

Usage: python sync_bn.py --out FILE [--devices 2] [--batch_size 2] [--strategy ddp] [--sync_batchnorm]
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import fulgor as pl


def dataset() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, generator=g) * 3 + 1  # far from normalised, so the statistics matter
    return TensorDataset(x, x.sum(dim=1, keepdim=True))


class Model(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 1))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--strategy", default="ddp")
    parser.add_argument("--sync_batchnorm", action="store_true")
    args = parser.parse_args()
    model = Model()
    trainer = pl.Trainer(
        accelerator="cpu", devices=args.devices, strategy=args.strategy, sync_batchnorm=args.sync_batchnorm,
        max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        use_distributed_sampler=False,
    )  # fmt: skip
    # No shuffling: rank r sees samples r, r+2, ... so each step's two local batches are one global batch of 4.
    sampler = DistributedSampler(dataset(), trainer.world_size, trainer.global_rank, shuffle=False)
    trainer.fit(model, DataLoader(dataset(), batch_size=args.batch_size, sampler=sampler))
    full = getattr(trainer.strategy, "lightning_module_state_dict", None)  # FSDP: gathered on rank 0 (a collective)
    state = full() if full is not None else model.state_dict()
    if trainer.is_global_zero:
        state = {k: v.detach().cpu() for k, v in state.items()}
        layers = [type(m).__name__ for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        torch.save({"state": state, "layers": layers, "steps": trainer.global_step}, args.out)


if __name__ == "__main__":
    main()
