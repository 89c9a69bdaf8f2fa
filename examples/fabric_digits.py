"""Train a small classifier on scikit-learn's shipped 8x8 digits with Fabric: your own loop, Fabric handles devices,
precision, processes, checkpoints and logging. Runs on CPU:

    python examples/fabric_digits.py                                  # one process
    python examples/fabric_digits.py --devices 2 --strategy ddp       # 2 DDP processes (gloo)
    python examples/fabric_digits.py --precision bf16-mixed --epochs 5
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fulgor import Fabric
from fulgor.fabric_loggers import CSVLogger


def digits() -> tuple[TensorDataset, TensorDataset]:
    """(train, validation): the 1,797 digits as 64 features in [0, 1], the last 297 held out."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data / 16.0, dtype=torch.float32)
    y = torch.tensor(data.target)
    return TensorDataset(x[:1500], y[:1500]), TensorDataset(x[1500:], y[1500:])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None, help="where logs and checkpoints go (default: a new temp folder)")
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--strategy", default="auto")
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--epochs", type=int, default=8)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    root = args.root or os.environ.get("FABRIC_DIGITS_ROOT") or tempfile.mkdtemp(prefix="fabric-digits-")
    os.environ["FABRIC_DIGITS_ROOT"] = root  # the other DDP ranks (the script re-run) use the same folder
    logger = CSVLogger(root, name="digits", version=0)
    fabric = Fabric(
        accelerator="cpu", devices=args.devices, strategy=args.strategy, precision=args.precision, loggers=logger
    )
    fabric.launch()
    fabric.seed_everything(42)

    train_set, val_set = digits()
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model, optimizer = fabric.setup(model, optimizer)
    train_loader, val_loader = fabric.setup_dataloaders(
        DataLoader(train_set, batch_size=64, shuffle=True), DataLoader(val_set, batch_size=128)
    )

    step = 0
    for epoch in range(args.epochs):
        model.train()
        for x, y in train_loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            fabric.backward(loss)
            optimizer.step()
            fabric.log("train_loss", loss, step=step)
            step += 1
        accuracy = evaluate(fabric, model, val_loader)
        fabric.log_dict({"val_acc": accuracy, "epoch": epoch}, step=step)
        fabric.print(f"epoch {epoch}: train_loss={loss.item():.4f} val_acc={accuracy:.4f}")

    checkpoint = os.path.join(root, "digits.ckpt")
    fabric.save(checkpoint, {"model": model, "optimizer": optimizer, "step": step})
    state = {"model": model, "optimizer": optimizer, "step": 0}
    fabric.load(checkpoint, state)  # what a resumed run does
    logger.finalize("success")
    fabric.print(f"final val_acc: {evaluate(fabric, model, val_loader):.4f} (steps {state['step']}, root {root})")


@torch.no_grad()
def evaluate(fabric: Fabric, model: nn.Module, loader: DataLoader) -> float:
    """Accuracy over every process's share of the validation set."""
    model.eval()
    correct = total = torch.zeros((), device=fabric.device)
    for x, y in loader:
        correct = correct + (model(x).argmax(dim=1) == y).sum()
        total = total + y.numel()
    counts = fabric.all_reduce(torch.stack([correct, total]).float(), reduce_op="sum")
    return float(counts[0] / counts[1])


if __name__ == "__main__":
    main()
