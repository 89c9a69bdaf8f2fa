"""Fabric's flags (`accelerator`, `strategy`, `devices`, `num_nodes`, `precision`, `plugins`) -> the configured
strategy holding the accelerator, precision and checkpoint IO: the same strategy and precision classes the Trainer
uses, chosen by the same rules."""

from __future__ import annotations

from typing import Any

from fulgor import accelerators
from fulgor.errors import MisconfigurationException
from fulgor.precision import FSDPPrecision, Precision, select_precision
from fulgor.precision_flags import normalize_precision, unified_precision
from fulgor.rank import rank_zero_warn
from fulgor.strategies.fsdp import FSDPStrategy
from fulgor.strategies.registry import select_strategy
from fulgor.strategies.strategy import Strategy
from fulgor.strategies.strategy_registry import FABRIC_STRATEGY_REGISTRY
from fulgor.trainer.parts import Plugins, sort_plugins

__all__ = ["build_strategy"]


def build_strategy(
    accelerator: Any = "auto",
    strategy: Any = "auto",
    devices: Any = "auto",
    num_nodes: int = 1,
    precision: Any = None,
    plugins: Any = None,
) -> Strategy:
    """The strategy for Fabric's flags, configured (ranks known) and holding its accelerator and precision.

    Raises:
        ValueError: a bad `num_nodes`, strategy name or precision value (the messages name the argument).
        MisconfigurationException: a part given twice (in the strategy instance and in the flags or plugins).
    """
    if not isinstance(num_nodes, int) or isinstance(num_nodes, bool) or num_nodes < 1:
        raise ValueError(f"`Fabric(num_nodes={num_nodes!r})` is invalid: it must be a positive integer.")
    found = sort_plugins(plugins, precision=precision)
    if isinstance(strategy, Strategy):
        accelerator = _merge_strategy_parts(strategy, found, accelerator)
    chosen_accelerator = accelerators.resolve_accelerator(accelerator)
    label = chosen_accelerator.name() if isinstance(accelerator, str) else type(chosen_accelerator).__qualname__
    parallel = accelerators.parallel_devices(chosen_accelerator, devices, label)
    if isinstance(strategy, str) and strategy.lower() == "dp" and parallel[0].type == "cpu":
        # DataParallel has nothing to split over on the CPU: Lightning Fabric runs DDP instead, and says so.
        rank_zero_warn(f"{strategy!r} is not supported on CPUs, hence setting `strategy='ddp'`.")
        strategy = "ddp"
    chosen = (
        strategy
        if isinstance(strategy, Strategy)
        else select_strategy(strategy, parallel, num_nodes, FABRIC_STRATEGY_REGISTRY, owner="Fabric")
    )
    if found.checkpoint_io is not None:
        chosen.checkpoint_io = found.checkpoint_io
    if found.cluster_environment is not None and hasattr(chosen, "cluster_environment"):
        chosen.cluster_environment = found.cluster_environment
    chosen.configure(chosen_accelerator, parallel, num_nodes)
    chosen.precision_plugin = found.precision or chosen._precision_plugin or _precision(precision, chosen)
    return chosen


def _precision(flag: Any, strategy: Strategy) -> Precision:
    device = strategy.root_device.type
    if flag is not None and type(flag) in (int, str):
        flag = unified_precision(flag)  # a legacy value (16, "bf16") warns that it is discouraged, as Lightning's
    if flag == "16-mixed" and device == "cpu":
        # Checked here to word the warning for Fabric (the Trainer's rule says the same for `Trainer(...)`).
        rank_zero_warn(
            "You passed `Fabric(accelerator='cpu', precision='16-mixed')` but AMP with fp16 is not supported on CPU."
            " Using `precision='bf16-mixed'` instead."
        )
        flag = "bf16-mixed"
    if isinstance(strategy, FSDPStrategy):
        return FSDPPrecision(normalize_precision(flag, device), device=device)  # type: ignore[arg-type]
    return select_precision(flag, device)


def _merge_strategy_parts(strategy: Strategy, plugins: Plugins, accelerator: Any) -> Any:
    """A strategy instance may bring its own accelerator, precision and checkpoint IO; each may be given once."""
    if strategy.accelerator is not None:
        if accelerator != "auto":
            raise MisconfigurationException(
                "accelerator set through both strategy class and accelerator flag, choose one"
            )
        accelerator = strategy.accelerator
    if strategy._precision_plugin is not None and plugins.precision is not None:
        raise MisconfigurationException("precision set through both strategy class and plugins, choose one")
    if strategy._checkpoint_io is not None and plugins.checkpoint_io is not None:
        raise MisconfigurationException("checkpoint_io set through both strategy class and plugins, choose one")
    return accelerator
