"""`StrategyRegistry` (the Trainer's) and `FABRIC_STRATEGY_REGISTRY` (Lightning Fabric's `STRATEGY_REGISTRY`): the
`strategy=` names and what each builds (a Strategy class and its arguments). The two lists differ as in Lightning
(Fabric has "dp" but no "single_device" or `*_find_unused_parameters_false`); users register their own
(`StrategyRegistry.register("my_ddp", DDPStrategy, find_unused_parameters=True)`), then `Trainer(strategy="my_ddp")`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fulgor.strategies.ddp import DDPStrategy
from fulgor.strategies.dp import DataParallelStrategy
from fulgor.strategies.fsdp import FSDPStrategy
from fulgor.strategies.single_device import SingleDeviceStrategy
from fulgor.strategies.strategy import Strategy
from fulgor.unavailable import NotProvidedError, refusal_message

__all__ = ["FABRIC_STRATEGY_REGISTRY", "StrategyRegistry"]


class _Registry(dict[str, dict[str, Any]]):
    """Name -> {"strategy": class or factory, "init_params": its keyword arguments, "description", "strategy_name"}."""

    def register(
        self,
        name: str,
        strategy: Callable[..., Strategy] | None = None,
        description: str | None = None,
        override: bool = False,
        **init_params: Any,
    ) -> Callable[..., Any]:
        """Register `strategy` (a Strategy class or factory) under `name`, built with `init_params` when chosen.

        Without `strategy`, returns a decorator that registers the class it decorates.

        Raises:
            ValueError: `name` is already registered and `override` is False.
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"StrategyRegistry.register(name={name!r}): the name must be a non-empty string.")
        if name in self and not override:
            raise ValueError(f"'{name}' is already present in the registry. HINT: Use `override=True`.")

        def add(target: Callable[..., Strategy]) -> Callable[..., Strategy]:
            self[name] = {
                "description": description or "",
                "init_params": init_params,
                "strategy": target,
                "strategy_name": name,
            }
            return target

        return add if strategy is None else add(strategy)

    def get(self, name: str, default: Any = None) -> Any:
        """A new Strategy for `name` (its `strategy_name` set to `name`); `default` when given and `name` is unknown.

        Raises:
            KeyError: `name` is not registered and no `default` was given (the message lists the names).
        """
        if name in self:
            entry = self[name]
            built = entry["strategy"](**entry["init_params"])
            built.strategy_name = name
            return built
        if default is not None:
            return default
        raise KeyError(f"{name!r} not found in registry. Available names: {', '.join(sorted(self))}")

    def remove(self, name: str) -> None:
        """Forget `name`."""
        self.pop(name)

    def available_strategies(self) -> list[str]:
        """The registered names, in registration order."""
        return list(self)

    def __str__(self) -> str:
        return f"Registered Strategies: {', '.join(self)}"


StrategyRegistry = _Registry()

_DDP_STARTS = {"ddp": "popen", "ddp_spawn": "spawn", "ddp_fork": "fork", "ddp_notebook": "fork"}
for _base, _start in _DDP_STARTS.items():
    StrategyRegistry.register(
        _base, DDPStrategy, description=f"DDP strategy with `start_method` {_start!r}", start_method=_start
    )
for _base, _start in _DDP_STARTS.items():
    for _unused in (False, True):
        StrategyRegistry.register(
            f"{_base}_find_unused_parameters_{str(_unused).lower()}",
            DDPStrategy,
            description=f"DDP strategy with `find_unused_parameters` as {_unused} and `start_method` {_start!r}",
            find_unused_parameters=_unused,
            start_method=_start,
        )
StrategyRegistry.register("fsdp", FSDPStrategy, description="Fully Sharded Data Parallel (FSDP) training")
StrategyRegistry.register(
    "fsdp_cpu_offload",
    FSDPStrategy,
    description="Fully Sharded Data Parallel (FSDP) training with Full Sharding and CPU Offloading",
    cpu_offload=True,
)
StrategyRegistry.register("single_device", SingleDeviceStrategy, description="SingleDeviceStrategy")


def _refused(class_name: str) -> Callable[..., Strategy]:
    """A factory for a Lightning strategy fulgor does not provide: choosing its name raises `NotProvidedError` (an
    `ImportError`, as Lightning raises without the package) saying what it needs and what to use instead."""

    def build(**_: Any) -> Strategy:
        raise NotProvidedError(refusal_message(class_name), name=class_name)

    return build


FABRIC_STRATEGY_REGISTRY = _Registry()

for _base, _start in _DDP_STARTS.items():
    FABRIC_STRATEGY_REGISTRY.register(
        _base, DDPStrategy, description=f"DDP strategy with `start_method` {_start!r}", start_method=_start
    )
FABRIC_STRATEGY_REGISTRY.register(
    "ddp_find_unused_parameters_true",
    DDPStrategy,
    description="DDP strategy with `find_unused_parameters` as True",
    find_unused_parameters=True,
    start_method="popen",
)
FABRIC_STRATEGY_REGISTRY.register("dp", DataParallelStrategy, description="Data parallel in one process")
FABRIC_STRATEGY_REGISTRY.register("fsdp", FSDPStrategy, description="Fully Sharded Data Parallel (FSDP) training")
FABRIC_STRATEGY_REGISTRY.register(
    "fsdp_cpu_offload", FSDPStrategy, description="FSDP training with CPU offloading", cpu_offload=True
)
_DEEPSPEED_NAMES = ("deepspeed", *(f"deepspeed_stage_{stage}" for stage in (1, 2, 3)))
_DEEPSPEED_NAMES += ("deepspeed_stage_1_offload", "deepspeed_stage_2_offload", "deepspeed_stage_3_offload")
for _name in (*_DEEPSPEED_NAMES, "deepspeed_stage_3_offload_nvme"):
    FABRIC_STRATEGY_REGISTRY.register(_name, _refused("DeepSpeedStrategy"), description="DeepSpeed (not in fulgor)")
for _name, _class in (
    ("single_xla", "SingleDeviceXLAStrategy"),
    ("single_tpu", "SingleDeviceXLAStrategy"),
    ("xla", "XLAStrategy"),
    ("xla_fsdp", "XLAFSDPStrategy"),
):
    FABRIC_STRATEGY_REGISTRY.register(_name, _refused(_class), description="XLA/TPU (not in fulgor)")
