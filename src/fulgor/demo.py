"""The `fulgor demo`: the seed notes' LitAutoEncoder (section 1) trained, validated, tested and used for prediction
on scikit-learn's 8x8 handwritten digits, which ship inside scikit-learn (no download)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, TensorDataset, random_split

import fulgor as pl
from fulgor.loggers.csv_logs import CSVLogger
from fulgor.plot import plot_metrics, reconstruction_grid

PIXELS = 8 * 8  # the seed's MNIST images are 28 * 28; the shipped digits are 8 * 8
SPLIT = (1200, 300, 297)  # train / val / test: the 1797 digits
SEED = 42


class Encoder(nn.Module):
    """The seed's encoder: pixels -> 64 -> 3."""

    def __init__(self) -> None:
        super().__init__()
        self.l1 = nn.Sequential(nn.Linear(PIXELS, 64), nn.ReLU(), nn.Linear(64, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.l1(x)  # type: ignore[no-any-return]


class Decoder(nn.Module):
    """The seed's decoder: 3 -> 64 -> pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.l1 = nn.Sequential(nn.Linear(3, 64), nn.ReLU(), nn.Linear(64, PIXELS))

    def forward(self, x: Tensor) -> Tensor:
        return self.l1(x)  # type: ignore[no-any-return]


class LitAutoEncoder(pl.LightningModule):
    """The seed's LitAutoEncoder (sections 1 and 2.1) with a `predict_step` that returns the 3-d codes."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, lr: float = 1e-3) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["encoder", "decoder"])  # writes lr to hparams.yaml
        self.encoder = encoder
        self.decoder = decoder
        self.lr = lr
        self.example_input_array = torch.zeros(1, PIXELS)  # gives the summary its In/Out sizes

    def forward(self, x: Tensor) -> Tensor:
        return self.encoder(x.view(x.size(0), -1))  # type: ignore[no-any-return]

    def _reconstruction_loss(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        x, _ = batch
        x = x.view(x.size(0), -1)
        return F.mse_loss(self.decoder(self.encoder(x)), x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss = self._reconstruction_loss(batch)
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.log("val_loss", self._reconstruction_loss(batch), prog_bar=True)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.log("test_loss", self._reconstruction_loss(batch))

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, _ = batch
        return self.encoder(x.view(x.size(0), -1))  # type: ignore[no-any-return]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)


@dataclass
class DemoResult:
    """What the demo measured and where it wrote its files."""

    train_loss: float
    val_loss: float
    test_loss: float
    first_val_loss: float
    num_predictions: int
    log_dir: str
    files: list[str] = field(default_factory=list)


def load_digits_dataset() -> TensorDataset:
    """The 1797 8x8 digits as a TensorDataset of (image in [0, 1] shaped (1, 8, 8), label).

    Raises:
        ModuleNotFoundError: scikit-learn is not installed (the message says how to install it).
    """
    try:
        from sklearn.datasets import load_digits
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            "The fulgor demo trains on scikit-learn's built-in 8x8 digits, but scikit-learn is not installed."
            " Install it with `pip install scikit-learn` (or `pip install 'fulgor[demo]'`)."
        ) from err
    digits = load_digits()
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    return TensorDataset(images, torch.tensor(digits.target))


def make_loaders(dataset: Dataset[Any], batch_size: int = 32) -> tuple[DataLoader[Any], ...]:
    """Seeded train/val/test split; the train loader shuffles."""
    train, val, test = random_split(dataset, SPLIT, generator=torch.Generator().manual_seed(SEED))
    return (
        DataLoader(train, batch_size=batch_size, shuffle=True),
        DataLoader(val, batch_size=100),
        DataLoader(test, batch_size=100),
    )


def run_demo(epochs: int = 20, root: str | os.PathLike[str] = ".", progress_bar: bool = True) -> DemoResult:
    """Train, validate, test and predict with the LitAutoEncoder on the digits; logs go to `<root>/lightning_logs/`.

    Args:
        epochs: training epochs (each is 38 batches of 32 digits).
        root: the Trainer's `default_root_dir`.
        progress_bar: show the tqdm progress bar.

    Returns:
        The losses and the paths of the files written.
    """
    dataset = load_digits_dataset()
    pl.seed_everything(SEED)
    train_loader, val_loader, test_loader = make_loaders(dataset)
    model = LitAutoEncoder(Encoder(), Decoder())
    trainer = pl.Trainer(
        max_epochs=epochs,
        default_root_dir=os.fspath(root),
        # A CSV file everyone can open (and `fulgor plot` can draw), whatever optional loggers are installed.
        logger=CSVLogger(save_dir=os.fspath(root)),
        log_every_n_steps=10,
        enable_progress_bar=progress_bar,
    )
    trainer.fit(model, train_loader, val_loader)
    train_loss = float(trainer.callback_metrics["train_loss_epoch"])
    val_loss = float(trainer.callback_metrics["val_loss"])
    (test_metrics,) = trainer.test(model, test_loader)
    predictions = trainer.predict(model, test_loader)
    assert predictions is not None
    log_dir = os.path.abspath(trainer.log_dir or os.fspath(root))
    _draw_pictures(model, test_loader, log_dir)
    return DemoResult(
        train_loss=train_loss,
        val_loss=val_loss,
        test_loss=test_metrics["test_loss"],
        first_val_loss=_first_logged(Path(log_dir) / "metrics.csv", "val_loss"),
        num_predictions=sum(len(p) for p in predictions),
        log_dir=log_dir,
        files=_visible_files(Path(log_dir)),
    )


def _visible_files(folder: Path) -> list[str]:
    """The files under `folder`, without hidden ones (a checkpoint's `.name` temp or checksum files are internal)."""
    found = (p for p in folder.rglob("*") if p.is_file())
    return sorted(str(p) for p in found if not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _draw_pictures(model: LitAutoEncoder, loader: DataLoader[Any], log_dir: str) -> None:
    """Loss curves and a grid of original vs reconstructed digits, when matplotlib is installed."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        return
    plot_metrics(log_dir)
    images, _ = next(iter(loader))
    model.eval()
    with torch.no_grad():
        codes = model.encoder(images[:8].flatten(1))
        reconstructions = model.decoder(codes).view(images[:8].shape)
    reconstruction_grid(images[:8], reconstructions, os.path.join(log_dir, "reconstructions.png"))


def _first_logged(metrics_csv: Path, column: str) -> float:
    """The first value of `column` in a CSVLogger file (nan when absent)."""
    import csv

    if not metrics_csv.is_file():
        return float("nan")
    with metrics_csv.open(newline="") as f:
        for row in csv.DictReader(f):
            if row.get(column):
                return float(row[column])
    return float("nan")


def format_report(result: DemoResult) -> str:
    """The short final report the `fulgor demo` command prints."""
    checkpoints = [f for f in result.files if f.endswith(".ckpt")]
    lines = [
        "",
        "fulgor demo: LitAutoEncoder on scikit-learn's 8x8 digits",
        f"  train loss (last epoch): {result.train_loss:.4f}",
        f"  val loss:  {result.first_val_loss:.4f} after epoch 0 -> {result.val_loss:.4f} at the end",
        f"  test loss: {result.test_loss:.4f}",
        f"  predict:   {result.num_predictions} codes of size 3 (one per test digit)",
        f"  logs:      {result.log_dir}",
    ]
    lines += [f"             {f}" for f in result.files if not f.endswith(".ckpt")]
    if checkpoints:
        lines += [f"  checkpoint: {f}" for f in checkpoints]
    else:
        lines.append("  checkpoints: none written")
    return "\n".join(lines)
