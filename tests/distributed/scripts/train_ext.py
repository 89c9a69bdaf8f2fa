"""train.py's model and data under FSDP, or under DDP with a SIGTERM sent to one rank; rank 0 writes the final full
weights as JSON to `--out`, every rank prints `rank R stopped at global_step=N` when a stop request ends its fit.

Usage: python train_ext.py --root DIR --out FILE [--strategy ddp|fsdp|fsdp_cpu_offload] [--sharding FULL_SHARD]
       [--wrap_linear] [--batch_size 16] [--max_epochs 2] [--sigterm_rank R --sigterm_step S] [--sync_every 16]
       [--ckpt_path PATH] [--every_epoch]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from typing import Any

import torch
from torch.utils.data import DataLoader
from train import Model, dataset

import fulgor as pl
from fulgor.callbacks import ModelCheckpoint
from fulgor.strategies.fsdp import FSDPStrategy
from fulgor.trainer.preemption import FaultTolerance, Preempted


class SigtermModel(Model):
    """Sends SIGTERM to its own process on one rank at one step (a preemption notice reaching one node first)."""

    def __init__(self, sigterm_rank: int, sigterm_step: int) -> None:
        super().__init__()
        self.sigterm_rank, self.sigterm_step = sigterm_rank, sigterm_step

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.global_rank == self.sigterm_rank and self.global_step == self.sigterm_step:
            os.kill(os.getpid(), signal.SIGTERM)
        return super().training_step(batch, batch_idx)


def strategy(args: argparse.Namespace) -> Any:
    if args.sharding or args.wrap_linear:
        return FSDPStrategy(
            sharding_strategy=args.sharding or "FULL_SHARD",
            auto_wrap_policy={torch.nn.Linear} if args.wrap_linear else None,
        )
    return args.strategy


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--strategy", default="ddp")
    parser.add_argument("--sharding", default=None)
    parser.add_argument("--wrap_linear", action="store_true")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--max_epochs", type=int, default=2)
    parser.add_argument("--sigterm_rank", type=int, default=-1)
    parser.add_argument("--sigterm_step", type=int, default=-1)
    parser.add_argument("--sync_every", type=int, default=16)
    parser.add_argument("--ckpt_path", default=None)
    parser.add_argument("--every_epoch", action="store_true", help="keep a checkpoint of every epoch")
    args = parser.parse_args()
    model = SigtermModel(args.sigterm_rank, args.sigterm_step)
    checkpoint = ModelCheckpoint(save_top_k=-1) if args.every_epoch else ModelCheckpoint()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy=strategy(args),
        max_epochs=args.max_epochs,
        default_root_dir=args.root,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        callbacks=[checkpoint, FaultTolerance(signals=["SIGTERM"], sync_every_n_batches=args.sync_every)],
    )
    train = DataLoader(dataset(), batch_size=args.batch_size)
    val = DataLoader(dataset(), batch_size=args.batch_size)
    try:
        trainer.fit(model, train, val, ckpt_path=args.ckpt_path)
    except Preempted:
        # One write per line: both ranks share the launcher's stderr, and print() writes the newline separately.
        sys.stderr.write(f"rank {trainer.global_rank} stopped at global_step={trainer.global_step}\n")
        raise
    gather = getattr(trainer.strategy, "lightning_module_state_dict", None)
    state = gather() if gather is not None else model.state_dict()  # a collective under FSDP: every rank calls it
    if trainer.is_global_zero:
        result = {
            "weight": state["layer.weight"].tolist(),
            "bias": state["layer.bias"].tolist(),
            "global_step": trainer.global_step,
            "strategy": type(trainer.strategy).__name__,
            "checkpoints": sorted(os.path.relpath(p, args.root) for p in _files(args.root)),
        }
        with open(args.out, "w") as f:
            json.dump(result, f)


def _files(root: str) -> list[str]:
    return [os.path.join(d, n) for d, _, names in os.walk(root) for n in names if n.endswith(".ckpt")]


if __name__ == "__main__":
    main()
