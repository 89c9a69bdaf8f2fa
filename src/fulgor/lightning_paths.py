"""The alias table: every public module path of pytorch_lightning 2.6.6 and lightning_fabric 2.6.6 -> the fulgor modules
that hold its names (read by fulgor.compat's import aliases and rendered into docs/compatibility.md).

A source is ``"fulgor.module"`` (its public names, and the ``_``-prefixed ones it lists in ``__all__``),
``"fulgor.module:A,B"`` (only those names) or ``"fulgor.module:_Lightning=fulgor_name"`` (a name Lightning spells
differently). Sources are searched in order and imported on first use; a source module that does not exist yet (a
feature still being built, see ``NOT_BUILT``) is skipped, and a path none of whose sources exist does not import.
Lightning's other private (``_``-prefixed) names are not provided.
"""

from __future__ import annotations

__all__ = ["FABRIC", "LIGHTNING", "LIGHTNING_VERSION", "NOT_BUILT", "PYTORCH", "Sources"]

LIGHTNING_VERSION = "2.6.6"  # the Lightning API fulgor follows; `pl.__version__` for version checks in user code

Sources = tuple[str, ...]

# fulgor modules the table names that are not written yet -> what will provide them. The paths and names they back
# answer as soon as the module exists; until then an import says which work it waits for.
NOT_BUILT: dict[str, str] = {}

_INTERNAL = "fulgor.lightning_internals"  # Lightning's loop classes: stand-ins that raise when used
_U = "fulgor.unavailable"  # refused features: importable classes whose use says what fulgor offers instead
_XLA_PRECISION_ETC = f"{_U}:BitsandbytesPrecision,DeepSpeedPrecision,TransformerEnginePrecision,XLAPrecision"
_LAUNCHERS = (
    "fulgor.strategies.launcher:_MultiProcessingLauncher=MultiProcessingLauncher,_SubprocessScriptLauncher=ScriptLauncher",
    f"{_U}:_XLALauncher",
)
_ENVIRONMENTS = ("fulgor.strategies.environments", f"{_U}:XLAEnvironment")
_CHECKPOINT_IO = ("fulgor.checkpoint_io", f"{_U}:XLACheckpointIO")
_PRECISION = ("fulgor.precision", _XLA_PRECISION_ETC)
_RANK_ZERO = ("fulgor.rank", "fulgor.rank_messages", "fulgor.lightning_errors:LightningDeprecationWarning")
_WARNINGS = ("fulgor.errors", "fulgor.lightning_errors")
# Lightning's module-level `warning_cache`: fulgor's set of once-only warnings already shown (`.clear()` re-arms them).
_ONCE = "fulgor.rank:warning_cache=_warned"
_CLOUD_IO = "fulgor.checkpointing:_atomic_save=atomic_save,_load=load_checkpoint_file"
# Private aliases projects import for their own annotations.
_PRIVATE_TYPES = (
    "fulgor.type_aliases:_DEVICE,_EVALUATE_OUTPUT,_MAP_LOCATION_TYPE,_METRIC,_NUMBER,_PARAMETERS,_PATH,_PREDICT_OUTPUT,"
    "_Stateful"
)

# Top-level `import lightning as L`: its own names; `L.pytorch` and `L.fabric` are the two tables below.
LIGHTNING: Sources = (
    "fulgor:Callback,LightningDataModule,LightningModule,Trainer,seed_everything",
    "fulgor.fabric:Fabric",  # issue 15
)

_CALLBACK_FILES = (
    "batch_size_finder", "callback", "checkpoint", "device_stats_monitor", "early_stopping", "finetuning",
    "gradient_accumulation_scheduler", "lambda_function", "lr_finder", "lr_monitor", "model_checkpoint",
    "model_summary", "on_exception_checkpoint", "prediction_writer", "pruning", "rich_model_summary", "spike",
    "throughput_monitor", "timer", "weight_averaging",
)  # fmt: skip

