"""1.x `tags.csv` hyperparameter files (`save_hparams_to_tags_csv`, `load_hparams_from_tags_csv`, `convert` for their
values) and `update_hparams`, the nested override Lightning's `core.saving` exports."""

from __future__ import annotations

import ast
import csv
import os
from argparse import Namespace
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

from fulgor import fs
from fulgor.rank import log, rank_zero_warn

__all__ = ["convert", "load_hparams_from_tags_csv", "save_hparams_to_tags_csv", "update_hparams"]


def convert(val: str) -> Any:
    """A tags.csv value as the Python literal it spells (`"3"` -> 3, `"True"` -> True, `"[1, 2]"` -> [1, 2]), or the
    string itself when it is not a literal."""
    try:
        return ast.literal_eval(val)
    except (ValueError, SyntaxError) as error:
        log.debug(error)
        return val


def load_hparams_from_tags_csv(tags_csv: str | Path) -> dict[str, Any]:
    """The hparams of a `key,value` CSV file (values through `convert`); `{}` with a RuntimeWarning if it is missing.

    Args:
        tags_csv: a local path or fsspec URL.
    """
    if not fs.exists(tags_csv):
        rank_zero_warn(f"Missing Tags: {tags_csv}.", RuntimeWarning)
        return {}
    with fs.open(tags_csv, "r", newline="") as fp:
        rows = list(csv.reader(fp, delimiter=","))
    return {row[0]: convert(row[1]) for row in rows[1:]}


def save_hparams_to_tags_csv(tags_csv: str | Path, hparams: Mapping[str, Any] | Namespace) -> None:
    """Write `hparams` as a `key,value` CSV file with a header row.

    Args:
        tags_csv: the file (its folder must exist).
        hparams: a dict or Namespace.

    Raises:
        RuntimeError: the folder does not exist.
    """
    folder = os.path.dirname(str(tags_csv))
    if not fs.isdir(folder):
        raise RuntimeError(f"Missing folder: {folder}.")
    values = vars(hparams) if isinstance(hparams, Namespace) else hparams
    with fs.open(tags_csv, "w", newline="") as fp:
        writer = csv.writer(fp)
        writer.writerow(["key", "value"])
        writer.writerows(values.items())


def update_hparams(hparams: MutableMapping[str, Any], updates: Mapping[str, Any]) -> None:
    """Apply `updates` to `hparams` in place: new keys are added, nested dicts updated key by key, other values
    replaced."""
    for key, value in updates.items():
        if key in hparams and isinstance(value, dict):
            update_hparams(hparams[key], value)
        else:
            hparams[key] = value
