"""FSDP checkpoint mechanics: Lightning's sharded layout (a folder written by `torch.distributed.checkpoint`, one shard
file per rank, plus `meta.pt` holding the rest of the state) written atomically and read back into sharded or plain
modules and optimizers; full (gathered) state dicts, with optimizer states keyed by parameter name or index."""

from __future__ import annotations

import itertools
import os
import shutil
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

__all__ = [
    "METADATA_FILENAME",
    "is_sharded_checkpoint",
    "is_sharded_module",
    "load_full_module",
    "load_full_optimizer",
    "load_sharded",
    "load_state",
    "module_state",
    "optimizer_state",
    "read_sharded",
    "read_sharded_metadata",
    "sharded_state",
    "the_module",
    "to_param_ids",
    "write_sharded",
]

# Lightning's name for the file, inside the folder, with everything that is neither a module nor an optimizer.
METADATA_FILENAME = "meta.pt"


def is_sharded_checkpoint(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is a sharded checkpoint folder (a folder with `meta.pt`: Lightning's test)."""
    return Path(path).is_dir() and (Path(path) / METADATA_FILENAME).is_file()


def _options(full: bool, strict: bool = True) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    # A full state dict is gathered to the CPU of rank 0 (the other ranks get an empty dict).
    return StateDictOptions(full_state_dict=full, cpu_offload=full, strict=strict)


def module_state(module: nn.Module, full: bool) -> dict[str, Any]:
    """The module's state dict: this rank's shards (`DTensor`s) or, with `full`, the gathered tensors on rank 0.

    A collective with `full` or when `module` is sharded: every rank must call it.
    """
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(module, options=_options(full))


def optimizer_state(module: nn.Module, optimizer: Optimizer, full: bool) -> dict[str, Any]:
    """The optimizer's state keyed by parameter name (FQN): this rank's shards, or gathered on rank 0 with `full`."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(module, optimizer, options=_options(full))


def to_param_ids(state: dict[str, Any]) -> dict[str, Any]:
    """A name-keyed optimizer state in torch's standard layout (`optimizer.state_dict()`: keys are parameter indices
    in param-group order), what a Trainer checkpoint holds so that it loads into a plain optimizer."""
    groups = state.get("param_groups", [])
    names = [name for group in groups for name in group["params"]]
    index = {name: i for i, name in enumerate(names)}
    renamed = [{**group, "params": [index[name] for name in group["params"]]} for group in groups]
    return {"state": {index[name]: value for name, value in state.get("state", {}).items()}, "param_groups": renamed}


def _to_param_names(module: nn.Module, optimizer: Optimizer, state: dict[str, Any]) -> dict[str, Any]:
    """The inverse of `to_param_ids`, for `optimizer` (whose parameters belong to `module`)."""
    if not any(isinstance(key, int) for key in state.get("state", {})) and not _indexed_groups(state):
        return state
    names = {id(param): name for name, param in module.named_parameters()}
    order = [names[id(param)] for group in optimizer.param_groups for param in group["params"]]
    groups = [{**saved, "params": [order[i] for i in saved["params"]]} for saved in state["param_groups"]]
    return {"state": {order[key]: value for key, value in state["state"].items()}, "param_groups": groups}


def _indexed_groups(state: dict[str, Any]) -> bool:
    groups = state.get("param_groups") or [{}]
    return any(isinstance(p, int) for p in groups[0].get("params", []))


def load_full_module(module: nn.Module, state: Mapping[str, Any], strict: bool = True) -> None:
    """Load a full state dict (every rank holds it) into `module`, sharded or not (each rank keeps its shard)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    options = StateDictOptions(full_state_dict=True, strict=strict)
    set_model_state_dict(module, dict(state), options=options)


def load_full_optimizer(module: nn.Module, optimizer: Optimizer, state: dict[str, Any]) -> None:
    """Load a full optimizer state (keyed by parameter name or, as `optimizer.state_dict()`, by index; every rank
    holds it) into `optimizer`, whose parameters are `module`'s shards."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    if not _holds_tensors(state.get("state")):
        # torch cannot distribute a state without tensors (plain SGD): only the hyperparameters need restoring.
        own = optimizer.state_dict()["param_groups"]
        groups = [{**saved, "params": mine["params"]} for saved, mine in zip(state["param_groups"], own)]
        optimizer.load_state_dict({"state": {}, "param_groups": groups})
        return
    named = _to_param_names(module, optimizer, state)
    set_optimizer_state_dict(module, optimizer, named, options=StateDictOptions(full_state_dict=True))


def _holds_tensors(tree: Any) -> bool:
    if isinstance(tree, dict):
        return any(_holds_tensors(v) for v in tree.values())
    return isinstance(tree, torch.Tensor) and tree.dim() > 0


# ---------------------------------------------------------------------------------------------------------------------
# the sharded folder


def write_sharded(
    path: Path, tensors: dict[str, Any], metadata: dict[str, Any], is_global_zero: bool, barrier: Callable[[], None]
) -> None:
    """Write a sharded checkpoint folder at `path`; every rank calls it.

    The shards (`tensors`: state dicts of `DTensor`s, through `torch.distributed.checkpoint`) and rank 0's
    `metadata` (`meta.pt`) go to `.<name>.partial` beside `path` first; rank 0 then swaps it in for what `path`
    held (a file or an older folder), so a crash mid-write never leaves a half-written checkpoint under the final name.
    """
    from torch.distributed.checkpoint.state_dict_saver import save

    staging = path.with_name(f".{path.name}.partial")  # hidden, and no `*.ckpt` glob matches it
    if is_global_zero:
        _remove(staging)
        staging.mkdir(parents=True)
    barrier()
    save(tensors, checkpoint_id=staging)  # returns on every rank once the folder's `.metadata` is written
    if is_global_zero:
        torch.save(metadata, staging / METADATA_FILENAME)
        _replace(staging, path)
    barrier()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _replace(staging: Path, path: Path) -> None:
    """Move the finished `staging` folder to `path`; an older checkpoint there is removed only after the move."""
    old = None
    if path.exists() or path.is_symlink():
        old = path.with_name(f".{path.name}.old")
        _remove(old)
        os.replace(path, old)
    os.replace(staging, path)
    if old is not None:
        _remove(old)


def read_sharded_metadata(path: Path, weights_only: bool | None = None) -> dict[str, Any]:
    """The folder's `meta.pt` (what is neither a module nor an optimizer), read on the CPU."""
    loaded: dict[str, Any] = torch.load(
        path / METADATA_FILENAME, map_location="cpu", weights_only=weights_only is not False
    )
    return loaded


def load_sharded(
    path: Path, module: nn.Module, module_key: str, optimizers: Mapping[str, Optimizer], strict: bool
) -> None:
    """Load the folder's `module_key` entry into `module` and each `optimizers[key]` entry into that optimizer.

    Every rank reads only what its shards need (`torch.distributed.checkpoint` reshards when the world size
    differs); a module that is not sharded reads whole tensors. A collective when `module` is sharded.
    """
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict
    from torch.distributed.checkpoint.state_dict_loader import load

    state: dict[str, Any] = {module_key: module_state(module, full=False)}
    for key, optimizer in optimizers.items():
        state[key] = optimizer_state(module, optimizer, full=False)
    load(state, checkpoint_id=path)
    set_model_state_dict(module, state[module_key], options=_options(full=False, strict=strict))
    for key, optimizer in optimizers.items():
        set_optimizer_state_dict(module, optimizer, state[key], options=_options(full=False))


def read_sharded(path: Path) -> dict[str, Any]:
    """Everything the folder's shards hold, as whole tensors in nested dicts (e.g. `{"model": ..., "optimizer_0":
    ...}`), read by this process alone (no collective): how a folder becomes one file, and how fulgor's Trainer reads
    a sharded checkpoint before its model is sharded."""
    from torch.distributed.checkpoint.filesystem import FileSystemReader
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata
    from torch.distributed.checkpoint.state_dict_loader import load

    reader = FileSystemReader(str(path))
    layout = reader.read_metadata()
    flat: dict[str, Any] = {}
    for key, item in layout.state_dict_metadata.items():
        # Tensors are read into buffers of their saved size; other values are unpickled in place of the placeholder.
        if isinstance(item, TensorStorageMetadata):
            flat[key] = torch.empty(item.size, dtype=item.properties.dtype)
        else:
            flat[key] = b""
    with warnings.catch_warnings():  # torch warns that it loads in one process: that is the point here
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        load(flat, storage_reader=reader, no_dist=True)
    paths = layout.planner_data or {}
    return _unflatten(flat, paths)


def _unflatten(flat: dict[str, Any], paths: Mapping[str, Any]) -> dict[str, Any]:
    """Nest `flat` along the saved key paths (an integer step is a list position, as torch flattens lists)."""
    root: dict[str, Any] = {}
    for key, value in flat.items():
        steps = list(paths.get(key, (key,)))
        node: Any = root
        for step, following in itertools.pairwise(steps):
            empty: Any = [] if isinstance(following, int) else {}
            if isinstance(node, list):
                while len(node) <= step:
                    node.append(None)
                node[step] = empty if node[step] is None else node[step]
                node = node[step]
            else:
                node = node.setdefault(step, empty)
        last = steps[-1]
        if isinstance(node, list):
            while len(node) <= last:
                node.append(None)
        node[last] = value
    return root


# ---------------------------------------------------------------------------------------------------------------------
# Fabric's form: a dict of named modules, optimizers and other values


def the_module(state: Mapping[str, Any], verb: str) -> tuple[str, nn.Module]:
    """The one sharded module of `state` and its key (Lightning's FSDP saves and loads one model per checkpoint).

    Raises:
        ValueError: no sharded module, or several.
    """
    found = [(key, obj) for key, obj in state.items() if isinstance(obj, nn.Module) and is_sharded_module(obj)]
    if not found:
        raise ValueError(
            "Could not find a FSDP model in the provided checkpoint state. Please provide the model as part of the"
            f" state like so: `{verb}_checkpoint(..., state={{'model': model, ...}})`. Make sure you set up the model"
            " (and optimizers if any) through the strategy before saving the checkpoint."
        )
    if len(found) > 1:
        raise ValueError(
            f"Found multiple FSDP models in the given state. {verb.capitalize()}ing checkpoints with FSDP is currently"
            f" limited to a single model per checkpoint. To {verb} multiple models, call the {verb} method for each"
            " model separately with a different path."
        )
    return found[0]


def is_sharded_module(module: nn.Module) -> bool:
    """Whether FSDP sharded `module`'s parameters (they are `DTensor`s; the FSDP unit may be a wrapper around it)."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(param, DTensor) for param in module.parameters())


def sharded_state(state: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`state` split into the shards of its module and optimizers (for the folder's shard files) and everything
    else (for `meta.pt`: objects with `state_dict()` as their state dicts, plain values as they are)."""
    _, module = the_module(state, "save")
    tensors: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    for key, obj in state.items():
        if isinstance(obj, nn.Module):
            tensors[key] = module_state(obj, full=False)
        elif isinstance(obj, Optimizer):
            tensors[key] = optimizer_state(module, obj, full=False)
        else:
            metadata[key] = obj.state_dict() if _is_stateful(obj) else obj
    return tensors, metadata


def _is_stateful(obj: Any) -> bool:
    return callable(getattr(obj, "state_dict", None)) and callable(getattr(obj, "load_state_dict", None))


def load_state(path: Path, state: Any, strict: bool, weights_only: bool | None) -> dict[str, Any]:
    """Fabric's `load_checkpoint` for FSDP: restore `state` (a module, or a dict with one sharded module, its
    optimizers and other values) in place from a sharded folder or a full file; return what was not restored.

    Raises:
        ValueError: no `state`, no sharded module in it, `path` is neither a sharded folder nor a file, or a module
            alone is to be loaded from anything but a full file.
        NotImplementedError: `state` is an optimizer alone (its parameters' names are unknown without the module).
        KeyError: with `strict`, a key of `state` that the checkpoint lacks.
    """
    if not state:
        raise ValueError(
            f"Got FSDPStrategy.load_checkpoint(..., state={state!r}) but a state with at least a model instance to"
            " reload is required. Pass it in like so: FSDPStrategy.load_checkpoint(..., state={'model': model, ...})"
        )
    if isinstance(state, Optimizer):
        raise NotImplementedError(
            "Loading a single optimizer object from a checkpoint is not supported yet with the FSDP strategy."
        )
    if isinstance(state, nn.Module):
        if not path.is_file():
            raise ValueError(
                "Failed to load checkpoint directly into the model. The given path must be a single file containing"
                f" the full state dict: {path}"
            )
        load_full_module(state, torch.load(path, map_location="cpu", weights_only=weights_only is not False), strict)
        return {}
    module_key, module = the_module(state, "load")
    optimizers = {key: obj for key, obj in state.items() if isinstance(obj, Optimizer)}
    others = [key for key in state if key != module_key and key not in optimizers]
    if is_sharded_checkpoint(path):
        load_sharded(path, module, module_key, optimizers, strict)
        rest = read_sharded_metadata(path, weights_only)
    elif path.is_file():
        rest = torch.load(path, map_location="cpu", weights_only=weights_only is not False)
        load_full_module(module, rest.pop(module_key), strict)
        for key, optimizer in optimizers.items():
            load_full_optimizer(module, optimizer, rest.pop(key))
    else:
        raise ValueError(
            f"The path {str(path)!r} does not point to a valid checkpoint. Make sure the path points to either a"
            " directory with FSDP checkpoint shards, or a single file with a full checkpoint."
        )
    _move_values(rest, state, others, strict)
    return rest


def _move_values(source: dict[str, Any], state: dict[str, Any], keys: list[str], strict: bool) -> None:
    """Restore the requested non-module values: stateful objects load theirs, plain values are replaced."""
    missing = [key for key in keys if key not in source]
    if strict and missing:
        raise KeyError(
            f"The requested state contains a key '{missing[0]}' that does not exist in the loaded checkpoint."
            " To disable strict loading, set `strict=False`."
        )
    for key in keys:
        if key not in source:
            continue
        value = source.pop(key)
        if _is_stateful(state[key]):
            state[key].load_state_dict(value)
        else:
            state[key] = value
