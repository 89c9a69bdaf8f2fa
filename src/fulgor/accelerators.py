"""The `accelerator` and `devices` Trainer flags: which device type to run on, which device ids, and the
"GPU available" lines the Trainer prints. Pure functions over names ("cpu", "cuda", "mps"); no class hierarchy.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Sequence
from typing import Any

import torch

from fulgor.errors import MisconfigurationException, PossibleUserWarning
from fulgor.rank import rank_zero_info, rank_zero_warn

# Names `accelerator=` accepts, in the order the "invalid name" error lists them (Lightning prints a set: random order).
ACCELERATOR_NAMES = ("auto", "cpu", "cuda", "mps", "gpu")
# Concrete device types, in the order the "not available" error lists the usable ones.
_DEVICE_TYPES = ("cpu", "cuda", "mps")
# Lightning's Accelerator classes, so `Trainer(accelerator=CUDAAccelerator())` written for Lightning keeps working.
_ACCELERATOR_CLASSES = {"CPUAccelerator": "cpu", "CUDAAccelerator": "cuda", "MPSAccelerator": "mps"}
_CLASS_NAMES = {name: cls for cls, name in _ACCELERATOR_CLASSES.items()}

_GPU_IDS_TYPE_ERROR = "Device IDs (GPU/TPU) must be an int, a string, a sequence of ints, but you passed"


def cuda_available() -> bool:
    """Whether at least one CUDA device is visible."""
    return torch.cuda.device_count() > 0


def mps_available() -> bool:
    """Whether Apple's MPS backend can be used (Lightning's rule: Apple silicon, and `DISABLE_MPS=1` not set)."""
    if os.getenv("DISABLE_MPS", "0") == "1":
        return False
    return torch.backends.mps.is_available() and platform.processor() in ("arm", "arm64")


def is_available(device_type: str) -> bool:
    """Whether a concrete device type ("cpu", "cuda" or "mps") can be used on this machine."""
    if device_type == "cuda":
        return cuda_available()
    if device_type == "mps":
        return mps_available()
    return device_type == "cpu"


def resolve_accelerator(accelerator: str | object = "auto") -> str:
    """Turn the `accelerator` Trainer flag into a concrete device type.

    Args:
        accelerator: "auto", "cpu", "cuda", "mps" or "gpu" (case-insensitive), or a Lightning-style accelerator
            instance (`CPUAccelerator()`, `CUDAAccelerator()`, `MPSAccelerator()`).

    Returns:
        "cpu", "cuda" or "mps". "auto" picks the first available of mps, cuda, cpu; "gpu" picks mps, else cuda.

    Raises:
        ValueError: unknown name.
        MisconfigurationException: "gpu" without any GPU, "cuda"/"mps" not available here, or "tpu".
    """
    if not isinstance(accelerator, str):
        return _name_of_instance(accelerator)
    name = accelerator.lower()
    if name == "tpu":
        raise MisconfigurationException(
            f"`Trainer(accelerator={accelerator!r})`: TPUs are not supported by fulgor."
            " Use `accelerator='auto'`, 'cpu', 'cuda', 'mps' or 'gpu', or pytorch-lightning with torch_xla for TPUs."
        )
    if name not in ACCELERATOR_NAMES:
        raise ValueError(
            f"You selected an invalid accelerator name: `accelerator={accelerator!r}`."
            f" Available names are: {', '.join(ACCELERATOR_NAMES)}."
        )
    if name == "auto":
        return "mps" if mps_available() else "cuda" if cuda_available() else "cpu"
    if name == "gpu":
        if mps_available():
            return "mps"
        if cuda_available():
            return "cuda"
        raise MisconfigurationException(
            "No supported gpu backend found! `Trainer(accelerator='gpu')` needs a CUDA or MPS device and PyTorch"
            " sees none. Use `accelerator='cpu'` (or 'auto'), or install a PyTorch build with CUDA support."
        )
    _check_available(name)
    return name


def _name_of_instance(accelerator: object) -> str:
    name = _ACCELERATOR_CLASSES.get(type(accelerator).__name__)
    if name is None:
        raise TypeError(
            f"`Trainer(accelerator={accelerator!r})` is not supported: pass one of the names"
            f" {', '.join(ACCELERATOR_NAMES)}, or a CPUAccelerator/CUDAAccelerator/MPSAccelerator instance."
        )
    _check_available(name)
    return name


def _check_available(device_type: str) -> None:
    if is_available(device_type):
        return
    available = [name for name in _DEVICE_TYPES if is_available(name)]
    raise MisconfigurationException(
        f"`{_CLASS_NAMES[device_type]}` can not run on your system since the accelerator is not available. The"
        f" following accelerator(s) is available and can be passed into `accelerator` argument of `Trainer`:"
        f" {available}."
    )


def parse_devices(accelerator: str, devices: Any = "auto") -> list[int]:
    """Turn the `devices` Trainer flag into device indices for a resolved accelerator.

    For "cpu" the result is `list(range(n))` for `n` processes, which is what Lightning's `trainer.device_ids`
    reports; `len(result)` is always the number of devices.

    Args:
        accelerator: a resolved device type: "cpu", "cuda" or "mps" (see `resolve_accelerator`).
        devices: "auto", an int (`-1` = all GPUs), a string ("2", "-1", "0,1", "0,"), or a list/tuple of GPU ids.

    Returns:
        The device indices.

    Raises:
        MisconfigurationException: `devices` is 0/"0"/[], asks for GPUs this machine does not have, or repeats one.
        TypeError: a value of the wrong type (for CPU: anything but an int > 0 or a digit string).
    """
    if _is_zero(devices):
        raise MisconfigurationException(
            f"`Trainer(devices={devices!r})` value is not a valid input using {accelerator} accelerator."
        )
    if accelerator == "cpu":
        return list(range(_parse_cpu_count(devices)))
    if devices == "auto":
        count = _auto_gpu_count(accelerator)
        if count == 0:
            raise MisconfigurationException("GPUs requested but none are available.")
        return list(range(count))
    return _parse_gpu_ids(devices, accelerator)


def _is_zero(devices: Any) -> bool:
    # Lightning compares with `in ([], 0, "0")`, so False and 0.0 count as zero too.
    try:
        return bool(devices in ([], 0, "0"))
    except (TypeError, ValueError, RuntimeError):  # objects with odd __eq__ (arrays, tensors) are simply not zero
        return False


def _parse_cpu_count(devices: Any) -> int:
    if isinstance(devices, str) and devices.strip().isdigit():
        devices = int(devices)
    elif devices == "auto":
        devices = 1
    if not isinstance(devices, int) or devices <= 0:
        raise TypeError("`devices` selected with `CPUAccelerator` should be an int > 0.")
    return devices


def _auto_gpu_count(accelerator: str) -> int:
    if accelerator == "mps":
        return 1
    count = torch.cuda.device_count()
    if count > 1 and _is_interactive():
        # Multi-GPU from a notebook needs fork-based DDP, which is fragile; Lightning uses one GPU there.
        rank_zero_info(
            f"Trainer will use only 1 of {count} GPUs because it is running inside an interactive / notebook"
            f" environment. You may try to set `Trainer(devices={count})` but please note that multi-GPU inside"
            " interactive / notebook environments is considered experimental and unstable. Your mileage may vary."
        )
        return 1
    return count


def _is_interactive() -> bool:
    return hasattr(sys, "ps1") or bool(sys.flags.interactive)


def _available_gpu_ids(accelerator: str) -> list[int]:
    if accelerator == "mps":
        return [0] if mps_available() else []
    return list(range(torch.cuda.device_count()))


def _parse_gpu_ids(value: Any, accelerator: str) -> list[int]:
    _check_gpu_ids_type(value)
    if isinstance(value, str) and value.strip() in ("0", "[]"):
        raise MisconfigurationException(
            f"`Trainer(devices={value!r})` value is not a valid input using {accelerator} accelerator."
        )
    ids = _gpu_ids_from(value, accelerator)
    if not ids:
        raise MisconfigurationException("GPUs requested but none are available.")
    available = _available_gpu_ids(accelerator)
    if _torchelastic_with_one_visible_gpu(ids, available):
        # torchrun usually shows each process only its own GPU, so the ids cannot be checked against this view.
        return ids
    if len(ids) != len(set(ids)):
        raise MisconfigurationException("Device ID's (GPU) must be unique.")
    for gpu in ids:
        if gpu not in available:
            raise MisconfigurationException(f"You requested gpu: {ids}\n But your machine only has: {available}")
    return ids


def _check_gpu_ids_type(value: Any) -> None:
    if isinstance(value, (list, tuple)):
        for item in value:
            if type(item) is not int:  # not isinstance: a bool is an int, but `devices=[True]` is a mistake
                raise TypeError(f"{_GPU_IDS_TYPE_ERROR} a sequence of {type(item).__name__}.")
    elif value is None:
        raise TypeError(f"{_GPU_IDS_TYPE_ERROR} None")  # sic: Lightning's message has no full stop here
    elif type(value) not in (int, str):
        raise TypeError(f"{_GPU_IDS_TYPE_ERROR} {value!r}.")


def _gpu_ids_from(value: int | str | Sequence[int], accelerator: str) -> list[int]:
    if isinstance(value, str):
        value = _parse_gpu_string(value)
    if not isinstance(value, int):
        return list(value)
    if value == -1:
        return _available_gpu_ids(accelerator)
    return list(range(value))


def _parse_gpu_string(text: str) -> int | list[int]:
    try:
        if text == "-1":
            return -1
        if "," in text:
            return [int(part.strip()) for part in text.split(",") if part]
        return int(text.strip())
    except ValueError:
        raise ValueError(
            f"`Trainer(devices={text!r})` could not be parsed. Pass a number of GPUs ('2'), a comma-separated list of"
            " GPU ids ('0,1'), or '-1' for all GPUs."
        ) from None


def _torchelastic_with_one_visible_gpu(ids: list[int], available: list[int]) -> bool:
    if len(ids) == 1 or len(available) != 1 or not torch.distributed.is_available():
        return False
    return bool(torch.distributed.is_torchelastic_launched())


def root_devices(accelerator: str, device_ids: Sequence[int]) -> list[torch.device]:
    """The `torch.device` of each process/device for parsed device ids (Lightning's `parallel_devices`).

    Args:
        accelerator: "cpu", "cuda" or "mps".
        device_ids: the result of `parse_devices`.

    Returns:
        `[cpu] * n` for CPU, `[cuda:i for i in device_ids]` for CUDA, `[mps:0 ...]` for MPS.
    """
    if accelerator == "cuda":
        return [torch.device("cuda", index) for index in device_ids]
    if accelerator == "mps":
        return [torch.device("mps", index) for index in range(len(device_ids))]
    return [torch.device("cpu")] * len(device_ids)


def device_availability_messages(accelerator: str) -> list[str]:
    """The two info lines the Trainer prints at construction, e.g. "GPU available: False, used: False".

    Args:
        accelerator: the resolved device type the Trainer will use.
    """
    if cuda_available():
        gpu_type = " (cuda)"
    elif mps_available():
        gpu_type = " (mps)"
    else:
        gpu_type = ""
    used = accelerator in ("cuda", "mps")
    return [
        f"GPU available: {bool(gpu_type)}{gpu_type}, used: {used}",
        "TPU available: False, using: 0 TPU cores",
    ]


def unused_gpu_warning(accelerator: str) -> str | None:
    """The warning text Lightning emits (as a `PossibleUserWarning`) when a GPU exists but is not used, else None."""
    if (cuda_available() and accelerator != "cuda") or (mps_available() and accelerator != "mps"):
        return "GPU available but not used. You can set it by doing `Trainer(accelerator='gpu')`."
    return None


def log_device_info(accelerator: str) -> None:
    """Print the availability lines and warn about an unused GPU, as the Lightning Trainer's constructor does."""
    for line in device_availability_messages(accelerator):
        rank_zero_info(line)
    warning = unused_gpu_warning(accelerator)
    if warning is not None:
        rank_zero_warn(warning, category=PossibleUserWarning)
