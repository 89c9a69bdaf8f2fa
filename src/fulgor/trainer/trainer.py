"""Trainer: Lightning's flags turned into a config and parts (strategy, precision, callbacks, loggers, profiler), and
the four entry points fit/validate/test/predict. Each entry point builds one `Run`; the set-up and ending are in
lifecycle.py, the loops in fit_loop.py and eval_loop.py, the read-only views in properties.py."""

from __future__ import annotations

import copy
import os
from argparse import ArgumentParser, Namespace
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import timedelta
from typing import Any, TypeVar

import torch

from fulgor import checkpoint_contents
from fulgor.callbacks.callback import Callback
from fulgor.callbacks.on_exception_checkpoint import OnExceptionCheckpoint
from fulgor.callbacks.timer import Timer
from fulgor.datamodule import LightningDataModule
from fulgor.errors import MisconfigurationException
from fulgor.hparams_parsing import clean_namespace
from fulgor.loggers.logger import Logger
from fulgor.module import LightningModule
from fulgor.profilers import Profiler, select_profiler
from fulgor.rank import rank_zero_info
from fulgor.strategies import Strategy
from fulgor.trainer import call_inputs, data, eval_loop, fit_loop, legacy_argparse, lifecycle, parts, preemption
from fulgor.trainer.config import TrainerConfig, apply_determinism, build_config, fit_limits
from fulgor.trainer.flags import apply_barebones, defaults_from_env_vars, refuse_unimplemented
from fulgor.trainer.init_context import module_init_context
from fulgor.trainer.log_store import MetricDicts
from fulgor.trainer.properties import TrainerProperties
from fulgor.trainer.removed_args import REMOVED_FLAGS
from fulgor.trainer.results_table import print_results_table
from fulgor.trainer.run import Run
from fulgor.trainer.state import TrainerFn, TrainerState

T = TypeVar("T")


