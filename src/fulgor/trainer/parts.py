"""The parts the Trainer's flags name, built once in `Trainer.__init__`: the accelerator, devices and strategy, the
callback list (with the defaults the flags ask for) and the loggers (Lightning's default logger rule)."""

from __future__ import annotations

import os
from typing import Any

from fulgor import accelerators
from fulgor.callbacks.callback import Callback
from fulgor.loggers.csv_logs import CSVLogger
from fulgor.loggers.logger import DummyLogger, Logger
from fulgor.loggers.tensorboard import TensorBoardLogger, tensorboard_available
from fulgor.strategies.registry import select_strategy
from fulgor.strategies.strategy import Strategy
from fulgor.trainer import callback_list
from fulgor.trainer.config import TrainerConfig

__all__ = ["build_callbacks", "build_devices", "build_loggers"]


def build_devices(flags: dict[str, Any]) -> tuple[str, list[int], Strategy]:
    """(accelerator, device ids, strategy) from the `accelerator`, `devices`, `strategy` and `num_nodes` flags; prints
    Lightning's device availability lines."""
    num_nodes = flags["num_nodes"]
    if not isinstance(num_nodes, int) or num_nodes < 1:
        raise ValueError(f"`num_nodes` must be a positive integer, but got {num_nodes}.")
    accelerator = accelerators.resolve_accelerator(flags["accelerator"])
    device_ids = accelerators.parse_devices(accelerator, flags["devices"])
    strategy = flags["strategy"]
    if not isinstance(strategy, Strategy):
        strategy = select_strategy(strategy, accelerator, device_ids, num_nodes)
    # Ranks are known from here on (torchrun/SLURM/launcher variables), so rank-zero printing is right at once.
    strategy.configure(accelerator, device_ids, num_nodes)
    accelerators.log_device_info(accelerator)
    return accelerator, device_ids, strategy


def build_callbacks(flags: dict[str, Any]) -> list[Callback]:
    """The user's callbacks plus the defaults the flags ask for, in call order."""
    return callback_list.build_callbacks(
        flags["callbacks"],
        max_time=flags["max_time"],
        enable_progress_bar=flags["enable_progress_bar"] is not False,
        enable_model_summary=flags["enable_model_summary"] is not False,
        enable_checkpointing=flags["enable_checkpointing"] is not False,
    )


def build_loggers(logger: Any, config: TrainerConfig) -> list[Logger]:
    """The `logger` flag as a list: True/None is Lightning's default (TensorBoard when installed, else CSV), False
    none; under `fast_dev_run` a DummyLogger stands in for them."""
    if logger is None or logger is True:
        # Lightning's rule: TensorBoard when it is installed, else CSV (fulgor skips the tensorboardX notice).
        chosen: Logger
        if tensorboard_available():
            version = os.environ.get("SLURM_JOB_ID") if _running_under_slurm() else None
            chosen = TensorBoardLogger(save_dir=config.default_root_dir, version=version)
        else:
            chosen = CSVLogger(save_dir=config.default_root_dir)
        loggers: list[Logger] = [chosen]
    elif logger is False:
        loggers = []
    else:
        loggers = [logger] if isinstance(logger, Logger) else list(logger)
    if config.fast_dev_run:
        return [DummyLogger()] if loggers else []
    return loggers


def _running_under_slurm() -> bool:
    return "SLURM_NTASKS" in os.environ and os.environ.get("SLURM_JOB_NAME") not in ("bash", "interactive")
