"""A tiny DDP run launched by tests/distributed: fits Linear(4, 2) on 64 fixed samples, logs `sync_dist` values,
and (rank 0) writes the final weights and metrics as JSON to `--out`.

Usage: python train.py --root DIR --out FILE [--devices 2] [--num_nodes 1] [--strategy ddp] [--batch_size 16]
       [--kill_rank R --kill_step S] [--accumulate 1]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch
from torch.utils.data import DataLoader, TensorDataset

import fulgor as pl
from fulgor.loggers import CSVLogger
from fulgor.strategies import DDPStrategy


def dataset() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    return TensorDataset(x, x @ torch.tensor([[1.0, -1.0], [0.5, 2.0], [0.0, 1.0], [-1.0, 0.0]]))


class Model(pl.LightningModule):
    def __init__(self, kill_rank: int = -1, kill_step: int = -1) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layer = torch.nn.Linear(4, 2)
        self.kill_rank, self.kill_step = kill_rank, kill_step

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.global_rank == self.kill_rank and self.global_step == self.kill_step:
            os.kill(os.getpid(), 9)
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        rank = torch.tensor(float(self.global_rank), device=self.device)
        self.log("rank_mean", rank, sync_dist=True, on_step=False, on_epoch=True)
        self.log("rank_max", rank, sync_dist=True, reduce_fx="max", on_step=False, on_epoch=True)
        self.log("rank_sum", rank, sync_dist=True, reduce_fx="sum", on_step=False, on_epoch=True)
        self.log("train_loss", loss, sync_dist=True, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.layer(x), y), sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def main() -> None:
    if os.environ.get("DUMP_AFTER"):
        import faulthandler

        faulthandler.dump_traceback_later(int(os.environ["DUMP_AFTER"]), exit=True)
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--backend", default=None, help="process group backend for DDPStrategy")
    parser.add_argument("--num_nodes", type=int, default=1)
    parser.add_argument("--strategy", default="ddp")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--accumulate", type=int, default=1)
    parser.add_argument("--max_epochs", type=int, default=2)
    parser.add_argument("--kill_rank", type=int, default=-1)
    parser.add_argument("--kill_step", type=int, default=-1)
    parser.add_argument("--validate_after", action="store_true", help="run trainer.validate after fit")
    parser.add_argument("--launcher_api", action="store_true", help="call fit through strategy.launcher.launch")
    args = parser.parse_args()
    model = Model(args.kill_rank, args.kill_step)
    trainer = pl.Trainer(
        accelerator=args.accelerator,
        devices=args.devices,
        num_nodes=args.num_nodes,
        strategy=DDPStrategy(process_group_backend=args.backend) if args.backend else args.strategy,
        max_epochs=args.max_epochs,
        default_root_dir=args.root,
        enable_progress_bar=False,
        enable_model_summary=False,
        accumulate_grad_batches=args.accumulate,
        log_every_n_steps=1,
        logger=CSVLogger(args.root),
    )
    if trainer.world_size == 1:
        # The single-process reference draws the order DDP's injected sampler draws (Lightning's rule: training
        # shuffles with seed PL_GLOBAL_SEED or 0, the permutation of epoch e split across ranks), so one batch of
        # 2*B here holds exactly the two ranks' batches of B.
        from torch.utils.data import DistributedSampler

        data = dataset()
        sampler = DistributedSampler(data, num_replicas=1, rank=0, shuffle=True, seed=0)
        train = DataLoader(data, batch_size=args.batch_size, sampler=sampler)
    else:
        train = DataLoader(dataset(), batch_size=args.batch_size)
    val = DataLoader(dataset(), batch_size=args.batch_size)
    if args.launcher_api:
        trainer.strategy.launcher.launch(trainer.fit, model, train, val, trainer=trainer)
    else:
        trainer.fit(model, train, val)
    fit_metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    validated = trainer.validate(model, val, verbose=False) if args.validate_after else None
    if trainer.is_global_zero:
        ckpt = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        result = {
            "weight": model.layer.weight.cpu().tolist(),
            "bias": model.layer.bias.cpu().tolist(),
            "metrics": fit_metrics,
            "global_step": trainer.global_step,
            "best_model_path": os.path.relpath(ckpt, args.root) if ckpt else "",
            "world_size": trainer.world_size,
            "pid": os.getpid(),
            "validated": validated,
        }
        with open(args.out, "w") as f:
            json.dump(result, f)
    print(f"rank {trainer.global_rank} done", file=sys.stderr)


if __name__ == "__main__":
    main()
