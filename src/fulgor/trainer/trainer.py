"""Trainer: Lightning's flags turned into parts (strategy, precision, callbacks, loggers, limits), and the four
entry points fit/validate/test/predict. The loops themselves live in fit_loop.py and eval_loop.py."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import timedelta
from typing import Any

import torch
from torch import Tensor

from fulgor import accelerators
from fulgor.callbacks.callback import Callback
from fulgor.errors import MisconfigurationException, PossibleUserWarning
from fulgor.loggers.logger import DummyLogger, Logger
from fulgor.module import LightningModule, is_overridden
from fulgor.precision import select_precision
from fulgor.rank import rank_zero_info, rank_zero_warn
from fulgor.strategies import Strategy
from fulgor.trainer import argparse as legacy_argparse
from fulgor.trainer import data, eval_loop, fit_loop
from fulgor.trainer.callback_list import build_callbacks, check_unique_state_keys, merge_model_callbacks
from fulgor.trainer.checks import verify_loop_configuration
from fulgor.trainer.dispatch import Receivers, call_hook, call_module, resolve_hooks, set_fx_name
from fulgor.trainer.flags import apply_barebones, defaults_from_env_vars, refuse_unimplemented
from fulgor.trainer.legacy_hooks import LegacyHooks, multiple_optimizers_error, resolve_legacy_hooks
from fulgor.trainer.logging import MetricDicts, ResultStore
from fulgor.trainer.optimization import PlainSteps, plain_steps
from fulgor.trainer.properties import TrainerProperties
from fulgor.trainer.state import RunningStage, TrainerFn, TrainerState, TrainerStatus


class Trainer(TrainerProperties):
    """Runs a LightningModule: `fit`, `validate`, `test` and `predict`, configured by Lightning's flags."""

    # Lightning 1.x's argparse helpers (removed in 2.0), kept so 1.x scripts run unchanged.
    add_argparse_args = classmethod(legacy_argparse.add_argparse_args)
    from_argparse_args = classmethod(legacy_argparse.from_argparse_args)
    parse_argparser = classmethod(legacy_argparse.parse_argparser)
    default_attributes = classmethod(legacy_argparse.default_attributes)
    match_env_arguments = classmethod(legacy_argparse.match_env_arguments)
    get_init_arguments_and_types = classmethod(legacy_argparse.get_init_arguments_and_types)

    @defaults_from_env_vars
    def __init__(
        self,
        *,
        accelerator: str | Any = "auto",
        strategy: str | Strategy = "auto",
        devices: list[int] | str | int = "auto",
        num_nodes: int = 1,
        precision: str | int | None = None,
        logger: Logger | Sequence[Logger] | bool | None = None,
        callbacks: list[Callback] | Callback | None = None,
        fast_dev_run: int | bool = False,
        max_epochs: int | None = None,
        min_epochs: int | None = None,
        max_steps: int = -1,
        min_steps: int | None = None,
        max_time: str | timedelta | dict[str, int] | None = None,
        limit_train_batches: int | float | None = None,
        limit_val_batches: int | float | None = None,
        limit_test_batches: int | float | None = None,
        limit_predict_batches: int | float | None = None,
        overfit_batches: int | float = 0.0,
        val_check_interval: int | float | str | timedelta | dict[str, int] | None = None,
        check_val_every_n_epoch: int | None = 1,
        num_sanity_val_steps: int | None = None,
        log_every_n_steps: int | None = None,
        enable_checkpointing: bool | None = None,
        enable_progress_bar: bool | None = None,
        enable_model_summary: bool | None = None,
        accumulate_grad_batches: int = 1,
        gradient_clip_val: int | float | None = None,
        gradient_clip_algorithm: str | None = None,
        deterministic: bool | str | None = None,
        benchmark: bool | None = None,
        inference_mode: bool = True,
        use_distributed_sampler: bool = True,
        profiler: Any = None,
        detect_anomaly: bool = False,
        barebones: bool = False,
        plugins: Any = None,
        sync_batchnorm: bool = False,
        reload_dataloaders_every_n_epochs: int = 0,
        default_root_dir: str | os.PathLike[str] | None = None,
        enable_autolog_hparams: bool = True,
        model_registry: str | None = None,
    ) -> None:
        flags = dict(locals())
        flags.pop("self")
        if barebones:
            apply_barebones(flags)
        refuse_unimplemented(flags)
        self.barebones = barebones
        self.state = TrainerState()
        self.default_root_dir = os.fspath(default_root_dir) if default_root_dir is not None else os.getcwd()
        self._setup_devices(flags["accelerator"], flags["strategy"], flags["devices"], flags["num_nodes"])
        self.precision_plugin = select_precision(flags["precision"], self._accelerator)
        self._setup_determinism(flags["deterministic"], flags["benchmark"])
        self._setup_limits(flags)
        self._setup_optimization_flags(flags)
        self.callbacks = build_callbacks(
            flags["callbacks"],
            max_time=flags["max_time"],
            enable_progress_bar=flags["enable_progress_bar"] is not False,
            enable_model_summary=flags["enable_model_summary"] is not False,
            enable_checkpointing=flags["enable_checkpointing"] is not False,
        )
        self.loggers = self._build_loggers(flags["logger"])
        self._apply_fast_dev_run(flags["fast_dev_run"])
        self.inference_mode = inference_mode
        self.use_distributed_sampler = use_distributed_sampler
        self.reload_dataloaders_every_n_epochs = reload_dataloaders_every_n_epochs
        self.enable_autolog_hparams = enable_autolog_hparams
        self._detect_anomaly = detect_anomaly
        from fulgor.profilers import select_profiler

        self.profiler = select_profiler(flags["profiler"])
        if detect_anomaly:
            rank_zero_info(
                "You have turned on `Trainer(detect_anomaly=True)`. This will significantly slow down compute speed"
                " and is recommended only for model debugging."
            )
        self._reset_run_state()

    # ------------------------------------------------------------------ construction
    def _setup_devices(self, accelerator: Any, strategy: Any, devices: Any, num_nodes: int) -> None:
        if not isinstance(num_nodes, int) or num_nodes < 1:
            raise ValueError(f"`num_nodes` must be a positive integer, but got {num_nodes}.")
        self._accelerator = accelerators.resolve_accelerator(accelerator)
        self._device_ids = accelerators.parse_devices(self._accelerator, devices)
        self.num_nodes = num_nodes
        self.strategy = strategy if isinstance(strategy, Strategy) else self._select_strategy(strategy)
        # Ranks are known from here on (torchrun/SLURM/launcher variables), so rank-zero printing is right at once.
        self.strategy.configure(self._accelerator, self._device_ids, num_nodes)
        accelerators.log_device_info(self._accelerator)

    def _select_strategy(self, name: Any) -> Strategy:
        from fulgor.strategies.registry import select_strategy

        return select_strategy(name, self._accelerator, self._device_ids, self.num_nodes)

    def _setup_determinism(self, deterministic: bool | str | None, benchmark: bool | None) -> None:
        if deterministic is not None:
            if deterministic == "warn":
                torch.use_deterministic_algorithms(True, warn_only=True)
            elif isinstance(deterministic, bool):
                torch.use_deterministic_algorithms(deterministic)
            else:
                raise ValueError(
                    f"`Trainer(deterministic={deterministic!r})` is invalid: use True, False, 'warn' or None."
                )
            if deterministic:
                os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
        if deterministic and benchmark:
            rank_zero_warn(
                "You passed `deterministic=True` and `benchmark=True`. Note that PyTorch ignores"
                " torch.backends.cudnn.deterministic=True when torch.backends.cudnn.benchmark=True.",
            )
        if benchmark is None and deterministic:
            benchmark = False
        self.benchmark = benchmark
        if benchmark is not None:
            torch.backends.cudnn.benchmark = benchmark
        self.deterministic = deterministic

    def _setup_limits(self, flags: dict[str, Any]) -> None:
        max_steps, max_epochs = flags["max_steps"], flags["max_epochs"]
        if not isinstance(max_steps, int) or max_steps < -1:
            raise MisconfigurationException(
                f"`max_steps` must be a non-negative integer or -1 (infinite steps). You passed in {max_steps}."
            )
        if isinstance(max_epochs, int) and max_epochs < -1:
            raise MisconfigurationException(
                f"`max_epochs` must be a non-negative integer or -1. You passed in {max_epochs}."
            )
        self.max_epochs: int | None = max_epochs
        self.min_epochs: int | None = flags["min_epochs"]
        self.max_steps = max_steps
        self.min_steps: int | None = flags["min_steps"]
        self._max_time = flags["max_time"]
        overfit = data.determine_batch_limit(flags["overfit_batches"], "overfit_batches")
        self.overfit_batches = overfit
        limits = {}
        for stage in ("train", "val", "test", "predict"):
            name = f"limit_{stage}_batches"
            limits[stage] = data.determine_batch_limit(flags[name], name)
        if overfit > 0:
            limits["train"] = limits["val"] = overfit
        self.limit_train_batches, self.limit_val_batches = limits["train"], limits["val"]
        self.limit_test_batches, self.limit_predict_batches = limits["test"], limits["predict"]
        self._setup_val_check(flags["val_check_interval"], flags["check_val_every_n_epoch"])
        sanity = flags["num_sanity_val_steps"]
        sanity = 2 if sanity is None else sanity
        self.num_sanity_val_steps: int | float = float("inf") if sanity == -1 else sanity
        log_every = flags["log_every_n_steps"]
        self.log_every_n_steps: int = 50 if log_every is None else log_every

    def _setup_val_check(self, interval: Any, every_n_epoch: int | None) -> None:
        if every_n_epoch is not None and (not isinstance(every_n_epoch, int) or every_n_epoch < 1):
            raise MisconfigurationException(
                f"`check_val_every_n_epoch` should be an integer >= 1 or None, got {every_n_epoch!r}."
            )
        self.check_val_every_n_epoch = every_n_epoch
        self._val_check_time_interval: float | None = None
        if isinstance(interval, (str, dict, timedelta)):
            from fulgor.callbacks.timer import parse_duration

            duration = parse_duration(interval)
            assert duration is not None
            self._val_check_time_interval = duration.total_seconds()
            self.val_check_interval: int | float = 1.0
        else:
            self.val_check_interval = data.determine_batch_limit(interval, "val_check_interval")
        if (
            every_n_epoch is None
            and not isinstance(self.val_check_interval, int)
            and self._val_check_time_interval is None
        ):
            raise MisconfigurationException(
                "`val_check_interval` should be an integer when `check_val_every_n_epoch=None`,"
                f" found {self.val_check_interval!r}."
            )

    def _setup_optimization_flags(self, flags: dict[str, Any]) -> None:
        accumulate = flags["accumulate_grad_batches"]
        if not isinstance(accumulate, int) or isinstance(accumulate, bool) or accumulate < 1:
            raise MisconfigurationException(
                f"`Trainer(accumulate_grad_batches={accumulate!r})` was passed, but it can only be an int > 0."
                " For a changing schedule use the `GradientAccumulationScheduler` callback."
            )
        self.accumulate_grad_batches = accumulate
        clip_val = flags["gradient_clip_val"]
        if clip_val is not None and (isinstance(clip_val, bool) or not isinstance(clip_val, (int, float))):
            raise TypeError(f"`gradient_clip_val` should be an int or a float. Got {clip_val}.")
        algorithm = flags["gradient_clip_algorithm"]
        if algorithm is not None and algorithm.lower() not in ("norm", "value"):
            raise MisconfigurationException(
                f"`gradient_clip_algorithm` {algorithm} is invalid. Allowed algorithms: ['value', 'norm']."
            )
        self.gradient_clip_val = clip_val
        self.gradient_clip_algorithm = algorithm.lower() if algorithm is not None else None

    def _build_loggers(self, logger: Any) -> list[Logger]:
        if logger is None or logger is True:
            # Lightning's rule: TensorBoard when it is installed, else CSV (fulgor skips the tensorboardX notice).
            from fulgor.loggers.tensorboard import tensorboard_available

            if tensorboard_available():
                from fulgor.loggers.tensorboard import TensorBoardLogger

                version = os.environ.get("SLURM_JOB_ID") if _running_under_slurm() else None
                return [TensorBoardLogger(save_dir=self.default_root_dir, version=version)]
            from fulgor.loggers.csv_logs import CSVLogger

            return [CSVLogger(save_dir=self.default_root_dir)]
        if logger is False:
            return []
        return [logger] if isinstance(logger, Logger) else list(logger)

    def _apply_fast_dev_run(self, fast_dev_run: int | bool) -> None:
        if isinstance(fast_dev_run, int) and fast_dev_run < 0:
            raise MisconfigurationException(
                f"fast_dev_run={fast_dev_run!r} is not a valid configuration. It should be >= 0."
            )
        self.fast_dev_run: int | bool = True if fast_dev_run == 1 else fast_dev_run
        if not fast_dev_run:
            return
        n = int(fast_dev_run)
        if not self.overfit_batches:
            self.limit_train_batches = self.limit_val_batches = n
        self.limit_test_batches = self.limit_predict_batches = n
        self.max_steps = n
        self.num_sanity_val_steps = 0
        self.max_epochs = 1
        self.val_check_interval = 1.0
        self._val_check_time_interval = None
        self.check_val_every_n_epoch = 1
        self.loggers = [DummyLogger()] if self.loggers else []
        rank_zero_info(
            f"Running in `fast_dev_run` mode: will run the requested loop using {n} batch(es)."
            " Logging and checkpointing is suppressed."
        )

    def _reset_run_state(self) -> None:
        self.lightning_module_: LightningModule | None = getattr(self, "lightning_module_", None)
        self.datamodule: Any = getattr(self, "datamodule", None)
        self._hooks: dict[str, Receivers] = {}
        self._results: ResultStore | None = None
        self._train_store = ResultStore(training=True, sync=self.strategy.reduce)
        self._eval_store = ResultStore(training=False, sync=self.strategy.reduce)
        self._metrics = MetricDicts()
        self._eval_steps_logged: dict[tuple[str, int], int] = {}
        self._sources: dict[str, data.DataSource] = {}
        self._loaders: dict[RunningStage, list[Any]] = {}
        self._limits: dict[RunningStage, list[int | float]] = {}
        self._train_loader: Any = None
        self.num_training_batches: int | float = float("inf")
        self.val_check_batch: int | float = float("inf")
        self.optimizers: list[torch.optim.Optimizer] = getattr(self, "optimizers", [])
        self.lr_scheduler_configs: list[Any] = getattr(self, "lr_scheduler_configs", [])
        self._last_val_time = 0.0
        self._validation_enabled = False
        self._legacy: LegacyHooks | None = None
        self._automatic = True
        self._plain = PlainSteps(zero_grad=False, backward=False, before_step=False, optimizer_step=False)
        self.predict_loop: Any = None  # what prediction writers read during `predict` (eval_loop.PredictLoopView)
        self._last_train_reload_epoch: int | None = None
        self._last_val_reload_epoch: int | None = None

    # ------------------------------------------------------------------ entry points
    def fit(
        self,
        model: LightningModule,
        train_dataloaders: Any = None,
        val_dataloaders: Any = None,
        datamodule: Any = None,
        ckpt_path: str | os.PathLike[str] | None = None,
        weights_only: bool | None = None,
    ) -> None:
        """Train `model` (with validation when it has a `validation_step` and validation data)."""
        if self.strategy.launches_workers:  # ddp_spawn / ddp_fork: the run happens in worker processes
            return self.strategy.launcher.launch(  # type: ignore[no-any-return]
                self.fit, model, train_dataloaders, val_dataloaders, datamodule, ckpt_path, weights_only, trainer=self
            )
        train_dataloaders, datamodule = _datamodule_in_place_of_loaders(train_dataloaders, datamodule)
        if datamodule is not None and (train_dataloaders is not None or val_dataloaders is not None):
            raise MisconfigurationException(
                "You cannot pass `train_dataloader` or `val_dataloaders` to `trainer.fit(datamodule=...)`"
            )
        _check_module(model, "fit")
        ckpt_path = self._choose_ckpt_path(TrainerFn.FITTING, ckpt_path, model_provided=True)
        with self._running(TrainerFn.FITTING, model, datamodule):
            self._sources = {
                "train": data.select_source(model, datamodule, train_dataloaders, "train_dataloader"),
                "val": data.select_source(model, datamodule, val_dataloaders, "val_dataloader"),
            }
            self._setup_run(ckpt_path, weights_only)
            with torch.autograd.set_detect_anomaly(True) if self._detect_anomaly else nullcontext():
                fit_loop.run_fit(self)
            self._finish_run()
        return None

    def validate(
        self,
        model: LightningModule | None = None,
        dataloaders: Any = None,
        ckpt_path: str | os.PathLike[str] | None = None,
        verbose: bool = True,
        datamodule: Any = None,
        weights_only: bool | None = None,
    ) -> list[dict[str, float]]:
        """Run the validation loop once; return one dict of epoch metrics per dataloader."""
        return self._evaluate(TrainerFn.VALIDATING, model, dataloaders, ckpt_path, verbose, datamodule, weights_only)

    def test(
        self,
        model: LightningModule | None = None,
        dataloaders: Any = None,
        ckpt_path: str | os.PathLike[str] | None = None,
        verbose: bool = True,
        datamodule: Any = None,
        weights_only: bool | None = None,
    ) -> list[dict[str, float]]:
        """Run the test loop once; return one dict of epoch metrics per dataloader."""
        return self._evaluate(TrainerFn.TESTING, model, dataloaders, ckpt_path, verbose, datamodule, weights_only)

    def _evaluate(
        self,
        fn: TrainerFn,
        model: LightningModule | None,
        dataloaders: Any,
        ckpt_path: Any,
        verbose: bool,
        datamodule: Any,
        weights_only: bool | None,
    ) -> list[dict[str, float]]:
        if self.strategy.launches_workers:
            run = self.validate if fn == TrainerFn.VALIDATING else self.test
            return self.strategy.launcher.launch(  # type: ignore[no-any-return]
                run, model, dataloaders, ckpt_path, verbose, datamodule, weights_only, trainer=self
            )
        dataloaders, datamodule = _datamodule_in_place_of_loaders(dataloaders, datamodule)
        if dataloaders is not None and datamodule is not None:
            raise MisconfigurationException(
                f"You cannot pass both `trainer.{fn.value}(dataloaders=..., datamodule=...)`"
            )
        ckpt_path = self._choose_ckpt_path(fn, ckpt_path, model_provided=model is not None)
        model = self._model_for(fn, model)
        stage = RunningStage.VALIDATING if fn == TrainerFn.VALIDATING else RunningStage.TESTING
        prefix = stage.dataloader_prefix
        with self._running(fn, model, datamodule):
            self._sources = {prefix: data.select_source(model, datamodule, dataloaders, f"{prefix}_dataloader")}
            self._setup_run(ckpt_path, weights_only)
            self._stage(stage)
            grad = torch.inference_mode() if self.inference_mode else torch.no_grad()
            with grad:
                results = eval_loop.run_evaluation(self, stage)
            if verbose and self.is_global_zero and stage != RunningStage.SANITY_CHECKING:
                from fulgor.trainer.results_table import print_results_table

                print_results_table(results, fn.value)
            self._finish_run()
        return results

    def predict(
        self,
        model: LightningModule | None = None,
        dataloaders: Any = None,
        datamodule: Any = None,
        return_predictions: bool | None = None,
        ckpt_path: str | os.PathLike[str] | None = None,
        weights_only: bool | None = None,
    ) -> list[Any] | None:
        """Run `predict_step` over the predict data; return the outputs (a list per dataloader when several)."""
        if self.strategy.launches_workers:
            if return_predictions:
                raise MisconfigurationException(
                    "`return_predictions` should be set to `False` when using the strategies that spawn or fork."
                )
            return self.strategy.launcher.launch(  # type: ignore[no-any-return]
                self.predict, model, dataloaders, datamodule, False, ckpt_path, weights_only, trainer=self
            )
        dataloaders, datamodule = _datamodule_in_place_of_loaders(dataloaders, datamodule)
        if dataloaders is not None and datamodule is not None:
            raise MisconfigurationException("You cannot pass both `trainer.predict(dataloaders=..., datamodule=...)`")
        ckpt_path = self._choose_ckpt_path(TrainerFn.PREDICTING, ckpt_path, model_provided=model is not None)
        model = self._model_for(TrainerFn.PREDICTING, model)
        with self._running(TrainerFn.PREDICTING, model, datamodule):
            self._sources = {"predict": data.select_source(model, datamodule, dataloaders, "predict_dataloader")}
            self._setup_run(ckpt_path, weights_only)
            self._stage(RunningStage.PREDICTING)
            grad = torch.inference_mode() if self.inference_mode else torch.no_grad()
            with grad:
                predictions = eval_loop.run_prediction(self, return_predictions is not False)
            self._finish_run()
        return predictions

    def _choose_ckpt_path(self, fn: TrainerFn, ckpt_path: Any, model_provided: bool) -> Any:
        """A path set with `trainer.ckpt_path = ...` applies unless one is passed; without a model, "best"."""
        user_path = getattr(self, "_user_ckpt_path", None)
        if user_path is not None:
            if ckpt_path:
                rank_zero_warn(
                    f"`trainer.ckpt_path = {user_path!r}` was called but then you"
                    f" passed `trainer.{fn.value}(ckpt_path={ckpt_path!r})`. The latter will be loaded."
                )
            else:
                ckpt_path = user_path
            self._user_ckpt_path = None
        if fn == TrainerFn.FITTING:
            return ckpt_path
        from fulgor import checkpoint_restore

        return checkpoint_restore.select_ckpt_path(self, fn.value, ckpt_path, model_provided)

    def _model_for(self, fn: TrainerFn, model: LightningModule | None) -> LightningModule:
        if model is None:
            if self.lightning_module_ is None:
                raise TypeError(
                    f"`Trainer.{fn.value}()` requires a `LightningModule` when it hasn't been passed in a previous run"
                )
            return self.lightning_module_
        _check_module(model, fn.value)
        return model

    # ------------------------------------------------------------------ run setup and teardown
    @contextmanager
    def _running(self, fn: TrainerFn, model: LightningModule, datamodule: Any) -> Iterator[None]:
        """Attach the model, run the body, and on any exception call `on_exception` and finalize loggers."""
        self.strategy.setup_environment(self)  # DDP: start the other ranks (once) and join the process group
        self._reset_run_state()
        self.state.fn = fn
        self.state.status = TrainerStatus.RUNNING
        self.state.should_stop = False
        self.lightning_module_ = model
        model.trainer = self
        # As in Lightning, the stage (and so the store `self.log` writes to) is set for the whole run.
        self._stage(_FIRST_STAGE[fn])
        self._results = self._train_store if fn == TrainerFn.FITTING else self._eval_store
        if fn == TrainerFn.PREDICTING:
            self._results = None
        self.datamodule = datamodule
        if datamodule is not None:
            datamodule.trainer = self
        from fulgor.trainer import preemption

        # During fit, SIGTERM/SIGUSR1 (configurable) request a stop acted on at the next safe point.
        uninstall_signals = preemption.install(self) if fn == TrainerFn.FITTING else None
        try:
            yield
        except BaseException as exception:
            self.state.status = TrainerStatus.INTERRUPTED
            if isinstance(exception, KeyboardInterrupt):
                rank_zero_info("\nDetected KeyboardInterrupt, attempting graceful shutdown ...")
            call_hook(self, "on_exception", exception)
            for logger in self.loggers:
                logger.finalize("failed")
            self.profiler.teardown(fn.value)
            self.strategy.teardown()
            self.state.stage = None
            raise
        finally:
            self._results = None
            if uninstall_signals is not None:
                uninstall_signals()

    def _setup_run(self, ckpt_path: Any, weights_only: bool | None) -> None:
        """configure_callbacks, prepare_data, setup, configure_model, [restore weights]: common to every run."""
        fn = self.state.fn
        assert fn is not None
        module = self.lightning_module
        if fn == TrainerFn.FITTING:
            self._resolve_loop_limits()
        if self.barebones:
            rank_zero_info(
                "`Trainer(barebones=True)` started running. The progress bar is disabled so you might want to"
                " manually print the progress in your model."
            )
        self.callbacks = merge_model_callbacks(self.callbacks, call_module(self, "configure_callbacks"))
        check_unique_state_keys(self.callbacks)
        verify_loop_configuration(self, fn)
        self.profiler.setup(fn.value, self.local_rank if self.world_size > 1 else None, self.log_dir)
        from fulgor.profilers import is_active

        self._profiling = is_active(self.profiler)  # hooks and loop steps are timed only then (decided per run)
        self._hooks = resolve_hooks(self)
        self._hooks_prepared()
        self._prepare_data()
        for logger in self.loggers:
            # Creates the log directory before setup hooks run; a logger may do that without starting its experiment
            # object (`_prepare_for_setup`: the TensorBoard logger, whose writer would import tensorboard).
            prepare = getattr(logger, "_prepare_for_setup", None)
            _ = prepare() if prepare is not None else getattr(logger, "experiment", None)
        call_hook(self, "setup", fn)
        if is_overridden("configure_model", module):
            call_module(self, "configure_model")
        self._ckpt_to_resume = None
        if ckpt_path is not None:
            from fulgor import checkpoint_restore

            self._ckpt_to_resume = checkpoint_restore.restore_before_setup(self, ckpt_path, weights_only)
        self.strategy.setup_module(self.precision_plugin.convert_module(module))
        self._batch_to_device = self._make_batch_transfer()

    def _hooks_prepared(self) -> None:
        """Per-run lookups done once, so the per-batch path does not repeat them."""
        module = self.lightning_module
        self._training_step = self.strategy.step_fn(module, "training_step")
        if self._profiling:
            from fulgor.trainer.dispatch import profiled

            action = f"[Strategy]{type(self.strategy).__name__}.training_step"
            self._training_step = profiled(self.profiler, self._training_step, action)
        self._step_takes_batch_idx = data.accepts_batch_idx(module.training_step)
        self._legacy = resolve_legacy_hooks(module)
        self._automatic = module.automatic_optimization
        self._clipping_hook_active = is_overridden("configure_gradient_clipping", module) or bool(
            self.gradient_clip_val
        )
        self._plain = plain_steps(self)  # after `_clipping_hook_active`, which it reads

    def _prepare_data(self) -> None:
        # Local rank 0 of each node prepares the data (downloads once per machine); the others wait for it.
        if self.local_rank == 0:
            call_hook(self, "prepare_data")
        self.strategy.barrier("prepare_data")

    def _finish_run(self) -> None:
        """on_fit_end (fit only), teardown hooks, loggers finalized with "success"."""
        self.strategy.teardown()
        self._metrics_to_cpu()
        if self.state.fn == TrainerFn.FITTING:
            call_hook(self, "on_fit_end")
        call_hook(self, "teardown", self.state.fn)
        set_fx_name(self.lightning_module, None)
        for logger in self.loggers:
            logger.finalize("success")
        self.profiler.describe()  # the report (a no-op for the default PassThroughProfiler); closes its file
        self.state.status = TrainerStatus.FINISHED
        self.state.stage = None

    def _resolve_loop_limits(self) -> None:
        if self.max_epochs is None:
            from fulgor.callbacks.timer import Timer

            if self.max_steps == -1 and not any(isinstance(cb, Timer) for cb in self.callbacks):
                rank_zero_warn(
                    "`max_epochs` was not set. Setting it to 1000 epochs. To train without an epoch limit,"
                    " set `max_epochs=-1`.",
                    PossibleUserWarning,
                )
                self.max_epochs = 1000
            else:
                self.max_epochs = -1
        if self.min_epochs is None:
            self.min_epochs = 1 if self.min_steps is not None else 0

    def _setup_optimizers(self) -> None:
        from fulgor.optimizer import LightningOptimizer, parse_configure_optimizers, validate_schedulers

        module = self.lightning_module
        output = call_module(self, "configure_optimizers")
        optimizers, configs, _monitor = parse_configure_optimizers(output)
        if len(optimizers) > 1 and module.automatic_optimization:
            raise multiple_optimizers_error(module, len(optimizers))
        validate_schedulers(optimizers, configs, module)
        self.optimizers = optimizers
        self.lr_scheduler_configs = configs
        wrapped = []
        for optimizer in optimizers:
            lightning_optimizer = LightningOptimizer(optimizer)
            lightning_optimizer.__dict__["_trainer"] = self
            wrapped.append(lightning_optimizer)
        self.strategy._lightning_optimizers = wrapped
        self._lightning_optimizer = wrapped[0]
        self._pending_training_state = self._ckpt_to_resume

    def _log_hyperparams(self) -> None:
        """Send the merged module/datamodule hyperparameters to every logger, then restore training state."""
        if self.enable_autolog_hparams and self.loggers:
            from fulgor.hparams import merge_module_and_datamodule_hparams

            hparams = merge_module_and_datamodule_hparams(self.lightning_module, self.datamodule)
            for logger in self.loggers:
                if hparams is not None:
                    logger.log_hyperparams(hparams)
                logger.log_graph(self.lightning_module)
                logger.save()
        if self._pending_training_state is not None:
            from fulgor import checkpoint_restore

            # Lightning restores optimizers, schedulers and loop counters after the hparams are logged.
            checkpoint_restore.restore_training_state(self, self._pending_training_state)
            self._pending_training_state = None

    # ------------------------------------------------------------------ logging
    def _log_metrics(self, metrics: dict[str, Tensor], step: int | None = None) -> None:
        """Send metrics to every logger (as floats: the one host read per logging interval)."""
        if not self.loggers or not metrics:
            return
        self._metrics.logged.update(metrics)
        scalars = {k: v.item() if isinstance(v, Tensor) else v for k, v in metrics.items()}
        if step is None:
            logged_step = scalars.pop("step", None)
            if logged_step is not None:
                step = int(logged_step)
            else:
                scalars.setdefault("epoch", self.current_epoch)
                step = self.state.batches_that_stepped
        for logger in self.loggers:
            logger.log_metrics(scalars, step=step)

    def _should_log_step(self) -> bool:
        every = self.log_every_n_steps
        if every == 0:
            return False
        return (self.state.batches_that_stepped + 1) % every == 0 or self.state.should_stop

    def _save_loggers(self) -> None:
        for logger in self.loggers:
            logger.save()

    def _time_for_validation(self) -> bool:
        interval = self._val_check_time_interval
        assert interval is not None
        now = time.monotonic()
        if now - self._last_val_time >= interval:
            self._last_val_time = now
            return True
        return False

    def save_checkpoint(
        self, filepath: str | os.PathLike[str], weights_only: bool | None = None, storage_options: Any = None
    ) -> None:
        """Write a checkpoint of the current state (Lightning's layout) to `filepath`, atomically."""
        from fulgor import checkpoint_contents

        checkpoint_contents.save_trainer_checkpoint(self, filepath, weights_only, storage_options)

    def _make_batch_transfer(self) -> Any:
        """The function that moves a batch to the device through the batch-transfer hooks (once per run), or None
        when nothing would change the batch (CPU, default hooks, no dtype conversion)."""
        owner = data.resolve_batch_transfer(self)
        device = self.strategy.root_device
        convert = self.precision_plugin.convert_input
        parent = LightningModule if owner is self.lightning_module else type(owner).__mro__[-2]
        custom = [h for h in ("on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer")
                  if is_overridden(h, owner, parent)]  # fmt: skip
        if not custom and device.type == "cpu" and type(self.precision_plugin).convert_input is _identity_convert():
            return None  # batches stay as the loader made them: the loops skip the call
        module = self.lightning_module

        def transfer(batch: Any, dataloader_idx: int) -> Any:
            batch = convert(batch)
            set_fx_name(module, "on_before_batch_transfer")
            batch = owner.on_before_batch_transfer(batch, dataloader_idx)
            set_fx_name(module, "transfer_batch_to_device")
            batch = owner.transfer_batch_to_device(batch, device, dataloader_idx)
            set_fx_name(module, "on_after_batch_transfer")
            batch = owner.on_after_batch_transfer(batch, dataloader_idx)
            set_fx_name(module, None)
            return batch

        return transfer

    def _metrics_to_cpu(self) -> None:
        for store in (self._metrics.callback, self._metrics.logged, self._metrics.pbar):
            for key, value in store.items():
                if isinstance(value, Tensor) and value.device.type != "cpu":
                    store[key] = value.cpu()


_FIRST_STAGE = {
    TrainerFn.FITTING: RunningStage.TRAINING,
    TrainerFn.VALIDATING: RunningStage.VALIDATING,
    TrainerFn.TESTING: RunningStage.TESTING,
    TrainerFn.PREDICTING: RunningStage.PREDICTING,
}


def _identity_convert() -> Any:
    from fulgor.precision import Precision

    return Precision.convert_input


def _running_under_slurm() -> bool:
    return "SLURM_NTASKS" in os.environ and os.environ.get("SLURM_JOB_NAME") not in ("bash", "interactive")


def _datamodule_in_place_of_loaders(loaders: Any, datamodule: Any) -> tuple[Any, Any]:
    """Lightning accepts a LightningDataModule as the second positional argument of fit/validate/test/predict."""
    from fulgor.datamodule import LightningDataModule

    if isinstance(loaders, LightningDataModule):
        return None, loaders
    return loaders, datamodule


def _check_module(model: Any, fn: str) -> None:
    if not isinstance(model, LightningModule):
        raise TypeError(f"`Trainer.{fn}()` requires a `LightningModule`, got: {model.__class__.__qualname__}")
