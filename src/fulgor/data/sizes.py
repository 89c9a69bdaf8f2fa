"""Lengths of dataloaders and datasets (`has_len`, `sized_len`, `has_len_all_ranks`, `has_iterable_dataset`) and the
suggested upper bound for `num_workers`."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch.utils.data import IterableDataset

from fulgor.rank import rank_zero_warn

__all__ = ["has_iterable_dataset", "has_len", "has_len_all_ranks", "sized_len", "suggested_max_num_workers"]

_ITERABLE_WITH_LEN = (
    "Your `IterableDataset` has `__len__` defined. In combination with multi-process data loading (when"
    " num_workers > 1), `__len__` could be inaccurate if each worker is not configured independently to avoid having"
    " duplicate data."
)


def sized_len(dataloader: object) -> int | None:
    """`len(dataloader)`, or None when it has no length (or its `__len__` raises NotImplementedError)."""
    try:
        return len(dataloader)  # type: ignore[arg-type]
    except (TypeError, NotImplementedError):
        return None


def has_iterable_dataset(dataloader: object) -> bool:
    """Whether `dataloader.dataset` is an IterableDataset."""
    return isinstance(getattr(dataloader, "dataset", None), IterableDataset)


def has_len(dataloader: object) -> bool:
    """Whether `dataloader` has a length; warns (rank 0) when the length is 0 or comes from an IterableDataset."""
    length = sized_len(dataloader)
    if length == 0:
        rank_zero_warn(f"`{type(dataloader).__name__}` returned 0 length. Please make sure this was your intention.")
    if length is not None and has_iterable_dataset(dataloader):
        rank_zero_warn(_ITERABLE_WITH_LEN)
    return length is not None


def has_len_all_ranks(
    dataloader: object, strategy: Any, allow_zero_length_dataloader_with_multiple_devices: bool = False
) -> bool:
    """Whether `dataloader` has a length on this rank, checking its length summed over all ranks.

    Args:
        dataloader: the dataloader.
        strategy: the run's strategy (its `reduce` sums the lengths, `root_device` holds the tensor).
        allow_zero_length_dataloader_with_multiple_devices: only warn (instead of raising) when this rank's loader is
            empty but others are not.

    Raises:
        RuntimeError: this rank's loader is empty while others are not, and that is not allowed.
    """
    local = sized_len(dataloader)
    if local is None:
        return False
    total = strategy.reduce(torch.tensor(local, device=strategy.root_device), reduce_op="sum")
    name = type(dataloader).__name__
    if total == 0:
        rank_zero_warn(f"Total length of `{name}` across ranks is zero. Please make sure this was your intention.")
    if total > 0 and local == 0:
        if not allow_zero_length_dataloader_with_multiple_devices:
            raise RuntimeError(
                f"`{name}` within local rank has zero length. Please make sure that it returns at least 1 batch."
            )
        rank_zero_warn(
            f"Total length of `{name}` across ranks is zero, but local rank has zero length. Please be cautious of"
            " uneven batch length."
        )
    if has_iterable_dataset(dataloader):
        rank_zero_warn(_ITERABLE_WITH_LEN)
    return True


def suggested_max_num_workers(local_world_size: int) -> int:
    """An upper bound for a DataLoader's `num_workers`: the CPU cores this process may use, shared among the processes
    on this machine, less one for each process itself (at least 1).

    Args:
        local_world_size: the number of training processes on this machine (the Trainer's `devices`).

    Raises:
        ValueError: `local_world_size` is below 1.
    """
    if local_world_size < 1:
        raise ValueError(f"`local_world_size` should be >= 1, got {local_world_size}.")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cpus // local_world_size - 1)