class Trainer(TrainerProperties):
    """Runs a LightningModule: `fit`, `validate`, `test` and `predict`, configured by Lightning's flags."""

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
        profiler: Profiler | str | None = None,
        detect_anomaly: bool = False,
        barebones: bool = False,
        plugins: Any = None,
        sync_batchnorm: bool = False,
        reload_dataloaders_every_n_epochs: int = 0,
        default_root_dir: str | os.PathLike[str] | None = None,
        enable_autolog_hparams: bool = True,
        model_registry: str | None = None,
        non_finite: str = "error",
    ) -> None:
        flags = dict(locals())
        flags.pop("self")
        if barebones:
            apply_barebones(flags)
        refuse_unimplemented(flags)
        self.state = TrainerState()
        self._device_ids, self.strategy = parts.build_devices(flags)
        self.precision_plugin = self.strategy.precision_plugin
        self._config: TrainerConfig = build_config(flags)
        apply_determinism(self._config)
        self.callbacks = parts.build_callbacks(flags)
        self.loggers = parts.build_loggers(flags["logger"], self._config)
        self.profiler = select_profiler(flags["profiler"])
        if detect_anomaly:
            rank_zero_info(
                "You have turned on `Trainer(detect_anomaly=True)`. This will significantly slow down compute speed"
                " and is recommended only for model debugging."
            )
        self._metrics = MetricDicts()  # what the last run logged; each run starts a new one
        self._run: Run | None = None  # the current run, or the last one until the next starts (the views read it)
        self._module: LightningModule | None = None  # the model of the current or last run
        self._user_ckpt_path: Any = None  # `trainer.ckpt_path = ...` as given, loaded by the runs that follow
        self._user_ckpt_fit_once = False  # set through `resume_from_checkpoint` (1.x): for the next fit only

    # ------------------------------------------------------------------ Lightning 1.x argparse helpers
    # Removed in 2.0, kept so 1.x scripts run unchanged; the Trainer's removed 1.x flags still parse.
    @classmethod
    def add_argparse_args(cls, parent_parser: ArgumentParser, **kwargs: Any) -> ArgumentParser:
        """Add a `--<flag>` per Trainer argument to `parent_parser` (1.x API)."""
        return legacy_argparse.add_argparse_args(cls, parent_parser, removed=REMOVED_FLAGS, **kwargs)

    @classmethod
    def from_argparse_args(cls, args: ArgumentParser | Namespace | dict[str, Any], **kwargs: Any) -> Trainer:
        """Build a Trainer from parsed arguments; `kwargs` win (1.x API)."""
        trainer: Trainer = legacy_argparse.from_argparse_args(cls, args, removed=REMOVED_FLAGS, **kwargs)
        return trainer

    parse_argparser = classmethod(legacy_argparse.parse_argparser)
    default_attributes = classmethod(legacy_argparse.default_attributes)
    match_env_arguments = classmethod(legacy_argparse.match_env_arguments)
    get_init_arguments_and_types = classmethod(legacy_argparse.get_init_arguments_and_types)

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
            return self._launch(
                self.fit, model, train_dataloaders, val_dataloaders, datamodule, ckpt_path, weights_only
            )
        model = call_inputs.module_of(model)
        datamodule, sources = call_inputs.fit_sources(model, train_dataloaders, val_dataloaders, datamodule)
        ckpt_path = self._take_ckpt_path(TrainerFn.FITTING, ckpt_path, model_provided=True)
        with self._running(TrainerFn.FITTING, model, datamodule, sources) as run:
            lifecycle.setup(run, ckpt_path, weights_only)
            with torch.autograd.set_detect_anomaly(True) if run.config.detect_anomaly else nullcontext():
                fit_loop.run_fit(run)
            lifecycle.finish(run)
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
        if self.strategy.launches_workers:
            return self._launch(self.validate, model, dataloaders, ckpt_path, verbose, datamodule, weights_only)
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
        if self.strategy.launches_workers:
            return self._launch(self.test, model, dataloaders, ckpt_path, verbose, datamodule, weights_only)
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
        model, datamodule, sources, ckpt_path = self._call_inputs(fn, model, dataloaders, datamodule, ckpt_path)
        with self._running(fn, model, datamodule, sources) as run:
            lifecycle.setup(run, ckpt_path, weights_only)
            with torch.inference_mode() if run.config.inference_mode else torch.no_grad():
                results = eval_loop.run_evaluation(run, lifecycle.FIRST_STAGE[fn])
            if verbose and self.is_global_zero:
                print_results_table(results, fn.value)
            lifecycle.finish(run)
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
            return self._launch(self.predict, model, dataloaders, datamodule, False, ckpt_path, weights_only)
        fn = TrainerFn.PREDICTING
        model, datamodule, sources, ckpt_path = self._call_inputs(fn, model, dataloaders, datamodule, ckpt_path)
        with self._running(TrainerFn.PREDICTING, model, datamodule, sources) as run:
            lifecycle.setup(run, ckpt_path, weights_only)
            with torch.inference_mode() if run.config.inference_mode else torch.no_grad():
                predictions = eval_loop.run_prediction(run, return_predictions is not False)
            lifecycle.finish(run)
        return predictions

    def save_checkpoint(
        self, filepath: str | os.PathLike[str], weights_only: bool | None = None, storage_options: Any = None
    ) -> None:
        """Write a checkpoint of the current state (Lightning's layout) to `filepath`, atomically."""
        run, connected = self._run, self.strategy.lightning_module
        if run is None and isinstance(connected, LightningModule):  # `strategy.connect(model)` before any run
            run = checkpoint_contents.connected_run(self, self._config, self._metrics, connected)
        checkpoint_contents.save_trainer_checkpoint(run, filepath, weights_only, storage_options)

    @contextmanager
    def init_module(self, empty_init: bool | None = None) -> Iterator[None]:
        """Create the model's tensors on the Trainer's device and in its precision's dtype right away (``"64-true"``
        makes float64 weights, ``"bf16-true"`` bfloat16, mixed and 32-bit precisions float32).

        Args:
            empty_init: skip the weights' initialisation (``torch.nn.init``), e.g. when a checkpoint will overwrite
                them; ``None`` lets the strategy decide (it initialises).

        Example::

            with trainer.init_module():
                model = MyModel()
        """
        with module_init_context(self.strategy, empty_init):
            yield

    # ------------------------------------------------------------------ runs
    @contextmanager
    def _running(
        self, fn: TrainerFn, model: LightningModule, datamodule: Any, sources: dict[str, data.DataSource]
    ) -> Iterator[Run]:
        """Build the run, attach the model, run the body; on any exception call `on_exception`, finalize loggers."""
        self.strategy.setup_environment(self)  # DDP: start the other ranks (once) and join the process group
        if fn == TrainerFn.FITTING:
            self._config = fit_limits(self._config, any(isinstance(cb, Timer) for cb in self.callbacks))
        self._metrics = MetricDicts()
        run = self._run = Run(
            trainer=self, config=self._config, state=self.state, metrics=self._metrics, fn=fn, module=model,
            datamodule=datamodule, sources=sources, strategy=self.strategy, precision=self.precision_plugin,
        )  # fmt: skip
        self._module = model
        clean_namespace(model.hparams)  # unpicklable hparams are dropped (with a warning), as Lightning does
        lifecycle.attach(run)
        # During fit, SIGTERM/SIGUSR1 (configurable) request a stop acted on at the next safe point.
        uninstall_signals = preemption.install(run) if fn == TrainerFn.FITTING else None
        try:
            self.callbacks = lifecycle.model_callbacks(run, self.callbacks)
            yield run
        except BaseException as exception:
            lifecycle.fail(run, exception)
            raise
        finally:
            if uninstall_signals is not None:
                uninstall_signals()

    def _set_config(self, **changes: Any) -> None:
        """Derive the config with `changes`; a running run sees the new values at once (a callback's
        `trainer.accumulate_grad_batches = n`, as in Lightning)."""
        self._config = self._config._replace(**changes)
        if self._run is not None:
            self._run.config = self._config

    def _launch(self, entry: Callable[..., T], *args: Any) -> T:
        """Run `entry(*args)` in the strategy's worker processes; rank 0's results come back into this Trainer."""
        model = next((a for a in args if isinstance(a, LightningModule)), None) or self._module
        self._module = model
        result: T = self.strategy.launcher.launch(entry, *args, trainer=self)
        return result

    def _call_inputs(
        self, fn: TrainerFn, model: LightningModule | None, dataloaders: Any, datamodule: Any, ckpt_path: Any
    ) -> tuple[LightningModule, Any, dict[str, data.DataSource], Any]:
        """validate/test/predict: the model, the datamodule, the stage's data source and the checkpoint to load."""
        given, datamodule, sources = call_inputs.evaluation_inputs(fn, model, self._module, dataloaders, datamodule)
        return given, datamodule, sources, self._take_ckpt_path(fn, ckpt_path, model_provided=model is not None)

    def _take_ckpt_path(self, fn: TrainerFn, ckpt_path: Any, model_provided: bool) -> Any:
        """The checkpoint this run loads. A path set with `trainer.ckpt_path = ...` stays for every later run, as in
        Lightning, until a run is given its own `ckpt_path` (which warns and forgets it)."""
        user_path = self._user_ckpt_path
        if self._user_ckpt_fit_once:  # 1.x `resume_from_checkpoint`: the next fit's, unless it gets its own (1.9.5)
            if fn == TrainerFn.FITTING:
                self._user_ckpt_path, self._user_ckpt_fit_once = None, False
            user_path = user_path if fn == TrainerFn.FITTING and not ckpt_path else None
        elif user_path is not None and ckpt_path:
            self._user_ckpt_path = None
        user = None if user_path is None else os.fspath(user_path)
        on_exception = any(isinstance(cb, OnExceptionCheckpoint) for cb in self.callbacks)
        return call_inputs.choose_ckpt_path(fn, ckpt_path, user, model_provided, self._module is not None, on_exception)


