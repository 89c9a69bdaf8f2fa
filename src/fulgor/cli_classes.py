"""What LightningCLI configurations instantiate: `instantiate_class` / `instantiate_module` (a class from its
`class_path` and `init_args`), `ReduceLROnPlateau` (torch's scheduler with the `monitor` a config names) and the
optimizer / scheduler type aliases used in model signatures (`OptimizerCallable`, `LRSchedulerCallable`)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, Union

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

__all__ = [
    "LRSchedulerCallable",
    "LRSchedulerType",
    "LRSchedulerTypeTuple",
    "LRSchedulerTypeUnion",
    "OptimizerCallable",
    "ReduceLROnPlateau",
    "instantiate_class",
    "instantiate_module",
]

M = TypeVar("M")


class ReduceLROnPlateau(torch.optim.lr_scheduler.ReduceLROnPlateau):
    """torch's ReduceLROnPlateau with a `monitor`: the logged metric the Trainer steps it with.

    Args:
        optimizer: the optimizer whose learning rates are reduced.
        monitor: the metric name, e.g. `"val_loss"`.
        *args: torch's ReduceLROnPlateau arguments (`mode`, `factor`, `patience`, ...).
        **kwargs: the same by name.
    """

    def __init__(self, optimizer: Optimizer, monitor: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(optimizer, *args, **kwargs)
        self.monitor = monitor


# The scheduler classes a LightningCLI scheduler group accepts, and the annotations for them in model signatures:
# `optimizer: OptimizerCallable = torch.optim.Adam` lets the config choose the class, the model pass the parameters.
LRSchedulerTypeTuple = (LRScheduler, ReduceLROnPlateau)
LRSchedulerTypeUnion = Union[LRScheduler, ReduceLROnPlateau]  # noqa: UP007 - a runtime value for jsonargparse
LRSchedulerType = Union[type[LRScheduler], type[ReduceLROnPlateau]]  # noqa: UP007
OptimizerCallable = Callable[[Iterable[Any]], Optimizer]
LRSchedulerCallable = Callable[[Optimizer], Union[LRScheduler, ReduceLROnPlateau]]  # noqa: UP007


def instantiate_class(args: Any | tuple[Any, ...], init: dict[str, Any]) -> Any:
    """`init["class_path"]`'s class called with `args` (positional) and `init["init_args"]` (by name).

    Example: `instantiate_class(model.parameters(), {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1}})`.

    Args:
        args: the positional argument, or a tuple of them.
        init: `{"class_path": "package.module.Class", "init_args": {...}}`.
    """
    kwargs = init.get("init_args", {})
    positional = args if isinstance(args, tuple) else (args,)
    module_name, class_name = init["class_path"].rsplit(".", 1)
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(*positional, **kwargs)


def instantiate_module(class_type: type[M], config: dict[str, Any]) -> M:
    """An instance of `class_type` (or of the subclass `config["_class_path"]` names) from `config`'s init arguments,
    parsed and type-checked by jsonargparse as LightningCLI does.

    Raises:
        ModuleNotFoundError: jsonargparse is not installed (`pip install 'fulgor[cli]'`).
    """
    try:
        from jsonargparse import ArgumentParser  # optional third-party package
    except ImportError as error:
        raise ModuleNotFoundError(
            "instantiate_module needs jsonargparse: `pip install 'fulgor[cli]'`.", name="jsonargparse"
        ) from error
    parser = ArgumentParser(exit_on_error=False)
    if "_class_path" in config:
        parser.add_subclass_arguments(class_type, "module", fail_untyped=False)
        rest = {key: value for key, value in config.items() if key != "_class_path"}
        config = {"class_path": config["_class_path"], "dict_kwargs": rest}
    else:
        parser.add_class_arguments(class_type, "module", fail_untyped=False)
    # jsonargparse 4.49 renamed `instantiate_classes` to `instantiate`; older versions only have the former.
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
    instantiated = instantiate(parser.parse_object({"module": config}))
    module: M = instantiated.module
    return module


# The instantiators a checkpoint's `_instantiator` hparam may name (anything else could run arbitrary code on load).
TRUSTED_INSTANTIATORS = frozenset(
    {
        "lightning.pytorch.cli.instantiate_module",
        "pytorch_lightning.cli.instantiate_module",
        "fulgor.cli_classes.instantiate_module",
        "fulgor.lightning_cli.instantiate_module",
    }
)


def pop_instantiator(cls: type, kwargs: dict[str, Any]) -> Any:
    """Remove `_instantiator` from checkpoint hparams `kwargs`; return the function to build `cls` with, or None.

    Raises:
        ValueError: the instantiator is not a trusted one, or `_class_path` does not name an already imported
            subclass of `cls` (loading must not import or run code the checkpoint chooses).
    """
    path = kwargs.pop("_instantiator", None)
    if path is None:
        return None
    if not isinstance(path, str) or path not in TRUSTED_INSTANTIATORS:
        raise ValueError(
            f"The instantiator {path!r} from the checkpoint is not in the allowlist of trusted instantiators and was"
            f" blocked to prevent arbitrary code execution. Trusted: {sorted(TRUSTED_INSTANTIATORS)}."
        )
    class_path = kwargs.get("_class_path")
    if class_path is not None and not _imported_subclass(class_path, cls):
        raise ValueError(
            f"The class {class_path!r} requested by the checkpoint does not resolve to an already imported subclass"
            f" of {cls.__name__} and was blocked to prevent arbitrary code execution. If you trust this checkpoint,"
            " import the module that defines the class before loading."
        )
    return instantiate_module


def _imported_subclass(class_path: Any, cls: type) -> bool:
    if not isinstance(class_path, str) or "." not in class_path:
        return False
    module_name, _, name = class_path.rpartition(".")
    found = getattr(sys.modules.get(module_name), name, None)
    return isinstance(found, type) and issubclass(found, cls)
