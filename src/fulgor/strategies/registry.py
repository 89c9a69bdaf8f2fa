"""The `strategy=` names: which Strategy each builds, Lightning's auto-selection, and the errors for the rest."""

from __future__ import annotations

import sys

import torch

from fulgor.errors import MisconfigurationException
from fulgor.strategies import ddp, fsdp
from fulgor.strategies.single_device import SingleDeviceStrategy
from fulgor.strategies.strategy import Strategy

_DDP_BASES = ("ddp", "ddp_spawn", "ddp_fork", "ddp_notebook")
STRATEGY_NAMES = (
    "auto",
    "single_device",
    *(f"{base}{suffix}" for base in _DDP_BASES for suffix in ("", "_find_unused_parameters_false",
                                                                "_find_unused_parameters_true")),
    "fsdp",
    "fsdp_cpu_offload",
)  # fmt: skip


def select_strategy(name: object, parallel_devices: list[torch.device], num_nodes: int) -> Strategy:
    """The Strategy for a `strategy=` name, the device of each process on this node and the `num_nodes` flag.

    "auto" is Lightning's rule: more than one device or more than one node → "ddp" ("ddp_fork" in an interactive
    session), else one device.

    Raises:
        ValueError: an unknown name, `single_device` with several devices, or `fsdp` on MPS.
        MisconfigurationException: a strategy fulgor does not provide (deepspeed, xla).
    """
    if not isinstance(name, str) or name.lower() not in (*STRATEGY_NAMES, "deepspeed", "xla", "single_xla"):
        raise ValueError(
            f"You selected an invalid strategy name: `strategy={name!r}`. It must be either a string or an instance"
            " of `fulgor.strategies.Strategy`. Example choices: auto, ddp, ddp_spawn, ddp_fork, fsdp, single_device."
            " Find a complete list of options in docs/distributed.md."
        )
    name = name.lower()
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
                f"`Trainer(strategy='single_device')` runs on one device, but devices={count} and"
                f" num_nodes={num_nodes} ask for {count * num_nodes}. Use `strategy='ddp'` or `devices=1`."
            )
        return SingleDeviceStrategy(parallel_devices[0])
    if name.startswith("ddp"):
        return ddp.strategy_for_name(name)
    if name.startswith("fsdp"):
        return _fsdp(name, parallel_devices[0].type)
    if name == "deepspeed":
        raise MisconfigurationException(
            "`Trainer(strategy='deepspeed')` is not supported by fulgor. Use `strategy='fsdp'` for sharded"
            " training, or pytorch-lightning with DeepSpeed installed."
        )
    raise MisconfigurationException(
        f"`Trainer(strategy={name!r})`: TPUs/XLA are not supported by fulgor. Use 'ddp' or 'fsdp' on GPUs."
    )


def _fsdp(name: str, accelerator: str) -> Strategy:
    # Lightning refuses FSDP without a GPU; torch's FSDP2 runs on CPU with gloo, so fulgor allows it there.
    if accelerator not in ("cpu", "cuda"):
        raise ValueError(
            f"The strategy `{name}` requires a GPU accelerator, but received `accelerator={accelerator!r}`. Please"
            " set `accelerator='cuda'`, `accelerator='gpu'`, or pass a `CUDAAccelerator()` instance to use FSDP."
        )
    return fsdp.strategy_for_name(name)
