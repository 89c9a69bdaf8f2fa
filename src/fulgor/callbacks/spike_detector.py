"""The loss-spike detector as Lightning Fabric has it (`lightning_fabric.utilities.spike.SpikeDetection`, called with
the Fabric object), and `TrainingSpikeException`. The Trainer callback of the same name is in `spike.py`."""

from __future__ import annotations

import json
import math
import os
from collections import deque
from typing import Any, Literal

import torch
from torch import Tensor

__all__ = ["SpikeDetection", "TrainingSpikeException"]


class TrainingSpikeException(RuntimeError):
    """Raised by `SpikeDetection` when a loss spike is detected."""

    def __init__(self, batch_idx: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(f"Training spike detected in batch {batch_idx}", *args, **kwargs)


class SpikeDetection:
    """Stop training with a :class:`TrainingSpikeException` when the loss spikes, after writing the indices of the
    spiking batch and the one before it to a JSON file (batches to skip when resuming).

    A loss is a spike when it is not an improvement over the previous loss (by ``mode``) and differs from the running
    mean of the last ``window`` losses by at least ``atol`` and by at least ``rtol`` times that mean (a tolerance
    of None is always met). Detection starts at batch index ``warmup`` of each epoch.

    Args:
        mode: ``"min"`` when a lower loss is better, ``"max"`` when higher is.
        window: how many recent losses the running mean covers.
        warmup: the first batch index (within the epoch) that is checked.
        atol: the absolute difference from the running mean a spike needs, or None.
        rtol: the difference relative to the running mean a spike needs, or None.
        exclude_batches_path: the folder (or ``.json`` file) to write the batches to skip to; default: the working
            directory (the Trainer's ``default_root_dir`` for the Trainer callback).
        finite_only: True: a NaN or infinite loss is a spike. False: non-finite losses are neither spikes nor
            counted in the mean.
    """

    def __init__(
        self,
        mode: Literal["min", "max"] = "min",
        window: int = 10,
        warmup: int = 1,
        atol: float | None = None,
        rtol: float | None = 2.0,
        exclude_batches_path: str | os.PathLike[str] | None = None,
        finite_only: bool = True,
    ) -> None:
        super().__init__()
        if mode not in ("min", "max"):
            raise ValueError(f"`SpikeDetection(mode={mode!r})` is invalid: use 'min' or 'max'.")
        if not isinstance(window, int) or window < 1:
            raise ValueError(f"`SpikeDetection(window={window!r})` must be a positive int.")
        self.last_val: Tensor | float = 0.0
        self._recent: deque[Tensor] = deque(maxlen=window)  # the running mean's window (not saved, as in Lightning)
        self.mode = mode
        self.warmup = warmup
        self.atol = atol
        self.rtol = rtol
        self.bad_batches: list[int] = []
        self.exclude_batches_path: str | os.PathLike[str] | None = exclude_batches_path
        self.finite_only = finite_only

    @torch.no_grad()
    def on_train_batch_end(self, fabric: Any, loss: Tensor, batch: Any, batch_idx: int) -> None:
        """Check `loss` for a spike (called with the Fabric object, or the Trainer by the callback)."""
        path = os.fspath(self.exclude_batches_path) if self.exclude_batches_path is not None else os.getcwd()
        self.exclude_batches_path = path if path.endswith(".json") else os.path.join(path, "skip_batches.json")
        strategy = fabric.strategy
        spike = bool(batch_idx >= self.warmup and self._is_spike(loss))
        strategy.barrier()
        # Each process checks its own loss; a spike on any of them stops all of them.
        if strategy.reduce_boolean_decision(spike, all=False):
            self._handle_spike(fabric, batch_idx)
        elif self.finite_only or strategy.reduce_boolean_decision(bool(torch.isfinite(loss).all()), all=True):
            self._recent.append(loss.detach().float())
            self.last_val = loss

    def _running_mean(self) -> Tensor:
        if not self._recent:
            return torch.tensor(math.nan)
        return torch.stack([value.to(self._recent[-1].device) for value in self._recent]).mean()

    def _is_spike(self, loss: Tensor) -> bool:
        mean = self._running_mean().to(loss.device)
        if self.finite_only and not bool(torch.isfinite(loss).all()):
            return True
        change = loss - self.last_val
        improved = (change <= 0).all() if self.mode == "min" else (change >= 0).all()
        if bool(improved):
            return False
        distance = abs(loss - mean)
        beyond_atol = self.atol is None or bool(distance >= abs(self.atol))
        return beyond_atol and (self.rtol is None or bool(distance >= abs(self.rtol * mean)))

    def _handle_spike(self, fabric: Any, batch_idx: int) -> None:
        # The spiking batch may be corrupt, or the previous one may have damaged the weights: skip both.
        self.bad_batches.extend([batch_idx - 1, batch_idx])
        if fabric.global_rank == 0:
            path = os.fspath(self.exclude_batches_path or "skip_batches.json")
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            with open(path, "w") as f:
                json.dump(self.bad_batches, f, indent=4)
        raise TrainingSpikeException(batch_idx=batch_idx)

    def state_dict(self) -> dict[str, Any]:
        """The detector's settings and findings (Lightning's keys; the running window is not saved)."""
        return {
            "last_val": self.last_val.item() if isinstance(self.last_val, Tensor) else self.last_val,
            "mode": self.mode,
            "warmup": self.warmup,
            "atol": self.atol,
            "rtol": self.rtol,
            "bad_batches": self.bad_batches,
            "bad_batches_path": self.exclude_batches_path,
            "running": {},
            "mean": {},
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        self.last_val = state_dict["last_val"]
        self.mode = state_dict["mode"]
        self.warmup = state_dict["warmup"]
        self.atol = state_dict["atol"]
        self.rtol = state_dict["rtol"]
        self.bad_batches = list(state_dict["bad_batches"])
        self.exclude_batches_path = state_dict["bad_batches_path"]