# Paths relative to `pytorch_lightning` / `lightning.pytorch` ("" is the package itself).
PYTORCH: dict[str, Sources] = {
    "": ("fulgor", "fulgor.lightning_logo"),
    # accelerators
    "accelerators": (
        "fulgor.accelerators",
        "fulgor.accelerator_registry:AcceleratorRegistry=ACCELERATOR_REGISTRY",
        f"{_U}:XLAAccelerator",
    ),
    "accelerators.accelerator": ("fulgor.accelerators",),
    "accelerators.cpu": ("fulgor.accelerators",),
    "accelerators.cuda": ("fulgor.accelerators",),
    "accelerators.mps": ("fulgor.accelerators",),
    "accelerators.xla": (f"{_U}:XLAAccelerator",),
    # callbacks
    "callbacks": (
        "fulgor.callbacks",
        "fulgor.callbacks.device_stats_monitor",
        "fulgor.callbacks.pruning",
        "fulgor.callbacks.spike",
        "fulgor.callbacks.throughput_monitor",
    ),
    **{f"callbacks.{name}": (f"fulgor.callbacks.{name}",) for name in _CALLBACK_FILES},
    "callbacks.stochastic_weight_avg": ("fulgor.callbacks.weight_averaging",),
    "callbacks.progress": (
        "fulgor.callbacks.progress",
        "fulgor.callbacks.tqdm_progress",
        "fulgor.callbacks.rich_progress",
    ),
    "callbacks.progress.progress_bar": ("fulgor.callbacks.progress",),
    "callbacks.progress.rich_progress": ("fulgor.callbacks.rich_progress", "fulgor.progress_format"),
    "callbacks.progress.tqdm_progress": ("fulgor.callbacks.tqdm_progress", "fulgor.progress_format"),
    # cli
    "cli": ("fulgor.lightning_cli", "fulgor.cli_classes"),
    "utilities.cli": ("fulgor.lightning_cli", "fulgor.cli_classes"),  # 1.x path
    # core
    "core": ("fulgor.module", "fulgor.datamodule", "fulgor.callbacks.callback"),
    "core.datamodule": ("fulgor.datamodule",),
    "core.hooks": ("fulgor.hook_defaults",),
    "core.lightning": ("fulgor.module",),  # 1.x path
    "core.mixins": ("fulgor.hparams_mixin",),
    "core.mixins.hparams_mixin": ("fulgor.hparams_mixin", "fulgor.hparams:AttributeDict,save_hyperparameters"),
    "core.module": ("fulgor.module", "fulgor.module_fabric:_TrainerFabricShim=TrainerFabricShim"),
    "core.optimizer": ("fulgor.optimizer", "fulgor.loop_names:do_nothing_closure"),
    "core.saving": ("fulgor.hparams", "fulgor.hparams_tags"),
    # demos
    "demos": ("fulgor.demos",),
    "demos.boring_classes": ("fulgor.demos.boring_classes",),
    "demos.lstm": ("fulgor.demos.lstm",),
    "demos.mnist_datamodule": ("fulgor.demos.mnist_datamodule",),
    "demos.transformer": ("fulgor.demos.transformer",),
    # loggers
    "loggers": ("fulgor.loggers", "fulgor.loggers.comet", "fulgor.loggers.neptune", f"{_U}:LitLogger"),
    "loggers.comet": ("fulgor.loggers.comet",),
    "loggers.csv_logs": ("fulgor.loggers.csv_logs",),
    "loggers.litlogger": (f"{_U}:LitLogger",),
    "loggers.logger": ("fulgor.loggers.logger", "fulgor.dict_merging"),
    "loggers.mlflow": ("fulgor.loggers.mlflow",),
    "loggers.neptune": ("fulgor.loggers.neptune",),
    "loggers.tensorboard": ("fulgor.loggers.tensorboard",),
    "loggers.utilities": ("fulgor.loggers._utils",),
    "loggers.wandb": ("fulgor.loggers.wandb",),
    # loops: fulgor's loops are plain functions (fulgor.trainer.*_loop); Lightning's loop classes are private
    "loops": ("fulgor.trainer.loop_views", "fulgor.trainer.fit_loop"),
    "loops.evaluation_loop": ("fulgor.trainer.eval_loop", "fulgor.loop_names:RestartStage=EvaluationRestartStage"),
    "loops.fetchers": ("fulgor.trainer.data",),
    "loops.fit_loop": ("fulgor.trainer.fit_loop", "fulgor.loop_names:RestartStage=FitRestartStage"),
    "loops.loop": ("fulgor.trainer.loop_views", "fulgor.trainer.fit_loop"),
    "loops.optimization": ("fulgor.trainer.optimization",),
    "loops.optimization.automatic": ("fulgor.trainer.optimization", f"{_INTERNAL}:Closure,ClosureResult"),
    "loops.optimization.closure": ("fulgor.trainer.optimization", f"{_INTERNAL}:AbstractClosure,OutputResult"),
    "loops.optimization.manual": ("fulgor.trainer.optimization", f"{_INTERNAL}:ManualResult"),
    "loops.prediction_loop": ("fulgor.trainer.eval_loop",),
    "loops.progress": ("fulgor.trainer.state",),
    "loops.training_epoch_loop": ("fulgor.trainer.fit_loop", "fulgor.loop_names:RestartStage=EpochRestartStage"),
    "loops.utilities": ("fulgor.loop_names:check_finite_loss",),
    # overrides
    "overrides": ("fulgor.samplers",),
    "overrides.distributed": ("fulgor.samplers",),
    # plugins
    "plugins": (
        "fulgor.precision",
        "fulgor.deprecated_precision",
        "fulgor.checkpoint_io",
        "fulgor.layer_sync",
        "fulgor.strategies.environments:ClusterEnvironment",
        f"{_XLA_PRECISION_ETC},XLACheckpointIO",
    ),
    "plugins.environments": _ENVIRONMENTS,
    "plugins.io": _CHECKPOINT_IO,
    "plugins.io.async_plugin": ("fulgor.checkpoint_io",),
    "plugins.io.checkpoint_plugin": ("fulgor.checkpoint_io",),
    "plugins.io.torch_plugin": ("fulgor.checkpoint_io",),
    "plugins.io.wrapper": ("fulgor.checkpoint_io",),
    "plugins.io.xla_plugin": (f"{_U}:XLACheckpointIO",),
    "plugins.layer_sync": ("fulgor.layer_sync",),
    "plugins.precision": (*_PRECISION, "fulgor.deprecated_precision"),
    "plugins.precision.amp": ("fulgor.precision", "fulgor.deprecated_precision:MixedPrecisionPlugin"),
    "plugins.precision.bitsandbytes": (f"{_U}:BitsandbytesPrecision",),
    "plugins.precision.deepspeed": (f"{_U}:DeepSpeedPrecision",),
    "plugins.precision.double": (
        "fulgor.precision",
        "fulgor.double_precision_module",
        "fulgor.deprecated_precision:DoublePrecisionPlugin",
    ),
    "plugins.precision.fsdp": (
        "fulgor.precision",
        "fulgor.deprecated_precision:FSDPPrecisionPlugin,FSDPMixedPrecisionPlugin",
    ),
    "plugins.precision.half": ("fulgor.precision", "fulgor.deprecated_precision:HalfPrecisionPlugin"),
    "plugins.precision.precision": ("fulgor.precision", "fulgor.deprecated_precision:PrecisionPlugin"),
    # Lightning's graveyard keeps the 2.0 module name importable (the same module as `plugins.precision.precision`).
    "plugins.precision.precision_plugin": ("fulgor.precision", "fulgor.deprecated_precision:PrecisionPlugin"),
    "plugins.precision.transformer_engine": (f"{_U}:TransformerEnginePrecision",),
    "plugins.precision.xla": (f"{_U}:XLAPrecision",),
    # profilers
    "profilers": ("fulgor.profilers", f"{_U}:XLAProfiler"),
    "profilers.advanced": ("fulgor.profilers",),
    "profilers.base": ("fulgor.profilers",),
    "profilers.profiler": ("fulgor.profilers",),
    "profilers.pytorch": ("fulgor.profilers", "fulgor.module_records", _ONCE),
    "serve": (f"{_U}:ServableModule,ServableModuleValidator",),
    "serve.servable_module": (f"{_U}:ServableModule",),
    "serve.servable_module_validator": (f"{_U}:ServableModule,ServableModuleValidator",),
    "profilers.simple": ("fulgor.profilers",),
    "profilers.xla": (f"{_U}:XLAProfiler",),
    # strategies
    "strategies": (
        "fulgor.strategies",
        "fulgor.strategies.fsdp",
        "fulgor.strategies.parallel",
        "fulgor.strategies.strategy_registry",
        f"{_U}:DeepSpeedStrategy,ModelParallelStrategy,SingleDeviceXLAStrategy,XLAStrategy",
    ),
    "strategies.ddp": ("fulgor.strategies.ddp", "fulgor.strategies.registry:_DDP_FORK_ALIASES=FORK_STRATEGY_NAMES"),
    "strategies.deepspeed": (f"{_U}:DeepSpeedStrategy,remove_module_hooks",),
    "strategies.fsdp": ("fulgor.strategies.fsdp",),
    "strategies.launchers": _LAUNCHERS,
    "strategies.launchers.launcher": ("fulgor.strategies.launcher",),
    "strategies.launchers.multiprocessing": _LAUNCHERS[:1],
    "strategies.launchers.subprocess_script": _LAUNCHERS[:1],
    "strategies.launchers.xla": _LAUNCHERS[1:],
    "strategies.model_parallel": (f"{_U}:ModelParallelStrategy",),
    "strategies.parallel": ("fulgor.strategies.parallel",),
    "strategies.single_device": ("fulgor.strategies.single_device",),
    "strategies.single_xla": (f"{_U}:SingleDeviceXLAStrategy",),
    "strategies.strategy": ("fulgor.strategies.strategy",),
    "strategies.xla": (f"{_U}:XLAStrategy",),
    # trainer: Lightning's connectors are answered by the fulgor module that owns the same job
    "trainer": ("fulgor.trainer.trainer", "fulgor.seed"),
    "trainer.call": ("fulgor.trainer.lifecycle",),
    "trainer.configuration_validator": ("fulgor.trainer.checks",),
    "trainer.connectors": ("fulgor.trainer.parts",),
    "trainer.connectors.accelerator_connector": ("fulgor.trainer.parts", "fulgor.accelerators"),
    "trainer.connectors.callback_connector": ("fulgor.trainer.callback_list",),
    "trainer.connectors.checkpoint_connector": ("fulgor.checkpoint_restore",),
    "trainer.connectors.data_connector": ("fulgor.trainer.data", _ONCE),
    "trainer.connectors.logger_connector": ("fulgor.trainer.to_loggers",),
    "trainer.connectors.logger_connector.fx_validator": ("fulgor.hooks",),
    "trainer.connectors.logger_connector.logger_connector": ("fulgor.trainer.to_loggers",),
    "trainer.connectors.logger_connector.result": ("fulgor.trainer.log_store",),
    "trainer.connectors.signal_connector": ("fulgor.trainer.preemption",),
    "trainer.setup": ("fulgor.trainer.parts",),
    "trainer.states": ("fulgor.trainer.state",),
    "trainer.trainer": ("fulgor.trainer.trainer",),
    # tuner
    "tuner": ("fulgor.tuner",),
    "tuner.batch_size_scaling": ("fulgor.tuner",),
    "tuner.lr_finder": ("fulgor.tuner",),
    "tuner.tuning": ("fulgor.tuner",),
    # utilities
    "utilities": (
        *_RANK_ZERO,
        "fulgor.seed",
        "fulgor.hparams:AttributeDict",
        "fulgor.hparams_parsing:is_picklable",
        "fulgor.combined_loader",
        "fulgor.enums",
        "fulgor.lightning_errors",
        "fulgor.parameter_tying",
        "fulgor.grad_norm",
        "fulgor.shared_filesystem",
        "fulgor.throughput:measure_flops",
        "fulgor.data.transfer",
        "fulgor.data.sizes:suggested_max_num_workers",
        "fulgor.errors",
    ),
    "utilities.apply_func": ("fulgor.data.transfer", "fulgor.data.conversion"),  # 1.x path
    "utilities.argparse": ("fulgor.trainer.legacy_argparse",),
    "utilities.cloud_io": ("fulgor.fs", _CLOUD_IO, "fulgor.checkpointing:load=load_checkpoint_file"),  # 1.x path
    "utilities.combined_loader": (
        "fulgor.combined_loader",
        "fulgor.combined_loader:_MaxSizeCycle,_MinSize,_MaxSize,_Sequential",  # the modes' iterators, by name
    ),
    "utilities.compile": ("fulgor.compiled_modules",),
    "utilities.consolidate_checkpoint": ("fulgor.checkpointing",),
    "utilities.data": ("fulgor.data.sizes", "fulgor.trainer.log_store:extract_batch_size", _ONCE),
    "utilities.distributed": ("fulgor.rank", "fulgor.shared_filesystem", "fulgor.samplers"),  # 1.x path
    "utilities.deepspeed": (f"{_U}:convert_zero_checkpoint_to_fp32_state_dict,ds_checkpoint_dir",),
    "utilities.enums": ("fulgor.enums",),
    "utilities.exceptions": _WARNINGS,
    "utilities.grads": ("fulgor.grad_norm",),
    "utilities.imports": ("fulgor.available_packages",),
    "utilities.memory": ("fulgor.memory",),
    "utilities.migration": ("fulgor.checkpoint_upgrade",),
    "utilities.migration.migration": ("fulgor.checkpoint_upgrade",),
    "utilities.migration.utils": (
        "fulgor.checkpoint_upgrade",
        "fulgor.checkpoint_upgrade:_get_version=get_version,_set_version=set_version,"
        "_set_legacy_version=set_legacy_version",
    ),
    "utilities.model_helpers": (
        "fulgor.overridden",
        "fulgor.torchvision_models",
        "fulgor.checkpoint_loading:_restricted_classmethod=class_only",
    ),
    "utilities.model_registry": (f"{_U}:download_model_from_registry,find_model_local_ckpt_path",),
    "utilities.model_summary": ("fulgor.summary", f"{_U}:DeepSpeedSummary"),
    "utilities.model_summary.model_summary": ("fulgor.summary",),
    "utilities.model_summary.model_summary_deepspeed": (
        f"{_U}:DeepSpeedLayerSummary,DeepSpeedSummary,deepspeed_param_size",
    ),
    "utilities.parameter_tying": ("fulgor.parameter_tying",),
    "utilities.parsing": (
        "fulgor.hparams",
        "fulgor.hparams_parsing",
        "fulgor.lightning_attrs",
        "fulgor.trainer.legacy_argparse",
    ),
    "utilities.rank_zero": _RANK_ZERO,
    "utilities.seed": ("fulgor.seed",),
    "utilities.signature_utils": ("fulgor.hook_signature",),
    "utilities.testing": ("fulgor.runif",),
    "utilities.types": ("fulgor.type_aliases", _PRIVATE_TYPES),
    "utilities.upgrade_checkpoint": ("fulgor.checkpoint_upgrade",),
    "utilities.warnings": _WARNINGS,
}

