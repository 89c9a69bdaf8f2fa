"""What LightningCLI configurations instantiate: `instantiate_class` / `instantiate_module` (a class from its
`class_path` and `init_args`) and `ReduceLROnPlateau`, torch's scheduler with the `monitor` a config names."""

from __future__ import annotations

import importlib
from typing import Any, TypeVar

import torch
from torch.optim import Optimizer

__all__ = ["ReduceLROnPlateau", "instantiate_class", "instantiate_module"]

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
