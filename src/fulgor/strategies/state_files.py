"""Fabric's checkpoint form, shared by every strategy: a dict of modules, optimizers, stateful objects and plain values
becomes one dict of state dicts (optionally filtered) for the checkpoint IO, and a loaded checkpoint is restored into
such a dict in place (strict key check, the unrestored rest returned)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn.parallel import DataParallel, DistributedDataParallel
from torch.optim import Optimizer

from fulgor.checkpoint_io import CheckpointIO, TorchCheckpointIO
from fulgor.checkpointing import CheckpointError, verify_integrity

if TYPE_CHECKING:
    from fulgor.strategies.strategy import Strategy

__all__ = ["StateFilter", "check_filter", "is_stateful", "read_state_file", "restore_state", "saveable_state"]

StateFilter = dict[str, Callable[[str, Any], bool]]


def is_stateful(obj: Any) -> bool:
    """Whether `obj` has `state_dict()` and `load_state_dict()` (modules, optimizers, schedulers, your own objects)."""
    return callable(getattr(obj, "state_dict", None)) and callable(getattr(obj, "load_state_dict", None))


def check_filter(state: Mapping[str, Any], filter: Any) -> None:
    """Refuse a `filter` that is not a dict of callables keyed by names of `state` (Lightning's messages)."""
    if filter is None:
        return
    if not isinstance(filter, dict):
        raise TypeError(f"Filter should be a dictionary, given {filter!r}")
    if not set(filter).issubset(state):
        raise ValueError(f"The filter keys {filter.keys() - state} are not present in the state keys {set(state)}.")
    for key, value in filter.items():
        if not callable(value):
            raise TypeError(f"Expected `fabric.save(filter=...)` for key {key!r} to be a callable, given {value!r}")


def saveable_state(strategy: Strategy, state: Mapping[str, Any], filter: StateFilter | None = None) -> dict[str, Any]:
    """`state` with every module, optimizer and stateful object replaced by its state dict (the strategy's
    `get_module_state_dict`/`get_optimizer_state`: a DDP-wrapped module gives its plain keys, a sharding strategy
    gathers the full state); `filter[key](name, value)` keeps only the
    entries it accepts of a state dict (a key whose entries are all filtered out is left out)."""
    filter = filter or {}
    saved: dict[str, Any] = {}
    for key, obj in state.items():
        if isinstance(obj, nn.Module):
            value = strategy.get_module_state_dict(module=_plain_module(obj))
        elif isinstance(obj, Optimizer):
            value = strategy.get_optimizer_state(optimizer=obj)
        elif is_stateful(obj):
            value = obj.state_dict()
        else:
            value = obj
        keep = filter.get(key)
        if keep is None or not isinstance(value, dict):
            saved[key] = value
            continue
        kept = {name: item for name, item in value.items() if keep(name, item)}
        if kept:
            saved[key] = kept
    return saved


def restore_state(strategy: Strategy, checkpoint: dict[str, Any], state: Any, strict: bool = True) -> dict[str, Any]:
    """Load `checkpoint` into `state` in place and return what was not restored.

    Args:
        strategy: the strategy of the run (its `load_module_state_dict` loads each module).
        checkpoint: the loaded file.
        state: None or {} (nothing restored: the whole checkpoint is returned), a module or an optimizer (the file
            holds its raw state dict), or a dict whose modules, optimizers and stateful objects are restored in place
            and whose other values are replaced by the checkpoint's.
        strict: a key of `state` missing from the checkpoint is an error (and modules load strictly).

    Raises:
        KeyError: with `strict`, a requested key the checkpoint does not have.
    """
    if not state:
        return checkpoint
    if isinstance(state, nn.Module):
        strategy.load_module_state_dict(module=_plain_module(state), state_dict=checkpoint, strict=strict)
        return {}
    if isinstance(state, Optimizer):
        state.load_state_dict(checkpoint)
        return {}
    missing = [key for key in state if key not in checkpoint]
    if strict and missing:
        raise KeyError(
            f"The requested state contains a key '{missing[0]}' that does not exist in the loaded checkpoint."
            " To disable strict loading, set `strict=False`."
        )
    for key, obj in list(state.items()):
        if key not in checkpoint:
            continue
        value = checkpoint.pop(key)
        if isinstance(obj, nn.Module):
            strategy.load_module_state_dict(module=_plain_module(obj), state_dict=value, strict=strict)
        elif is_stateful(obj):
            obj.load_state_dict(value)
        else:
            state[key] = value
    return checkpoint


def _plain_module(module: nn.Module) -> nn.Module:
    """The module inside a DDP or DataParallel wrapper (whose state dict keys carry a `module.` prefix), else the
    module."""
    return module.module if isinstance(module, (DistributedDataParallel, DataParallel)) else module


def read_state_file(io: CheckpointIO, path: Any, weights_only: bool | None = None) -> Any:
    """The object stored at `path`, read through `io`.

    fulgor's own `TorchCheckpointIO` insists on the Trainer's checkpoint layout (a dict with a `state_dict`), while a
    Fabric file holds any dict (or a raw state dict), so for it the file is read here: its integrity record checked
    (`verify_integrity`), then `torch.load` with `weights_only` (safe by default, as Lightning Fabric). A user's
    `CheckpointIO` reads its own files.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: the file is damaged, or holds objects that `weights_only` loading refuses.
    """
    reader = getattr(io.load_checkpoint, "__func__", None)
    if reader is not TorchCheckpointIO.load_checkpoint:
        return io.load_checkpoint(path, weights_only=weights_only)
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Checkpoint file not found: {path}")
    verify_integrity(path)
    try:
        # On the CPU, as Lightning Fabric loads: `load_state_dict` copies onto the module's device.
        return torch.load(path, map_location="cpu", weights_only=weights_only is not False)
    except Exception as error:
        hint = " If you trust the file, load it with `weights_only=False`." if "weights_only" in str(error) else ""
        raise CheckpointError(f"Checkpoint file {path!r} cannot be read: {error}{hint}") from error
