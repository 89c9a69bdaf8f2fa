"""`DeviceStatsMonitor`: the accelerator's device statistics (CPU usage via psutil, CUDA memory stats) logged to the
Trainer's loggers around every training, validation and test batch, at Lightning's logging cadence."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

import torch

from fulgor.callbacks.callback import Callback
from fulgor.errors import MisconfigurationException
from fulgor.hardware import get_cpu_stats

if TYPE_CHECKING:
    from fulgor.module import LightningModule
    from fulgor.trainer.trainer import Trainer

__all__ = ["DeviceStatsMonitor"]


class DeviceStatsMonitor(Callback):
    """Log device statistics as ``DeviceStatsMonitor.<hook>/<stat>`` (the logger's group separator in place of
    ``/``) in ``on_train_batch_start/end``, ``on_validation_batch_start/end`` and ``on_test_batch_start/end``, every
    ``log_every_n_steps``, at the trainer's logging step.

    On CPU the stats are ``cpu_percent``, ``cpu_vm_percent`` and ``cpu_swap_percent`` (needs ``psutil``); on CUDA,
    ``torch.cuda.memory_stats`` (``allocated_bytes.all.current``, ...).

    Args:
        cpu_stats: None: CPU stats only when training on CPU; True: also on other accelerators; False: never.

    Raises:
        MisconfigurationException: at fit start when the Trainer has no logger.
        ModuleNotFoundError: at fit start on CPU when ``psutil`` is missing and ``cpu_stats`` is None.
    """

    def __init__(self, cpu_stats: bool | None = None) -> None:
        self._cpu_stats = cpu_stats
        self._eval_batches = 0

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if not trainer.loggers:
            raise MisconfigurationException("Cannot use `DeviceStatsMonitor` callback with `Trainer(logger=False)`.")
        device = trainer.strategy.root_device
        if self._cpu_stats is None and device.type == "cpu" and importlib.util.find_spec("psutil") is None:
            raise ModuleNotFoundError(
                "`DeviceStatsMonitor` cannot log CPU stats as `psutil` is not installed. Install it with"
                " `pip install psutil`, or pass `DeviceStatsMonitor(cpu_stats=False)`."
            )

    def _log_device_stats(self, trainer: Trainer, hook: str, loop_batches: int | None) -> None:
        """Log the stats from `hook`: in training every `log_every_n_steps` optimizer steps, in evaluation every
        `log_every_n_steps` batches of the running loop (`loop_batches`)."""
        every = trainer.log_every_n_steps
        count = trainer.state.batches_that_stepped + 1 if loop_batches is None else loop_batches
        if not every or not (count % every == 0 or trainer.should_stop):
            return
        device = trainer.strategy.root_device
        if self._cpu_stats is False and device.type == "cpu":
            return
        stats = _device_stats(trainer, device)
        if self._cpu_stats and device.type != "cpu":
            stats.update(get_cpu_stats())
        prefix = f"{type(self).__qualname__}.{hook}"
        for logger in trainer.loggers:
            separator = logger.group_separator
            logger.log_metrics(
                {f"{prefix}{separator}{k}": v for k, v in stats.items()}, step=trainer.state.batches_that_stepped
            )

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        self._log_device_stats(trainer, "on_train_batch_start", None)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._log_device_stats(trainer, "on_train_batch_end", None)

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._eval_batches = 0  # batches of the running loop (the sanity check's too), over all its dataloaders

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._eval_batches = 0

    def on_validation_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._eval_batches += 1
        self._log_device_stats(trainer, "on_validation_batch_start", self._eval_batches)

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._log_device_stats(trainer, "on_validation_batch_end", self._eval_batches)

    def on_test_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._eval_batches += 1
        self._log_device_stats(trainer, "on_test_batch_start", self._eval_batches)

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._log_device_stats(trainer, "on_test_batch_end", self._eval_batches)


def _device_stats(trainer: Trainer, device: torch.device) -> dict[str, Any]:
    """The accelerator's statistics of `device` (`Accelerator.get_device_stats`: psutil's CPU figures on the CPU,
    `torch.cuda.memory_stats` on CUDA)."""
    return dict(trainer.accelerator.get_device_stats(device))
