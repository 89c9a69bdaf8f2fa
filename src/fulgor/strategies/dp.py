"""DataParallelStrategy (Fabric's `strategy="dp"`): one process drives several devices through `torch.nn.DataParallel`,
which splits each batch across them; every collective is local to the process."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import DataParallel

from fulgor.accelerators import Accelerator
from fulgor.checkpoint_io import CheckpointIO
from fulgor.data.conversion import map_leaves
from fulgor.data.transfer import move_data_to_device
from fulgor.precision import Precision
from fulgor.strategies.parallel import ParallelStrategy
from fulgor.strategies.strategy import check_reduce_group

__all__ = ["DataParallelStrategy"]

# What `all_reduce` does to the per-device values DataParallel gathered into one tensor.
_LOCAL_REDUCTIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "mean": torch.mean,
    "avg": torch.mean,
    "sum": torch.sum,
    "max": torch.amax,
    "min": torch.amin,
}


class DataParallelStrategy(ParallelStrategy):
    """Replicate the module on every device of `parallel_devices` in this one process (`torch.nn.DataParallel`):
    each forward splits the batch across them and gathers the outputs on the first, the root device. On the CPU
    `DataParallel` has no devices to split over and simply runs the module.

    Args:
        accelerator: the hardware (default: from Fabric's `accelerator` flag).
        parallel_devices: the devices to replicate on (default: from the `devices` flag); the first is the root.
        checkpoint_io: how checkpoint files are written (default: `TorchCheckpointIO`).
        precision_plugin: the precision (default: from the `precision` flag).
        precision: Lightning Fabric's name for `precision_plugin` (give one of the two).
    """

    strategy_name = "dp"

    def __init__(
        self,
        accelerator: Accelerator | None = None,
        parallel_devices: list[torch.device] | None = None,
        checkpoint_io: CheckpointIO | None = None,
        precision_plugin: Precision | None = None,
        precision: Precision | None = None,
    ) -> None:
        super().__init__(
            accelerator=accelerator,
            parallel_devices=parallel_devices,
            cluster_environment=None,
            checkpoint_io=checkpoint_io,
            precision_plugin=precision_plugin,
            precision=precision,
        )

    def configure(self, accelerator: Accelerator, parallel_devices: list[torch.device], num_nodes: int) -> None:
        """Take the devices of the `devices` flag (unless the strategy was built with its own)."""
        super().configure(accelerator, parallel_devices, num_nodes)
        if self._parallel_devices is None:
            self._parallel_devices = list(parallel_devices)

    @property
    def root_device(self) -> torch.device:
        """The first of `parallel_devices`: where inputs go and outputs are gathered."""
        return self.parallel_devices[0]

    @property
    def distributed_sampler_kwargs(self) -> None:  # type: ignore[override]  # one process: no sampler to inject
        """None: one process reads the whole dataset (DataParallel splits each batch itself)."""
        return None

    def setup_module(self, module: nn.Module) -> DataParallel[nn.Module]:
        """Wrap the module in `torch.nn.DataParallel` over `parallel_devices`."""
        self.model = DataParallel(module=module, device_ids=self.parallel_devices)
        return self.model

    def module_to_device(self, module: nn.Module) -> None:
        """Move the module to the root device (DataParallel replicates it from there at each forward)."""
        module.to(self.root_device)

    def batch_to_device(self, batch: Any, device: torch.device | None = None, dataloader_idx: int = 0) -> Any:
        """The batch moved to `device` (default: the root device; DataParallel scatters it from there)."""
        return move_data_to_device(batch, device or self.root_device)

    def reduce(self, tensor: Any, group: Any | None = None, reduce_op: Any = "mean") -> Any:
        """Reduce each tensor in `tensor` (any collection) over its elements, the values DataParallel gathered from
        the devices: "mean" (default, in the tensor's dtype), "sum", "max" or "min"; other values are unchanged.

        Raises:
            ValueError: an unknown `reduce_op`.
        """
        check_reduce_group(group)
        name = str(getattr(reduce_op, "name", reduce_op) or "mean").lower()
        if name not in _LOCAL_REDUCTIONS:
            raise ValueError(
                f"`DataParallelStrategy.all_reduce(reduce_op={reduce_op!r})` is not supported. Use one of"
                f" {', '.join(_LOCAL_REDUCTIONS)}."
            )
        reduction = _LOCAL_REDUCTIONS[name]

        def reduce_one(value: Any) -> Any:
            if not isinstance(value, Tensor):
                return value
            return reduction(value.float()).to(value.dtype)

        return map_leaves(tensor, reduce_one)

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        """The decision itself: there is one process."""
        return decision

    def get_module_state_dict(self, module: nn.Module) -> dict[str, Any]:
        """The module's state dict without DataParallel's `module.` key prefix."""
        return super().get_module_state_dict(_unwrap(module))

    def load_module_state_dict(self, module: nn.Module, state_dict: Mapping[str, Any], strict: bool = True) -> None:
        """Load a plain state dict into the module (into the module DataParallel wraps, when wrapped)."""
        super().load_module_state_dict(_unwrap(module), state_dict, strict=strict)


def _unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, DataParallel) else module
