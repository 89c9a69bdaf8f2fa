"""The `strategy=` names: which Strategy each builds, Lightning's auto-selection, and the errors for the rest."""

from __future__ import annotations

import sys

import torch

from fulgor.errors import MisconfigurationException
from fulgor.strategies.single_device import SingleDeviceStrategy
from fulgor.strategies.strategy import Strategy
from fulgor.strategies.strategy_registry import StrategyRegistry, _Registry

# The names that start processes by forking (Lightning's `_DDP_FORK_ALIASES`): not usable once CUDA is initialised.
FORK_STRATEGY_NAMES = tuple(name for name in StrategyRegistry if name.startswith(("ddp_fork", "ddp_notebook")))
_REFUSED_NAMES = ("deepspeed", "xla", "single_xla")


def select_strategy(
    name: object,
    parallel_devices: list[torch.device],
    num_nodes: int,
    registry: _Registry = StrategyRegistry,
    owner: str = "Trainer",
) -> Strategy:
    """The Strategy for a `strategy=` name, the device of each process on this node and the `num_nodes` flag.

    "auto" is Lightning's rule: more than one device or more than one node → "ddp" ("ddp_fork" in an interactive
    session), else one device. `registry` holds the names (Fabric passes its own, `FABRIC_STRATEGY_REGISTRY`);
    `owner` names the class whose flag it was in messages.

    Raises:
        ValueError: an unknown name, `single_device` with several devices, or `fsdp` on MPS.
        MisconfigurationException: a strategy fulgor does not provide (deepspeed, xla).
    """
    if isinstance(name, str) and name not in registry:
        name = name.lower()  # the built-in names are case-insensitive
    if not isinstance(name, str) or (name not in ("auto", *_REFUSED_NAMES) and name not in registry):
        examples = [
            choice for choice in ("ddp", "ddp_spawn", "ddp_fork", "dp", "fsdp", "single_device") if choice in registry
        ]
        raise ValueError(
            f"You selected an invalid strategy name: `strategy={name!r}`. It must be either a string or an instance"
            f" of `fulgor.strategies.Strategy`. Example choices: auto, {', '.join(examples)}."
            " Find a complete list of options in docs/distributed.md."
        )
    count = len(parallel_devices)
    distributed = count > 1 or num_nodes > 1
    if name == "auto":
        if not distributed:
            return SingleDeviceStrategy(parallel_devices[0])
        interactive = hasattr(sys, "ps1") or bool(sys.flags.interactive)
        name = "ddp_fork" if interactive else "ddp"
    if name == "single_device":
        if distributed:
            raise ValueError(
                f"`{owner}(strategy='single_device')` runs on one device, but devices={count} and"
                f" num_nodes={num_nodes} ask for {count * num_nodes}. Use `strategy='ddp'` or `devices=1`."
            )
        return SingleDeviceStrategy(parallel_devices[0])
    if name in ("fsdp", "fsdp_cpu_offload"):
        _check_fsdp_device(name, parallel_devices[0].type)
    if name in registry:
        built: Strategy = registry.get(name)
        return built
    if name == "deepspeed":
        raise MisconfigurationException(
            f"`{owner}(strategy='deepspeed')` is not supported by fulgor. Use `strategy='fsdp'` for sharded"
            " training, or pytorch-lightning with DeepSpeed installed."
        )
    raise MisconfigurationException(
        f"`{owner}(strategy={name!r})`: TPUs/XLA are not supported by fulgor. Use 'ddp' or 'fsdp' on GPUs."
    )


def _check_fsdp_device(name: str, accelerator: str) -> None:
    # Lightning refuses FSDP without a GPU; torch's FSDP2 runs on CPU with gloo, so fulgor allows it there.
    if accelerator not in ("cpu", "cuda"):
        raise ValueError(
            f"The strategy `{name}` requires a GPU accelerator, but received `accelerator={accelerator!r}`. Please"
            " set `accelerator='cuda'`, `accelerator='gpu'`, or pass a `CUDAAccelerator()` instance to use FSDP."
        )
