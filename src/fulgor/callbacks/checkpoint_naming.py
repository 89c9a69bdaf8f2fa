"""ModelCheckpoint's file names: the `filename` template filled from the metrics, the default folder (the first
logger's `version_N/checkpoints`), and which files of a folder are last checkpoints."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from fulgor import fs

if TYPE_CHECKING:
    from fulgor.trainer.trainer import Trainer

__all__ = ["default_dir", "fill_template", "last_checkpoints"]


def fill_template(template: str, metrics: dict[str, Tensor], auto_insert_metric_name: bool, equals: str) -> str:
    """`"{epoch}-{val_loss:.2f}"` -> `"epoch=2-val_loss=0.12"` (names inserted when `auto_insert_metric_name`); a key
    missing from `metrics` is added to it as 0."""
    # Longest names first, so "{epoch_test" is rewritten before "{epoch".
    groups = sorted(re.findall(r"(\{.*?)[:\}]", template), key=len, reverse=True)
    for group in groups:
        key = group[1:]
        if auto_insert_metric_name:
            template = template.replace(group, key + equals + "{" + key)
        template = template.replace(group, f"{{0[{key}]")  # an index lookup, so names with "." or "/" work
        if key not in metrics:
            metrics[key] = torch.tensor(0)
    return template.format(metrics)


def default_dir(trainer: Trainer) -> str:
    """Where checkpoints go without a `dirpath`: `<save_dir>/<name>/<version>/checkpoints` of the first logger, else
    `<default_root_dir>/checkpoints`."""
    if trainer.loggers:
        logger = trainer.loggers[0]
        save_dir = logger.save_dir if logger.save_dir is not None else trainer.default_root_dir
        version = logger.version
        version = version if isinstance(version, str) else f"version_{version}"
        return fs.join(save_dir, str(logger.name), version, "checkpoints")
    return fs.join(trainer.default_root_dir, "checkpoints")


def last_checkpoints(folder: str, last_name: str, extension: str) -> set[str]:
    """The `last*.ckpt` files of `folder` (`last.ckpt`, `last-v1.ckpt`, ...); none when it does not exist."""
    pattern = rf"^{last_name}(-(\d+))?"
    # normpath would turn "s3://b" into "s3:/b": URLs are joined as they are.
    remote = fs.is_remote(folder)
    return {
        fs.join(folder, name) if remote else os.path.normpath(fs.join(folder, name))
        for name in fs.listdir(folder)
        if name.endswith(extension) and re.match(pattern, Path(name).stem)
    }
