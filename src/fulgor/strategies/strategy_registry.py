"""`StrategyRegistry`: the `strategy=` names and what each builds (a Strategy class and its arguments). The DDP and
FSDP names are registered here; users register their own (`StrategyRegistry.register("my_ddp", DDPStrategy,
find_unused_parameters=True)`) and then pass `Trainer(strategy="my_ddp")`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fulgor.strategies.ddp import DDPStrategy
from fulgor.strategies.fsdp import FSDPStrategy
from fulgor.strategies.single_device import SingleDeviceStrategy
from fulgor.strategies.strategy import Strategy

__all__ = ["StrategyRegistry"]


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