@contextmanager
def tuning_trial(
    trainer: Trainer, model: LightningModule, callbacks: list[Callback], **settings: Any
) -> Iterator[Trainer]:
    """A quiet Trainer for the trial fits of a tuner: `trainer`'s parts (devices, strategy, precision, profiler) and
    its config with `settings` changed, only `callbacks`, no loggers, fresh counters. Nothing of `trainer` changes;
    afterwards `model` is attached to `trainer` and its run again (a tuner callback searches inside a `fit`)."""
    trial = copy.copy(trainer)  # the parts are shared; everything a run changes is replaced below
    trial.__dict__.update(
        state=TrainerState(),
        _config=trainer._config._replace(**settings),
        callbacks=list(callbacks),
        _loggers=[],
        _metrics=MetricDicts(),
        _run=None,
        _module=None,
        _user_ckpt_path=None,
        _user_ckpt_fit_once=False,
    )
    try:
        yield trial
    finally:
        lifecycle.attach_module(model, trainer, trainer._run)
        if trainer._run is not None:  # searched inside a run: the trials' teardown moved a CUDA model to the CPU
            model.to(trainer.strategy.root_device)


def training_data_of(trainer: Trainer) -> tuple[Any, Any]:
    """`(train_dataloaders, datamodule)` as the running fit was given them (None, None: the module's own)."""
    source = trainer._run.sources.get("train") if trainer._run is not None else None
    instance = source.instance if source is not None else None
    if isinstance(instance, LightningDataModule):
        return None, instance
    if isinstance(instance, LightningModule):
        return None, None
    return instance, None
