"""The Trainer's public attributes as views: settings over the config, counters over the state, data, optimizers and
metrics over the current (or last) run, devices over the strategy. Kept apart from trainer.py so that file stays
about flags and entry points."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

import torch
from torch import Tensor

from fulgor.callbacks.checkpoint import Checkpoint
from fulgor.callbacks.early_stopping import EarlyStopping
from fulgor.callbacks.progress import ProgressBar
from fulgor.combined_loader import CombinedLoader
from fulgor.trainer import data
from fulgor.trainer.loop_views import EvaluationLoopView, FitLoopView, PredictLoopView
from fulgor.trainer.state import RunningStage, TrainerFn, TrainerStatus

if TYPE_CHECKING:
    from torch.optim import Optimizer

    from fulgor.accelerators import Accelerator
    from fulgor.callbacks.callback import Callback
    from fulgor.loggers.logger import Logger
    from fulgor.module import LightningModule
    from fulgor.optimizer import LRSchedulerConfig
    from fulgor.precision import Precision
    from fulgor.profilers import Profiler
    from fulgor.strategies.strategy import Strategy
    from fulgor.trainer.config import TrainerConfig
    from fulgor.trainer.log_store import MetricDicts
    from fulgor.trainer.run import Run
    from fulgor.trainer.state import TrainerState


V = TypeVar("V")


class Setting(Generic[V]):
    """A Trainer attribute backed by the config: reading gives `config.<name>`; assigning derives a new config
    (Lightning's Trainer has these as plain attributes), which a running run sees at once."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, trainer: None, owner: type | None = None) -> Setting[V]: ...

    @overload
    def __get__(self, trainer: TrainerProperties, owner: type | None = None) -> V: ...

    def __get__(self, trainer: TrainerProperties | None, owner: type | None = None) -> Setting[V] | V:
        if trainer is None:
            return self
        value: V = getattr(trainer._config, self.name)
        return value

    def __set__(self, trainer: TrainerProperties, value: V) -> None:
        trainer._set_config(**{self.name: value})


class TrainerProperties:
    """Properties users and callbacks read from the Trainer. The attributes below are set by `Trainer.__init__`."""

    state: TrainerState
    strategy: Strategy
    precision_plugin: Precision
    callbacks: list[Callback]
    _loggers: list[Logger]
    profiler: Profiler
    _config: TrainerConfig
    _run: Run | None
    _module: LightningModule | None
    _metrics: MetricDicts
    _device_ids: list[int]
    _user_ckpt_path: Any
    _user_ckpt_fit_once: bool

    def _set_config(self, **changes: Any) -> None:
        raise NotImplementedError  # Trainer's

    # ------------------------------------------------------------------ settings (the config)
    barebones = Setting[bool]()
    fast_dev_run = Setting[int | bool]()
    max_epochs = Setting[int | None]()
    min_epochs = Setting[int | None]()
    max_steps = Setting[int]()
    min_steps = Setting[int | None]()
    limit_train_batches = Setting[int | float]()
    limit_val_batches = Setting[int | float]()
    limit_test_batches = Setting[int | float]()
    limit_predict_batches = Setting[int | float]()
    overfit_batches = Setting[int | float]()
    val_check_interval = Setting[int | float]()
    val_check_time_interval = Setting[
        float | None
    ]()  # seconds, when `val_check_interval` was given as a duration (else None)
    check_val_every_n_epoch = Setting[int | None]()
    num_sanity_val_steps = Setting[int | float]()
    log_every_n_steps = Setting[int]()
    accumulate_grad_batches = Setting[int]()
    gradient_clip_val = Setting[int | float | None]()
    gradient_clip_algorithm = Setting[str | None]()
    deterministic = Setting[bool | str | None]()
    benchmark = Setting[bool | None]()
    inference_mode = Setting[bool]()
    use_distributed_sampler = Setting[bool]()
    reload_dataloaders_every_n_epochs = Setting[int]()
    enable_autolog_hparams = Setting[bool]()
    non_finite = Setting[str]()  # fulgor's non-finite loss guard: "error", "warn" or "off" (trainer/finite_guard.py)

    @property
    def default_root_dir(self) -> str:
        """Where logs and checkpoints go when no logger or callback says otherwise (default: the working directory)."""
        return self._config.default_root_dir

    @property
    def num_nodes(self) -> int:
        return self._config.num_nodes

    # ------------------------------------------------------------------ counters
    @property
    def current_epoch(self) -> int:
        """Epochs completed so far (the index of the running epoch)."""
        state = self.state
        if state.loaded_loops is not None and self._run is None:  # counters assigned through the loops before a run
            return int(state.loaded_loops.epoch_progress.current.completed)
        return state.epoch

    @property
    def global_step(self) -> int:
        """Optimizer steps taken so far."""
        state = self.state
        if state.loaded_loops is not None and self._run is None:  # counters assigned through the loops before a run
            return int(state.loaded_loops.optimizer_step.total.completed)
        return state.global_step

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
        return self.state.status == TrainerStatus.INTERRUPTED

    @property
    def received_sigterm(self) -> bool:
        """Whether SIGTERM arrived during the last `fit` (which then saved and ended with `SIGTERMException`)."""
        return self._run is not None and self._run.received_sigterm

    # ------------------------------------------------------------------ stage flags
    def _is_stage(self, stage: RunningStage) -> bool:
        return self.state.stage == stage

    def _enter_stage(self, stage: RunningStage, value: bool) -> None:
        """Lightning's stage setters: True enters the stage, False leaves it (only if it is the current one)."""
        if value:
            self.state.stage = stage
        elif self.state.stage == stage:
            self.state.stage = None

    @property
    def training(self) -> bool:
        return self._is_stage(RunningStage.TRAINING)

    @training.setter
    def training(self, value: bool) -> None:
        self._enter_stage(RunningStage.TRAINING, value)

    @property
    def sanity_checking(self) -> bool:
        return self._is_stage(RunningStage.SANITY_CHECKING)

    @sanity_checking.setter
    def sanity_checking(self, value: bool) -> None:
        self._enter_stage(RunningStage.SANITY_CHECKING, value)

    @property
    def validating(self) -> bool:
        return self._is_stage(RunningStage.VALIDATING)

    @validating.setter
    def validating(self, value: bool) -> None:
        self._enter_stage(RunningStage.VALIDATING, value)

    @property
    def testing(self) -> bool:
        return self._is_stage(RunningStage.TESTING)

    @testing.setter
    def testing(self, value: bool) -> None:
        self._enter_stage(RunningStage.TESTING, value)

    @property
    def predicting(self) -> bool:
        return self._is_stage(RunningStage.PREDICTING)

    @predicting.setter
    def predicting(self, value: bool) -> None:
        self._enter_stage(RunningStage.PREDICTING, value)

    # ------------------------------------------------------------------ metrics
    def _flushed(self) -> MetricDicts:
        results = self._run.results if self._run is not None else None
        if results is not None:
            results.flush(self._metrics)
        return self._metrics

    @property
    def callback_metrics(self) -> dict[str, Tensor]:
        """Everything logged, as tensors: what ModelCheckpoint and EarlyStopping monitor."""
        return self._flushed().callback

    @property
    def logged_metrics(self) -> dict[str, Tensor]:
        """The values sent to loggers (`logger=True`), under their `_step`/`_epoch` names when forked."""
        return self._flushed().logged

    @property
    def progress_bar_metrics(self) -> dict[str, float]:
        """The `prog_bar=True` values as Python numbers (read from the device only when asked for)."""
        return {k: float(v.item()) for k, v in self._flushed().pbar.items()}

    # ------------------------------------------------------------------ model, devices, processes
    @property
    def lightning_module(self) -> LightningModule:
        # None before the first run, as in Lightning (typed as the module, as Lightning's is: hooks always have one)
        return self._module  # type: ignore[return-value]

    @property
    def datamodule(self) -> Any:
        """The LightningDataModule of the current (or last) run, if it had one (or the one assigned before a run)."""
        if self._run is not None:
            return self._run.datamodule
        return getattr(self, "_assigned_datamodule", None)

    @datamodule.setter
    def datamodule(self, datamodule: Any) -> None:
        # Lightning's is a plain attribute: code assigns it so `lightning_getattr` and callbacks find the datamodule.
        self._assigned_datamodule = datamodule
        if self._run is not None:
            self._run.datamodule = datamodule

    @property
    def model(self) -> torch.nn.Module | None:
        """The model as the strategy runs it (the LightningModule itself on a single device)."""
        return self.strategy.model if self.strategy.model is not None else self._module

    @property
    def accelerator(self) -> Accelerator:
        """The Accelerator object the run uses (`CPUAccelerator`, `CUDAAccelerator`, ... or the user's own)."""
        accelerator = self.strategy.accelerator
        assert accelerator is not None, "the Trainer's constructor gives the strategy its accelerator"
        return accelerator

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

    # ------------------------------------------------------------------ optimization
    @property
    def optimizers(self) -> list[Optimizer]:
        """The optimizers `configure_optimizers` returned (of the current or last fit)."""
        return self._run.optimizers if self._run is not None else []

    @optimizers.setter
    def optimizers(self, optimizers: list[Optimizer]) -> None:
        if self._run is None:
            raise AttributeError("`trainer.optimizers` can only be set while a run is attached.")
        self._run.optimizers = list(optimizers)

    @property
    def lr_scheduler_configs(self) -> list[LRSchedulerConfig]:
        """The LR schedulers with how and when each is stepped (a list callbacks may change during the fit)."""
        return self._run.lr_scheduler_configs if self._run is not None else []

    # ------------------------------------------------------------------ loggers and directories
    @property
    def logger(self) -> Logger | None:
        return self.loggers[0] if self.loggers else None

    @logger.setter
    def logger(self, logger: Logger | None) -> None:
        self.loggers = [] if logger is None else [logger]

    @property
    def loggers(self) -> list[Logger]:
        """Every logger of the Trainer (empty without loggers)."""
        return self._loggers

    @loggers.setter
    def loggers(self, loggers: list[Logger] | None) -> None:
        self._loggers = list(loggers) if loggers else []  # `trainer.loggers = None` means none, as in Lightning

    @property
    def log_dir(self) -> str | None:
        """The first logger's directory (or `default_root_dir` without loggers)."""
        if not self.loggers:
            return self.default_root_dir
        return self.loggers[0].log_dir or self.loggers[0].save_dir or self.default_root_dir

    # ------------------------------------------------------------------ callbacks
    @property
    def progress_bar_callback(self) -> ProgressBar | None:
        return next((cb for cb in self.callbacks if isinstance(cb, ProgressBar)), None)

    @property
    def checkpoint_callbacks(self) -> list[Checkpoint]:
        return [cb for cb in self.callbacks if isinstance(cb, Checkpoint)]

    @property
    def checkpoint_callback(self) -> Checkpoint | None:
        callbacks = self.checkpoint_callbacks
        return callbacks[0] if callbacks else None

    @property
    def early_stopping_callbacks(self) -> list[EarlyStopping]:
        return [cb for cb in self.callbacks if isinstance(cb, EarlyStopping)]

    @property
    def early_stopping_callback(self) -> EarlyStopping | None:
        callbacks = self.early_stopping_callbacks
        return callbacks[0] if callbacks else None

    # ------------------------------------------------------------------ data
    @property
    def enable_validation(self) -> bool:
        """Whether fit will validate: a validation_step, validation data, and limit_val_batches > 0."""
        return self._run is not None and "val" in self._run.sources and data.validation_enabled(self._run)

    @property
    def num_training_batches(self) -> int | float:
        count: int | float = self.state.batch_counts.get("train", float("inf"))  # the last fit's, kept after it
        return count

    @property
    def val_check_batch(self) -> int | float:
        return self._run.val_check_batch if self._run is not None else float("inf")

    def _num_batches(self, loop: str) -> list[int | float]:
        # Each loop's counts as last computed, kept after its run (`TrainerState.batch_counts`), as Lightning's are.
        return list(self.state.batch_counts.get(loop, []))

    @property
    def num_val_batches(self) -> list[int | float]:
        return self._num_batches("validate" if self.state.fn == TrainerFn.VALIDATING else "fit_val")

    @property
    def num_sanity_val_batches(self) -> list[int | float]:
        return [min(self.num_sanity_val_steps, n) for n in self._num_batches("fit_val")]

    @property
    def num_test_batches(self) -> list[int | float]:
        return self._num_batches("test")

    @property
    def num_predict_batches(self) -> list[int | float]:
        return self._num_batches("predict")

    @property
    def train_dataloader(self) -> Any:
        """The training loader of the current (or last) fit; a collection of loaders keeps the shape it was given."""
        loader = self._run.train_loader if self._run is not None else None
        return loader.iterables if isinstance(loader, CombinedLoader) else loader

    def _loaders(self, stage: RunningStage) -> Any:
        return self._run.loader_views.get(stage) if self._run is not None else None

    @property
    def val_dataloaders(self) -> Any:
        return self._loaders(RunningStage.VALIDATING)

    @property
    def test_dataloaders(self) -> Any:
        return self._loaders(RunningStage.TESTING)

    @property
    def predict_dataloaders(self) -> Any:
        return self._loaders(RunningStage.PREDICTING)

    # ------------------------------------------------------------------ loops (read-only views over the run's state)
    def _current_run(self) -> Run | None:
        return self._run

    @property
    def fit_loop(self) -> FitLoopView:
        """Lightning's fit loop as callbacks read it: `max_epochs`/`min_epochs` (settable), `epoch_progress`,
        `epoch_loop.batch_progress`, `epoch_loop._batches_that_stepped`, `epoch_loop.val_loop`, `done`, ..."""
        return FitLoopView(self._current_run, self)

    @property
    def validate_loop(self) -> EvaluationLoopView:
        """The loop of `trainer.validate`: `batch_progress`, `max_batches`, ..."""
        return EvaluationLoopView(
            self._current_run, TrainerFn.VALIDATING, RunningStage.VALIDATING, True, self.inference_mode
        )

    @property
    def test_loop(self) -> EvaluationLoopView:
        """The loop of `trainer.test`: `batch_progress`, `max_batches`, ..."""
        return EvaluationLoopView(self._current_run, TrainerFn.TESTING, RunningStage.TESTING, True, self.inference_mode)

    @property
    def predict_loop(self) -> PredictLoopView:
        """What prediction writers read during `predict`: the outputs so far and each batch's dataset indices."""
        return PredictLoopView(self._current_run)

    @property
    def estimated_stepping_batches(self) -> int | float:
        """Optimizer steps the whole fit will take (for schedulers such as OneCycleLR); inf if unbounded."""
        run = self._run
        if run is not None and run.fn == TrainerFn.FITTING and run.train_loader is None:
            data.setup_train_data(run)
        batches = self.num_training_batches
        config = self._config
        max_steps, max_epochs = config.max_steps, config.max_epochs
        if batches == float("inf") or max_epochs in (None, -1):
            return float(max_steps) if max_steps != -1 else float("inf")
        per_epoch = max(1, -(-int(batches) // config.accumulate_grad_batches)) if batches else 0
        total: int = per_epoch * int(max_epochs)
        return total if max_steps == -1 else min(total, int(max_steps))

    # ------------------------------------------------------------------ misc
    @property
    def ckpt_path(self) -> Any:
        """The checkpoint the last run loaded. Set it (`trainer.ckpt_path = path`) to load `path` in every later
        `fit`/`validate`/`test`/`predict` not given a `ckpt_path` of its own; reads then return it as given."""
        if self._user_ckpt_path is not None or self._run is None:
            return self._user_ckpt_path
        return self._run.ckpt_path

    @ckpt_path.setter
    def ckpt_path(self, path: str | os.PathLike[str] | None) -> None:
        self._user_ckpt_path, self._user_ckpt_fit_once = path or None, False
        if not path and self._run is not None:
            self._run.ckpt_path = None  # reads None until the next run, as in Lightning

    @property
    def resume_from_checkpoint(self) -> Any:
        """Lightning 1.x's spelling (`Trainer(resume_from_checkpoint=path)`): the checkpoint the next `fit` loads."""
        return self._user_ckpt_path if self._user_ckpt_fit_once else None

    @resume_from_checkpoint.setter
    def resume_from_checkpoint(self, path: str | os.PathLike[str] | None) -> None:
        self._user_ckpt_path, self._user_ckpt_fit_once = path or None, bool(path)

    def print(self, *args: Any, **kwargs: Any) -> None:
        """`print` on global rank 0 only."""
        if self.is_global_zero:
            print(*args, **kwargs)  # noqa: T201
