"""A small training setup with every source of randomness (shuffle, dropout, workers, accumulation, mid-epoch
validation, an LR scheduler), runnable in-process or as a script, for the exact-resume tests."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

import fulgor
from fulgor.callbacks.model_checkpoint import ModelCheckpoint


class Squares(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Deterministic items; records which indices the main process loads (workers=0)."""

    def __init__(self, n: int = 40) -> None:
        g = torch.Generator().manual_seed(123)
        self.x = torch.randn(n, 4, generator=g)
        self.y = (self.x**2).sum(1, keepdim=True)
        self.loaded: list[int] = []

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.loaded.append(int(i))
        _fire_from_worker()
        return self.x[i], self.y[i]


def _fire_from_worker() -> None:
    """When the main process armed `$RELIABILITY_FIRE` (a file), the first worker to see it signals the whole group
    while loading: the signal then reaches the main process at any moment of its batch cycle, as a scheduler's does."""
    armed = os.environ.get("RELIABILITY_FIRE")
    if armed and os.path.exists(armed):
        try:
            os.rename(armed, armed + ".fired")  # only one worker fires
        except OSError:
            return
        os.killpg(os.getpgid(0), signal.SIGTERM)


def make_model_class(base: type) -> type:
    class Net(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(16, 1)
            )
            self.seen: list[list[float]] = []

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            self.seen.append(x[:, 0].tolist())
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

        def configure_optimizers(self) -> Any:
            opt = torch.optim.SGD(self.parameters(), lr=0.01, momentum=0.9)
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.7)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    return Net


Net = make_model_class(fulgor.LightningModule)


def loaders(workers: int = 0, generator: bool = False, batch_size: int = 4) -> tuple[DataLoader[Any], DataLoader[Any]]:
    data = Squares()
    if generator:
        train = DataLoader(data, batch_size=batch_size, shuffle=True, num_workers=workers,
                           generator=torch.Generator().manual_seed(7))  # fmt: skip
    else:
        train = DataLoader(data, batch_size=batch_size, sampler=RandomSampler(data), num_workers=workers)
    return train, DataLoader(Squares(12), batch_size=4, num_workers=workers)


def run(
    root: Path,
    ckpt_path: Any = None,
    workers: int = 0,
    generator: bool = False,
    callbacks: list[Any] | None = None,
    **trainer_kw: Any,
) -> Any:
    """Seed, build, fit; return the module."""
    fulgor.seed_everything(0, verbose=False)
    model = Net()
    train, val = loaders(workers, generator)
    kw: dict[str, Any] = {"max_epochs": 3, "accumulate_grad_batches": 2, "val_check_interval": 0.5,
                          "num_sanity_val_steps": 2, "log_every_n_steps": 1}  # fmt: skip
    kw.update(trainer_kw)
    trainer = fulgor.Trainer(default_root_dir=str(root), enable_progress_bar=False, enable_model_summary=False,
                             callbacks=callbacks, logger=False, **kw)  # fmt: skip
    trainer.fit(model, train, val, ckpt_path=ckpt_path)
    model.trainer_ = trainer
    return model


def weights(model: Any) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"tensors differ: {different}"


class KillAt(fulgor.Callback):
    """Script helper: record progress; at `global_step == step` send `sig` to this process (or SIGKILL it); a negative
    `sig` arms a DataLoader worker to send SIGTERM to the whole process group."""

    def __init__(self, step: int, sig: int, progress: str) -> None:
        self.step, self.sig, self.progress = step, sig, progress

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        Path(self.progress).parent.mkdir(parents=True, exist_ok=True)
        Path(self.progress).write_text(str(trainer.global_step))
        if trainer.global_step == self.step and self.step > 0:
            if self.sig < 0:  # a worker signals the whole process group (itself included) as it loads a batch
                Path(os.environ["RELIABILITY_FIRE"]).touch()
            else:
                os.kill(os.getpid(), self.sig)


def main() -> None:
    """`python -m reliability.common OUT.json ROOT WORKERS KILL_STEP SIGNAL [resume]`: one segment of a run."""
    out, root, workers, kill_step, sig = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(
        sys.argv[5])  # fmt: skip
    resume = len(sys.argv) > 6
    every = 1 if abs(sig) == 9 else 1000  # SIGKILL relies on periodic checkpoints, SIGTERM on the preemption save
    checkpoint = ModelCheckpoint(dirpath=str(root / "ckpt"), every_n_train_steps=every, save_last=True)
    kill = KillAt(kill_step, sig, str(root / "progress"))
    model = run(root, ckpt_path="last" if resume else None, workers=workers, callbacks=[checkpoint, kill])
    torch.save(weights(model), out)
    Path(out + ".json").write_text(json.dumps({"global_step": model.trainer_.global_step}))


if __name__ == "__main__":
    main()
