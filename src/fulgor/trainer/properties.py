"""The Trainer's read-mostly views (counters, stage flags, metric dictionaries, devices, loggers), kept apart from
trainer.py so the facade file stays about flags and entry points."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from fulgor.trainer.state import RunningStage, TrainerFn

if TYPE_CHECKING:
    from fulgor.callbacks.callback import Callback
    from fulgor.loggers.logger import Logger
    from fulgor.module import LightningModule
    from fulgor.precision import Precision
    from fulgor.strategies.strategy import Strategy
    from fulgor.trainer.logging import MetricDicts, ResultStore
    from fulgor.trainer.state import TrainerState


class TrainerProperties:
    """Properties users and callbacks read from the Trainer. Attributes are set by `Trainer.__init__`."""

    state: TrainerState
    strategy: Strategy
    precision_plugin: Precision
    callbacks: list[Callback]
    loggers: list[Logger]
    default_root_dir: str
    lightning_module_: LightningModule | None
    _metrics: MetricDicts
    _results: ResultStore | None
    _accelerator: str
    _device_ids: list[int]
    _loaders: dict[RunningStage, list[Any]]
    _limits: dict[RunningStage, list[int | float]]
    _train_loader: Any
    num_nodes: int
    limit_val_batches: int | float
    num_sanity_val_steps: int | float
    log_every_n_steps: int

    # ------------------------------------------------------------------ counters
    @property
    def current_epoch(self) -> int:
        """Epochs completed so far (the index of the running epoch)."""
        return self.state.epoch

    @property
    def global_step(self) -> int:
        """Optimizer steps taken so far."""
        return self.state.global_step

    @property
    def is_last_batch(self) -> bool:
        return self.state.is_last_batch

    @property
    def should_stop(self) -> bool:
        """Set to True to stop training at the next point where stopping is allowed (min_epochs/min_steps)."""
        return self.state.should_stop

    @should_stop.setter
    def should_stop(self, value: bool) -> None:
        self.state.should_stop = value

    @property
    def interrupted(self) -> bool:
        return self.state.status.value == "interrupted"

    # ------------------------------------------------------------------ stage flags
    def _stage(self, stage: RunningStage | None) -> None:
        self.state.stage = stage

    @property
    def training(self) -> bool:
        return self.state.stage == RunningStage.TRAINING

    @training.setter
    def training(self, value: bool) -> None:
        if value:
            self.state.stage = RunningStage.TRAINING
        elif self.training:
            self.state.stage = None

    @property
    def sanity_checking(self) -> bool:
        return self.state.stage == RunningStage.SANITY_CHECKING

    @sanity_checking.setter
    def sanity_checking(self, value: bool) -> None:
        if value:
            self.state.stage = RunningStage.SANITY_CHECKING
        elif self.sanity_checking:
            self.state.stage = None

    @property
    def validating(self) -> bool:
        return self.state.stage == RunningStage.VALIDATING

    @validating.setter
    def validating(self, value: bool) -> None:
        if value:
            self.state.stage = RunningStage.VALIDATING
        elif self.validating:
            self.state.stage = None

    @property
    def testing(self) -> bool:
        return self.state.stage == RunningStage.TESTING

    @testing.setter
    def testing(self, value: bool) -> None:
        if value:
            self.state.stage = RunningStage.TESTING
        elif self.testing:
            self.state.stage = None

    @property
    def predicting(self) -> bool:
        return self.state.stage == RunningStage.PREDICTING

    @predicting.setter
    def predicting(self, value: bool) -> None:
        if value:
            self.state.stage = RunningStage.PREDICTING
        elif self.predicting:
            self.state.stage = None

    # ------------------------------------------------------------------ metrics
    @property
    def callback_metrics(self) -> dict[str, Tensor]:
        """Everything logged, as tensors: what ModelCheckpoint and EarlyStopping monitor."""
        if self._results is not None:
            self._results.flush(self._metrics)
        return self._metrics.callback

    @property
    def logged_metrics(self) -> dict[str, Tensor]:
        """The values sent to loggers (`logger=True`), under their `_step`/`_epoch` names when forked."""
        if self._results is not None:
            self._results.flush(self._metrics)
        return self._metrics.logged

    @property
    def progress_bar_metrics(self) -> dict[str, float]:
        """The `prog_bar=True` values as Python numbers (read from the device only when asked for)."""
        if self._results is not None:
            self._results.flush(self._metrics)
        return {k: float(v.item()) for k, v in self._metrics.pbar.items()}

    # ------------------------------------------------------------------ model, devices, processes
    @property
    def lightning_module(self) -> LightningModule:
        module = self.lightning_module_
        if module is None:
            raise AttributeError("The Trainer has no LightningModule attached yet; call `fit`/`validate`/... first.")
        return module

    @property
    def model(self) -> torch.nn.Module | None:
        """The model as the strategy runs it (the LightningModule itself on a single device)."""
        return self.strategy.model if self.strategy.model is not None else self.lightning_module_

    @property
    def accelerator(self) -> str:
        return self._accelerator

    @property
    def device_ids(self) -> list[int]:
        return self._device_ids

    @property
    def num_devices(self) -> int:
        return len(self._device_ids)

    @property
    def root_device(self) -> torch.device:
        return self.strategy.root_device

    @property
    def precision(self) -> str:
        """The normalised precision name, e.g. "32-true" or "bf16-mixed"."""
        return self.precision_plugin.name

    @property
    def global_rank(self) -> int:
        return self.strategy.global_rank

    @property
    def local_rank(self) -> int:
        return self.strategy.local_rank

    @property
    def node_rank(self) -> int:
        return self.strategy.node_rank

    @property
    def world_size(self) -> int:
        return self.strategy.world_size

    @property
    def is_global_zero(self) -> bool:
        return self.strategy.is_global_zero

    # ------------------------------------------------------------------ loggers and directories
    @property
    def logger(self) -> Logger | None:
        return self.loggers[0] if self.loggers else None

    @logger.setter
    def logger(self, logger: Logger | None) -> None:
        self.loggers = [] if logger is None else [logger]

    @property
    def log_dir(self) -> str | None:
        """The first logger's directory (or `default_root_dir` without loggers)."""
        if not self.loggers:
            return self.default_root_dir
        return self.loggers[0].log_dir or self.loggers[0].save_dir or self.default_root_dir

    # ------------------------------------------------------------------ callbacks
    @property
    def progress_bar_callback(self) -> Callback | None:
        from fulgor.callbacks.progress import ProgressBar

        return next((cb for cb in self.callbacks if isinstance(cb, ProgressBar)), None)

    @property
    def checkpoint_callbacks(self) -> list[Callback]:
        from fulgor.callbacks.checkpoint import Checkpoint

        return [cb for cb in self.callbacks if isinstance(cb, Checkpoint)]

    @property
    def checkpoint_callback(self) -> Callback | None:
        callbacks = self.checkpoint_callbacks
        return callbacks[0] if callbacks else None

    @property
    def early_stopping_callbacks(self) -> list[Callback]:
        from fulgor.callbacks.early_stopping import EarlyStopping

        return [cb for cb in self.callbacks if isinstance(cb, EarlyStopping)]

    @property
    def early_stopping_callback(self) -> Callback | None:
        callbacks = self.early_stopping_callbacks
        return callbacks[0] if callbacks else None

    # ------------------------------------------------------------------ data
    @property
    def enable_validation(self) -> bool:
        """Whether fit will validate: a validation_step, validation data, and limit_val_batches > 0."""
        from fulgor.module import is_overridden

        source = getattr(self, "_sources", {}).get("val")
        module = self.lightning_module_
        return bool(
            source is not None
            and module is not None
            and source.is_defined()
            and is_overridden("validation_step", module)
            and self.limit_val_batches > 0
        )

    @property
    def num_val_batches(self) -> list[int | float]:
        return list(self._limits.get(RunningStage.VALIDATING, []))

    @property
    def num_sanity_val_batches(self) -> list[int | float]:
        return [min(self.num_sanity_val_steps, n) for n in self.num_val_batches]

    @property
    def num_test_batches(self) -> list[int | float]:
        return list(self._limits.get(RunningStage.TESTING, []))

    @property
    def num_predict_batches(self) -> list[int | float]:
        return list(self._limits.get(RunningStage.PREDICTING, []))

    @property
    def train_dataloader(self) -> Any:
        return self._train_loader

    @property
    def val_dataloaders(self) -> Any:
        return _unwrap(self._loaders.get(RunningStage.VALIDATING))

    @property
    def test_dataloaders(self) -> Any:
        return _unwrap(self._loaders.get(RunningStage.TESTING))

    @property
    def predict_dataloaders(self) -> Any:
        return _unwrap(self._loaders.get(RunningStage.PREDICTING))

    @property
    def estimated_stepping_batches(self) -> int | float:
        """Optimizer steps the whole fit will take (for schedulers such as OneCycleLR); inf if unbounded."""
        from fulgor.trainer import data

        fitting = self.state.fn == TrainerFn.FITTING and self.lightning_module_ is not None
        if self._train_loader is None and fitting:
            data.setup_train_data(self, create_iterator=False)  # type: ignore[arg-type]
        batches = getattr(self, "num_training_batches", float("inf"))
        accumulate = getattr(self, "accumulate_grad_batches", 1)
        max_steps = getattr(self, "max_steps", -1)
        max_epochs = getattr(self, "max_epochs", None)
        if batches == float("inf") or max_epochs in (None, -1):
            return float(max_steps) if max_steps != -1 else float("inf")
        per_epoch = max(1, -(-int(batches) // accumulate)) if batches else 0
        total: int = per_epoch * int(max_epochs)
        return total if max_steps == -1 else min(total, int(max_steps))

    # ------------------------------------------------------------------ misc
    @property
    def ckpt_path(self) -> str | None:
        """The checkpoint the last run loaded; set it before `fit`/`validate`/... to load that checkpoint."""
        return getattr(self, "_ckpt_path", None)

    @ckpt_path.setter
    def ckpt_path(self, path: str | os.PathLike[str] | None) -> None:
        self._ckpt_path = None if path is None else os.fspath(path)
        self._user_ckpt_path = self._ckpt_path

    def print(self, *args: Any, **kwargs: Any) -> None:
        """`print` on global rank 0 only."""
        if self.is_global_zero:
            print(*args, **kwargs)  # noqa: T201


def _unwrap(loaders: list[Any] | None) -> Any:
    if loaders is None:
        return None
    return loaders[0] if len(loaders) == 1 else loaders
