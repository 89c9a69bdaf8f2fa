"""Which optional packages are installed, as the `_X_AVAILABLE` / `_TORCH_GREATER_EQUAL_X` flags Lightning's
`utilities.imports` defines (plain bools). Packages are found with `importlib.util.find_spec` and versions read from
their metadata: nothing here imports the package it asks about."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
import re
import sys

import torch

__all__ = ["package_available", "version_at_least"]


def package_available(name: str) -> bool:
    """Whether the top-level package `name` can be imported (found on the path, not imported)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:3])


def _installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def version_at_least(distribution: str, minimum: str) -> bool:
    """Whether `distribution` is installed at version `minimum` or newer (local suffixes like `+cu124` ignored)."""
    installed = torch.__version__ if distribution == "torch" else _installed_version(distribution)
    return installed is not None and _version_tuple(installed) >= _version_tuple(minimum)


def _torch_between(low: str, below: str) -> bool:
    return version_at_least("torch", low) and not version_at_least("torch", below)


_IS_WINDOWS = platform.system() == "Windows"
_IS_INTERACTIVE = hasattr(sys, "ps1") or bool(sys.flags.interactive)
_PYTHON_GREATER_EQUAL_3_10_0 = sys.version_info >= (3, 10)
_PYTHON_GREATER_EQUAL_3_11_0 = sys.version_info >= (3, 11)

_TORCH_GREATER_EQUAL_2_2 = version_at_least("torch", "2.2.0")
_TORCH_GREATER_EQUAL_2_3 = version_at_least("torch", "2.3.0")
_TORCH_GREATER_EQUAL_2_4 = version_at_least("torch", "2.4.0")
_TORCH_GREATER_EQUAL_2_4_1 = version_at_least("torch", "2.4.1")
_TORCH_GREATER_EQUAL_2_5 = version_at_least("torch", "2.5.0")
_TORCH_GREATER_EQUAL_2_6 = version_at_least("torch", "2.6.0")
_TORCH_GREATER_EQUAL_2_8 = version_at_least("torch", "2.8.0")
_TORCH_EQUAL_2_4_0 = _torch_between("2.4.0", "2.4.1")
_TORCH_EQUAL_2_8 = _torch_between("2.8.0", "2.9.0")
_TORCH_EQUAL_2_9 = _torch_between("2.9.0", "2.10.0")
_TORCH_LESS_EQUAL_2_6 = not version_at_least("torch", "2.6.1")

_TORCHMETRICS_GREATER_EQUAL_0_8_0 = version_at_least("torchmetrics", "0.8.0")
_TORCHMETRICS_GREATER_EQUAL_0_9_1 = version_at_least("torchmetrics", "0.9.1")
_TORCHMETRICS_GREATER_EQUAL_0_11 = version_at_least("torchmetrics", "0.11.0")
_TORCHMETRICS_GREATER_EQUAL_1_0_0 = version_at_least("torchmetrics", "1.0.0")

_NUMPY_AVAILABLE = package_available("numpy")
_TORCHVISION_AVAILABLE = package_available("torchvision")
_OMEGACONF_AVAILABLE = package_available("omegaconf")
_RICH_AVAILABLE = package_available("rich") and version_at_least("rich", "10.2.2")
_TENSORBOARD_AVAILABLE = package_available("tensorboard")
_TENSORBOARDX_AVAILABLE = package_available("tensorboardX")
_JSONARGPARSE_AVAILABLE = package_available("jsonargparse")
_MLFLOW_AVAILABLE = package_available("mlflow")
_WANDB_AVAILABLE = package_available("wandb")
_COMET_AVAILABLE = package_available("comet_ml")
_NEPTUNE_AVAILABLE = package_available("neptune")
_FSSPEC_AVAILABLE = package_available("fsspec")

# Features fulgor refuses (fulgor.unavailable) are unavailable even where their package is installed, so code that
# branches on these flags takes its non-XLA / non-DeepSpeed path.
_XLA_AVAILABLE = False
_TPU_AVAILABLE = False
_DEEPSPEED_AVAILABLE = False
_BITSANDBYTES_AVAILABLE = False
_TRANSFORMER_ENGINE_AVAILABLE = False

# Every flag is exported by name, so `from <Lightning path>.utilities.imports import _X_AVAILABLE` finds it.
__all__ += sorted(name for name in globals() if name.startswith("_") and name.lstrip("_")[:1].isupper())
