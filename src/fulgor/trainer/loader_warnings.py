"""The warnings Lightning gives about a DataLoader's worker settings when the Trainer takes it: few workers, workers
restarted each epoch under the "spawn" start method, and pinned persistent workers with reloaded loaders."""

from __future__ import annotations

import multiprocessing
from typing import Any

from torch.utils.data import DataLoader

from fulgor.data.sizes import suggested_max_num_workers
from fulgor.errors import PossibleUserWarning
from fulgor.rank import rank_zero_warn

__all__ = ["check_workers"]


def check_workers(loader: Any, name: str, num_devices: int, reload_every_n_epochs: int) -> None:
    """Warn, as Lightning does, about worker settings that slow loading down or are known to be unstable.

    Args:
        loader: the loader as the Trainer will iterate it (anything but a `DataLoader` is left alone).
        name: how the messages name it: "train_dataloader", "val_dataloader", ...
        num_devices: the Trainer's devices on this machine (the CPU cores are shared among their processes).
        reload_every_n_epochs: `Trainer(reload_dataloaders_every_n_epochs)`.
    """
    if not isinstance(loader, DataLoader):
        return
    upper_bound = suggested_max_num_workers(num_devices)
    context = loader.multiprocessing_context
    start_method = context.get_start_method() if context is not None else multiprocessing.get_start_method()
    if loader.num_workers > 0 and start_method == "spawn" and not loader.persistent_workers:
        rank_zero_warn(
            f"Consider setting `persistent_workers=True` in '{name}' to speed up the dataloader worker initialization."
        )
    elif loader.num_workers < 2 and upper_bound > 1:
        rank_zero_warn(  # Lightning's text, its stray backquote included: filters written for it keep matching
            f"The '{name}' does not have many workers which may be a bottleneck. Consider increasing the value of the"
            f" `num_workers` argument` to `num_workers={upper_bound}` in the `DataLoader` to improve performance.",
            PossibleUserWarning,
        )
    if loader.persistent_workers and loader.pin_memory and reload_every_n_epochs > 0:
        rank_zero_warn(
            "The combination of `DataLoader(`pin_memory=True`, `persistent_workers=True`) and `Trainer("
            "reload_dataloaders_every_n_epochs > 0)` can lead to instability due to limitations in PyTorch"
            " (https://github.com/pytorch/pytorch/issues/91252). We recommend setting `pin_memory=False` in this case.",
            PossibleUserWarning,
        )
