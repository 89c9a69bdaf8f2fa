"""The accelerator registry (Lightning's `AcceleratorRegistry` / `ACCELERATOR_REGISTRY`): names -> accelerator classes
with their init arguments, filled with fulgor's CPU, CUDA and MPS accelerators (and Lightning's "tpu", refused);
`call_register_accelerators` lets the accelerator classes of a module register themselves."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from fulgor import unavailable
from fulgor.accelerators import Accelerator
from fulgor.errors import MisconfigurationException

__all__ = ["ACCELERATOR_REGISTRY", "AcceleratorRegistry", "call_register_accelerators"]


class AcceleratorRegistry(dict[str, dict[str, Any]]):
    """name -> `{"accelerator": cls, "accelerator_name": name, "description": ..., "init_params": {...}}`.

    `register` works as a call or as a class decorator; `get(name)` builds the accelerator with its init arguments.
    """

    def register(
        self,
        name: str,
        accelerator: Callable[..., Any] | None = None,
        description: str = "",
        override: bool = False,
        **init_params: Any,
    ) -> Callable[..., Any]:
        """Register `accelerator` under `name` (without `accelerator`: a decorator that registers the class).

        Raises:
            TypeError: `name` is not a string.
            MisconfigurationException: `name` is taken and `override` is False.
        """
        if not isinstance(name, str):
            raise TypeError(f"`name` must be a str, found {name}")
        if name in self and not override:
            raise MisconfigurationException(f"'{name}' is already present in the registry. HINT: Use `override=True`.")

        def add(cls: Callable[..., Any]) -> Callable[..., Any]:
            self[name] = {
                "accelerator": cls,
                "accelerator_name": name,
                "description": description,
                "init_params": init_params,
            }
            return cls

        return add if accelerator is None else add(accelerator)

    def get(self, name: str, default: Any = None) -> Any:
        """A new accelerator registered as `name`, or `default`.

        Raises:
            KeyError: `name` is not registered and no default is given (the message lists the names).
        """
        if name in self:
            entry = self[name]
            return entry["accelerator"](**entry["init_params"])
        if default is not None:
            return default
        raise KeyError(f"'{name}' not found in registry. Available names: {self.available_accelerators()}")

    def remove(self, name: str) -> None:
        """Forget the accelerator registered as `name`."""
        self.pop(name)

    def available_accelerators(self) -> set[str]:
        """The registered names."""
        return set(self)

    def __str__(self) -> str:
        return f"Registered Accelerators: {', '.join(self)}"


def call_register_accelerators(registry: AcceleratorRegistry, base_module: str) -> None:
    """Let every Accelerator subclass of the module `base_module` register itself (`cls.register_accelerators`)."""
    module = importlib.import_module(base_module)
    for _, cls in inspect.getmembers(module, inspect.isclass):
        if issubclass(cls, Accelerator) and cls is not Accelerator and "register_accelerators" in vars(cls):
            cls.register_accelerators(registry)


ACCELERATOR_REGISTRY = AcceleratorRegistry()
call_register_accelerators(ACCELERATOR_REGISTRY, "fulgor.accelerators")
# Lightning lists "tpu" too: its entry is the refusing stand-in (not available here; building it says what to use).
ACCELERATOR_REGISTRY.register("tpu", unavailable.__dict__["XLAAccelerator"], description="XLAAccelerator")
