"""W6: the W3 autoencoder under DDP on 2 CPU processes (gloo), as a raw DDP loop and as a framework run. Both
relaunch the running script for rank 1 (Lightning's default launcher does the same); rank 0 returns a Result."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from types import ModuleType

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from workloads import W3_BATCH, W3_VAL, Result, _weights, quiet, w3_loaders, w3_module, w3_nets

WORLD = 2


def _sharded(loader: DataLoader, rank: int, shuffle: bool) -> DataLoader:  # type: ignore[type-arg]
    # Lightning's default sampler under DDP shuffles the training set (seed 0, epoch 0) and not the others.
    sampler = DistributedSampler(loader.dataset, num_replicas=WORLD, rank=rank, shuffle=shuffle)
    return DataLoader(loader.dataset, batch_size=W3_BATCH, sampler=sampler)


def raw_ddp(n_train: int, script: str, argv: list[str]) -> Result | None:
    """The hand-written DDP loop: rank 0 starts rank 1 as `script argv`, then both train their shard."""
    rank = int(os.environ.get("LOCAL_RANK", "0"))
    other = None
    if rank == 0:
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
        other = subprocess.Popen([sys.executable, script, *argv], env={**os.environ, "LOCAL_RANK": "1"})
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    encoder, decoder = w3_nets()
    model = DistributedDataParallel(nn.Sequential(encoder, decoder))
    train_loader, val_loader = w3_loaders(n_train, W3_VAL)
    train, val = _sharded(train_loader, rank, shuffle=True), _sharded(val_loader, rank, shuffle=False)
    dist.barrier()
    start = time.perf_counter()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for x, _ in train:
        loss = F.mse_loss(model(x), x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    total, count = torch.zeros(()), 0
    with torch.no_grad():
        for x, _ in val:
            total += F.mse_loss(model.module(x), x) * x.size(0)
            count += x.size(0)
    val_loss = float(total / count)  # rank 0's shard, as `self.log` without sync_dist reports it
    wall = time.perf_counter() - start
    dist.destroy_process_group()
    if other is not None:
        other.wait()
    return Result(wall, wall, _weights(encoder, decoder), val_loss) if rank == 0 else None


def framework_ddp(pl: ModuleType, n_train: int) -> Result | None:
    """The same under `Trainer(strategy="ddp", accelerator="cpu", devices=2)`, timed from a barrier at train start."""
    model = w3_module(pl)
    started: list[float] = []

    def on_train_start() -> None:
        dist.barrier()
        started.append(time.perf_counter())

    model.on_train_start = on_train_start
    train, val = w3_loaders(n_train, W3_VAL)
    with quiet():
        trainer = pl.Trainer(
            max_epochs=1, accelerator="cpu", devices=WORLD, strategy="ddp", enable_progress_bar=False,
            enable_model_summary=False, logger=False, enable_checkpointing=False,
        )  # fmt: skip
        trainer.fit(model, train, val)
    wall = time.perf_counter() - started[0]
    if trainer.global_rank != 0:
        return None
    val_loss = float(trainer.callback_metrics["val_loss"])
    return Result(wall, wall, _weights(model.encoder, model.decoder), val_loss)
