"""The parts the Trainer's flags name, built once in `Trainer.__init__`: the accelerator, devices, strategy and the
`plugins` (precision, checkpoint IO, cluster environment, layer sync), the callback list (with the defaults the flags
ask for) and the loggers (Lightning's default logger rule)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fulgor import accelerators, hardware
from fulgor.callbacks.callback import Callback
from fulgor.checkpoint_io import CheckpointIO
from fulgor.errors import MisconfigurationException
from fulgor.layer_sync import LayerSync, TorchSyncBatchNorm
from fulgor.loggers.csv_logs import CSVLogger
from fulgor.loggers.logger import DummyLogger, Logger
from fulgor.loggers.tensorboard import TensorBoardLogger, tensorboard_available
from fulgor.precision import Precision, select_precision, unified_precision
from fulgor.strategies.cluster_environment import ClusterEnvironment
from fulgor.strategies.fsdp import FSDPStrategy
from fulgor.strategies.registry import select_strategy
from fulgor.strategies.scheduler_environments import SLURMEnvironment
from fulgor.strategies.strategy import Strategy
from fulgor.trainer import callback_list
from fulgor.trainer.config import TrainerConfig

__all__ = ["Plugins", "build_callbacks", "build_devices", "build_loggers", "sort_plugins"]


@dataclass
class Plugins:
    """The `plugins` flag sorted by kind (at most one of each), with `sync_batchnorm=True` as a TorchSyncBatchNorm."""

    precision: Precision | None = None
    checkpoint_io: CheckpointIO | None = None
    cluster_environment: ClusterEnvironment | None = None
    layer_sync: LayerSync | None = None


_KINDS: tuple[tuple[type, str, str], ...] = (
    (Precision, "Precision", "precision"),
    (CheckpointIO, "CheckpointIO", "checkpoint_io"),
    (ClusterEnvironment, "ClusterEnvironment", "cluster_environment"),
    (LayerSync, "TorchSyncBatchNorm", "layer_sync"),  # Lightning counts every LayerSync under this name
)


def sort_plugins(plugins: Any, sync_batchnorm: bool = False, precision: Any = None) -> Plugins:
    """Check the `plugins` flag (one plugin or an iterable of them) and sort it by kind.

    Args:
        plugins: the flag.
        sync_batchnorm: the `sync_batchnorm` flag.
        precision: the `precision` flag, which must not be set together with a precision plugin.

    Raises:
        MisconfigurationException: a plugin of an unknown type, two of one kind, or a LayerSync other than
            TorchSyncBatchNorm together with `sync_batchnorm=True` (Lightning's messages).
        ValueError: a precision plugin together with the `precision` flag.
    """
    found = Plugins(layer_sync=TorchSyncBatchNorm() if sync_batchnorm else None)
    if plugins is None:
        return found
    counts: Counter[str] = Counter()
    for plugin in [plugins] if not isinstance(plugins, Iterable) else plugins:
        kind = next((k for k in _KINDS if isinstance(plugin, k[0])), None)
        if kind is None:
            raise MisconfigurationException(
                f"Found invalid type for plugin {plugin}. Expected one of: Precision, CheckpointIO,"
                " ClusterEnvironment, or LayerSync."
            )
        if sync_batchnorm and isinstance(plugin, LayerSync) and not isinstance(plugin, TorchSyncBatchNorm):
            raise MisconfigurationException(
                # `__class__`, as Lightning: a `Mock(spec=LayerSync)` reports its spec's name.
                f"You set `Trainer(sync_batchnorm=True)` and provided a `{plugin.__class__.__name__}` plugin, but this"
                " is not allowed. Choose one or the other."
            )
        setattr(found, kind[2], plugin)
        counts[kind[1]] += 1
    duplicated = [name for name, count in counts.items() if count > 1]
    if duplicated:
        raise MisconfigurationException(
            f"Received multiple values for {', '.join(duplicated)} flags in `plugins`. Expected one value for each"
            " type at most."
        )
    if found.precision is not None and precision is not None:
        raise ValueError(
            f"Received both `precision={unified_precision(precision)}` and `plugins={found.precision}`. Choose one."
        )
    return found


def build_devices(flags: dict[str, Any]) -> tuple[list[int], Strategy]:
    """(device ids, strategy) from the `accelerator`, `devices`, `strategy`, `num_nodes`, `plugins`,
    `sync_batchnorm` and `precision` flags; prints Lightning's device availability lines.

    The strategy holds the accelerator, precision plugin, checkpoint IO and (distributed) the cluster environment and
    layer sync, as in Lightning.
    """
    num_nodes = flags["num_nodes"]
    if not isinstance(num_nodes, int) or num_nodes < 1:
        raise ValueError(f"`num_nodes` must be a positive integer, but got {num_nodes}.")
    plugins = sort_plugins(flags["plugins"], flags["sync_batchnorm"], flags["precision"])
    strategy_flag = flags["strategy"]
    accelerator_flag = flags["accelerator"]
    if isinstance(strategy_flag, Strategy):
        accelerator_flag = _merge_strategy_parts(strategy_flag, plugins, accelerator_flag)
    _refuse_zero_devices(accelerator_flag, flags["devices"])
    accelerator = accelerators.resolve_accelerator(accelerator_flag)
    label = accelerator.name() if isinstance(accelerator_flag, str) else type(accelerator).__qualname__
    devices = accelerators.parallel_devices(accelerator, flags["devices"], label)
    strategy = (
        strategy_flag if isinstance(strategy_flag, Strategy) else select_strategy(strategy_flag, devices, num_nodes)
    )
    _connect(strategy, plugins)
    # Ranks are known from here on (torchrun/SLURM/launcher variables), so rank-zero printing is right at once.
    strategy.configure(accelerator, devices, num_nodes)
    device_type = strategy.root_device.type
    precision = plugins.precision or strategy._precision_plugin
    if precision is None:
        precision = select_precision(flags["precision"], device_type, sharded=isinstance(strategy, FSDPStrategy))
    strategy.precision_plugin = precision
    hardware.log_device_info(device_type)
    return accelerators.device_ids(getattr(strategy, "parallel_devices", [strategy.root_device])), strategy


def _refuse_zero_devices(accelerator_flag: Any, devices: Any) -> None:
    """`devices=0`, `"0"` or `[]` with a named accelerator: refused before the accelerator's availability is checked,
    as Lightning does ("auto" and "gpu" are resolved first; `parallel_devices` then names the device found)."""
    name = accelerator_flag.lower() if isinstance(accelerator_flag, str) else None
    if name is None or name in ("auto", "gpu"):
        return
    try:
        zero = bool(devices in ([], 0, "0"))  # Lightning's comparison: False and 0.0 count as zero too
    except (TypeError, ValueError, RuntimeError):  # objects with odd __eq__ (arrays, tensors) are not zero
        zero = False
    if zero:
        raise MisconfigurationException(
            f"`Trainer(devices={devices!r})` value is not a valid input using {accelerator_flag} accelerator."
        )


def _merge_strategy_parts(strategy: Strategy, plugins: Plugins, accelerator_flag: Any) -> Any:
    """A strategy instance may bring its own accelerator, precision, checkpoint IO and cluster environment; each may
    be given only once (Lightning's messages). Returns the accelerator flag to resolve."""
    if strategy.accelerator is not None:
        if accelerator_flag != "auto":
            raise MisconfigurationException(
                "accelerator set through both strategy class and accelerator flag, choose one"
            )
        accelerator_flag = strategy.accelerator
    conflicts = (
        (strategy._precision_plugin, plugins.precision, "precision set through both strategy class and plugins"),
        (strategy._checkpoint_io, plugins.checkpoint_io, "checkpoint_io set through both strategy class and plugins"),
        (getattr(strategy, "cluster_environment", None), plugins.cluster_environment,
         "cluster_environment set through both strategy class and plugins"),
    )  # fmt: skip
    for own, given, message in conflicts:
        if own is not None and given is not None:
            raise MisconfigurationException(f"{message}, choose one")
    return accelerator_flag


def _connect(strategy: Strategy, plugins: Plugins) -> None:
    """Give the strategy the plugins it uses: a single-device strategy has no cluster environment and no layer sync
    (Lightning ignores them there, as `sync_batchnorm=True` on one device)."""
    if plugins.checkpoint_io is not None:
        strategy.checkpoint_io = plugins.checkpoint_io
    if plugins.cluster_environment is not None and hasattr(strategy, "cluster_environment"):
        strategy.cluster_environment = plugins.cluster_environment
    if hasattr(strategy, "layer_sync"):
        strategy.layer_sync = plugins.layer_sync


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
            # Lightning's rule: the SLURM job id (an int: `version_<id>`) unless the job is interactive
            chosen = TensorBoardLogger(save_dir=config.default_root_dir, version=SLURMEnvironment.job_id())
        else:
            chosen = CSVLogger(save_dir=config.default_root_dir)
        loggers: list[Logger] = [chosen]
    elif logger is False:
        loggers = []
    else:
        # Lightning's rule: an Iterable is a list of loggers, anything else one logger (duck-typed loggers included)
        loggers = list(logger) if isinstance(logger, Iterable) and not isinstance(logger, Logger) else [logger]
    if config.fast_dev_run:
        return [DummyLogger()] if loggers else []
    return loggers