# Paths relative to `lightning_fabric` / `lightning.fabric`.
FABRIC: dict[str, Sources] = {
    "": ("fulgor.seed:seed_everything", "fulgor.fabric:Fabric,is_wrapped"),  # Fabric: issue 15
    # accelerators
    "accelerators": ("fulgor.accelerators", "fulgor.accelerator_registry:ACCELERATOR_REGISTRY", f"{_U}:XLAAccelerator"),
    "accelerators.accelerator": ("fulgor.accelerators",),
    "accelerators.cpu": ("fulgor.accelerators",),
    "accelerators.cuda": ("fulgor.accelerators",),
    "accelerators.mps": ("fulgor.accelerators",),
    "accelerators.registry": ("fulgor.accelerator_registry",),
    "accelerators.xla": (f"{_U}:XLAAccelerator",),
    # Fabric itself (issue 15)
    "cli": (
        "fulgor.fabric_cli",
        "fulgor.fabric_cli:_run=run_command,_consolidate=consolidate_command,_main=fabric_command,"
        "_get_supported_strategies=supported_strategies",
    ),
    "connector": ("fulgor.trainer.parts",),
    "fabric": ("fulgor.fabric",),
    "wrappers": ("fulgor.fabric.wrappers", "fulgor.fabric.wrappers:_unwrap_objects=unwrap_objects"),
    # loggers
    "loggers": ("fulgor.fabric_loggers", "fulgor.loggers.logger:Logger"),
    "loggers.csv_logs": ("fulgor.fabric_loggers:CSVLogger",),
    "loggers.logger": ("fulgor.loggers.logger",),
    "loggers.tensorboard": ("fulgor.fabric_loggers:TensorBoardLogger",),
    # plugins
    "plugins": (
        "fulgor.precision",
        "fulgor.checkpoint_io",
        "fulgor.strategies.environments:ClusterEnvironment",
        f"{_XLA_PRECISION_ETC},XLACheckpointIO",
    ),
    "plugins.collectives": ("fulgor.collectives",),
    "plugins.collectives.collective": ("fulgor.collectives",),
    "plugins.collectives.single_device": ("fulgor.collectives",),
    "plugins.collectives.torch_collective": ("fulgor.collectives",),
    "plugins.environments": _ENVIRONMENTS,
    **{
        f"plugins.environments.{name}": ("fulgor.strategies.environments",)
        for name in ("cluster_environment", "kubeflow", "lightning", "lsf", "mpi", "slurm", "torchelastic")
    },
    "plugins.environments.xla": (f"{_U}:XLAEnvironment",),
    "plugins.io": _CHECKPOINT_IO,
    "plugins.io.checkpoint_io": ("fulgor.checkpoint_io",),
    "plugins.io.torch_io": ("fulgor.checkpoint_io",),
    "plugins.io.xla": (f"{_U}:XLACheckpointIO",),
    "plugins.precision": _PRECISION,
    "plugins.precision.amp": ("fulgor.precision",),
    "plugins.precision.bitsandbytes": (f"{_U}:BitsandbytesPrecision",),
    "plugins.precision.deepspeed": (f"{_U}:DeepSpeedPrecision",),
    "plugins.precision.double": ("fulgor.precision",),
    "plugins.precision.fsdp": ("fulgor.precision",),
    "plugins.precision.half": ("fulgor.precision",),
    "plugins.precision.precision": ("fulgor.precision",),
    "plugins.precision.transformer_engine": (f"{_U}:TransformerEnginePrecision",),
    "plugins.precision.utils": ("fulgor.precision",),
    "plugins.precision.xla": (f"{_U}:XLAPrecision",),
    # strategies
    "strategies": (
        "fulgor.strategies",
        "fulgor.strategies.fsdp",
        "fulgor.strategies.parallel",
        "fulgor.strategies.strategy_registry",
        "fulgor.strategies.strategy_registry:STRATEGY_REGISTRY=FABRIC_STRATEGY_REGISTRY",
        "fulgor.strategies.dp",
        f"{_U}:DeepSpeedStrategy,ModelParallelStrategy,SingleDeviceXLAStrategy,XLAStrategy,XLAFSDPStrategy",
    ),
    "strategies.ddp": ("fulgor.strategies.ddp", "fulgor.strategies.registry:_DDP_FORK_ALIASES=FORK_STRATEGY_NAMES"),
    "strategies.deepspeed": (f"{_U}:DeepSpeedStrategy",),
    "strategies.dp": ("fulgor.strategies.dp",),
    "strategies.fsdp": ("fulgor.strategies.fsdp",),
    "strategies.launchers": _LAUNCHERS,
    "strategies.launchers.launcher": ("fulgor.strategies.launcher",),
    "strategies.launchers.multiprocessing": _LAUNCHERS[:1],
    "strategies.launchers.subprocess_script": _LAUNCHERS[:1],
    "strategies.launchers.xla": _LAUNCHERS[1:],
    "strategies.model_parallel": (f"{_U}:ModelParallelStrategy",),
    "strategies.parallel": ("fulgor.strategies.parallel",),
    "strategies.registry": ("fulgor.strategies.registry",),
    "strategies.single_device": ("fulgor.strategies.single_device",),
    "strategies.single_xla": (f"{_U}:SingleDeviceXLAStrategy",),
    "strategies.strategy": ("fulgor.strategies.strategy",),
    "strategies.xla": (f"{_U}:XLAStrategy",),
    "strategies.xla_fsdp": (f"{_U}:XLAFSDPStrategy",),
    # utilities
    "utilities": (
        *_RANK_ZERO,
        "fulgor.hparams:AttributeDict",
        "fulgor.enums:LightningEnum",
        "fulgor.throughput",
        "fulgor.lightning_errors:disable_possible_user_warnings",
        "fulgor.shared_filesystem",
        "fulgor.data.transfer",
        "fulgor.data.sizes:suggested_max_num_workers",
    ),
    "utilities.apply_func": ("fulgor.data.transfer", "fulgor.data.conversion"),
    "utilities.cloud_io": ("fulgor.fs", _CLOUD_IO),
    "utilities.consolidate_checkpoint": ("fulgor.checkpointing",),
    "utilities.data": ("fulgor.data.sizes", "fulgor.hparams:AttributeDict"),
    "utilities.device_dtype_mixin": (
        "fulgor.device_dtype",
        "fulgor.device_dtype:_DeviceDtypeModuleMixin=DeviceDtypeModuleMixin",
    ),
    "utilities.device_parser": ("fulgor.accelerators",),
    "utilities.distributed": (
        "fulgor.shared_filesystem",
        "fulgor.samplers:DistributedSamplerWrapper",
        "fulgor.collectives:ReduceOp",
    ),
    "utilities.enums": ("fulgor.enums:LightningEnum",),
    "utilities.exceptions": ("fulgor.errors:MisconfigurationException",),
    "utilities.imports": ("fulgor.available_packages",),
    "utilities.init": ("fulgor.trainer.trainer",),
    "utilities.load": ("fulgor.checkpointing",),
    "utilities.logger": (
        "fulgor.loggers._utils:_add_prefix=add_prefix,_convert_params=convert_params,_flatten_dict=flatten_dict,"
        "_sanitize_params=sanitize_params",
    ),
    "utilities.optimizer": ("fulgor.optimizer",),
    "utilities.rank_zero": _RANK_ZERO,
    "utilities.registry": ("fulgor.trainer.callback_list",),
    "utilities.seed": ("fulgor.seed",),
    "utilities.spike": ("fulgor.callbacks.spike",),
    "utilities.testing": ("fulgor.runif",),
    "utilities.throughput": ("fulgor.throughput",),
    "utilities.types": ("fulgor.type_aliases", _PRIVATE_TYPES),
    "utilities.warnings": _WARNINGS,
}
