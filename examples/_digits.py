"""Stand-ins for the seed notes' MNIST: scikit-learn's 8x8 digits (shipped, no download), and a temp-dir helper."""

from __future__ import annotations

import argparse
import os
import tempfile

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset


def mnist_like(n: int | None = None) -> TensorDataset:
    """The digits as MNIST-shaped (1, 28, 28) images in [0, 1] with their labels, like `MNIST(transform=ToTensor())`.

    The 8x8 images are upsampled to 28x28 so the notes' `nn.Linear(28 * 28, 64)` runs unchanged.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images[:n] / 16.0, dtype=torch.float32).unsqueeze(1)
    images = F.interpolate(images, size=(28, 28), mode="bilinear", align_corners=False)
    return TensorDataset(images, torch.tensor(digits.target[:n]))


def enter_root(description: str) -> str:
    """Parse `--root DIR` (default: a fresh temp dir), chdir there and return it: every file lands inside it."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--root", default=None, help="where lightning_logs/ goes (default: a new temp directory)")
    root = parser.parse_args().root or tempfile.mkdtemp(prefix="fulgor-example-")
    os.makedirs(root, exist_ok=True)
    os.chdir(root)
    print(f"root: {os.getcwd()}")
    return os.getcwd()
