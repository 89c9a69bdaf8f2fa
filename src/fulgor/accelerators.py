"""Accelerators: Lightning's `Accelerator` classes (CPU, CUDA, MPS and the base for user-defined ones), and the
`accelerator` and `devices` Trainer flags turned into an accelerator and the device of each process."""

from __future__ import annotations

import functools
import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import torch

from fulgor.errors import ConfigurationValueError, MisconfigurationException
from fulgor.hardware import (
    find_usable_cuda_devices,
    get_cpu_stats,
    get_device_stats,
    get_nvidia_gpu_stats,
    is_cuda_available,
    mps_available,
    num_cuda_devices,
)
from fulgor.rank import log, rank_zero_info

__all__ = [
    "Accelerator",
    "CPUAccelerator",
    "CUDAAccelerator",
    "MPSAccelerator",
    "find_usable_cuda_devices",
    "get_cpu_stats",
    "get_device_stats",
    "get_nvidia_gpu_stats",
    "is_cuda_available",
    "num_cuda_devices",
]

# Names `accelerator=` accepts, in the order the "invalid name" error lists them (Lightning prints a set: random order).
ACCELERATOR_NAMES = ("auto", "cpu", "cuda", "mps", "gpu")
_GPU_IDS_TYPE_ERROR = "Device IDs (GPU/TPU) must be an int, a string, a sequence of ints, but you passed"
cuda_available = is_cuda_available  # fulgor's earlier name, still used by tests and tools


class Accelerator(ABC):
    """One type of hardware: which devices a `devices` flag names, and how a process prepares and releases them.

    Subclass it for your own hardware and pass an instance as `Trainer(accelerator=MyAccelerator())`: the Trainer then
    parses `devices` with your `parse_devices`/`get_parallel_devices` and runs on the first of those devices.
    """

    @abstractmethod
    def setup_device(self, device: torch.device) -> None:
        """Prepare `device` for this process (called before the model is moved there)."""

    @abstractmethod
    def teardown(self) -> None:
        """Release what the accelerator holds after a run."""

    @staticmethod
    @abstractmethod
    def parse_devices(devices: Any) -> Any:
        """The `devices` flag in the form `get_parallel_devices` takes (a count, or a list of ids)."""

    @staticmethod
    @abstractmethod
    def get_parallel_devices(devices: Any) -> Any:
        """The `torch.device` of each process for parsed `devices`."""

    @staticmethod
    @abstractmethod
    def auto_device_count() -> int:
        """How many devices `devices="auto"` means."""

    @staticmethod
    @abstractmethod
    def is_available() -> bool:
        """Whether this hardware is present and usable."""

    @staticmethod
    @abstractmethod
    def name() -> str:
        """The name under which the accelerator is registered (`"cpu"`, `"cuda"`, ...)."""

    def setup(self, trainer: Any) -> None:  # noqa: B027
        """Called by the Trainer at the start of a run, before the model is placed on the device."""

    def get_device_stats(self, device: torch.device | str | int) -> dict[str, Any]:
        """Statistics of `device` (memory, utilisation) for `DeviceStatsMonitor`.

        Raises:
            NotImplementedError: the accelerator does not report statistics.
        """
        raise NotImplementedError

    @classmethod  # noqa: B027
    def register_accelerators(cls, accelerator_registry: Any) -> None:
        """Add this class to an accelerator registry (one with Lightning's `register(name, cls, description=)`)."""

    def __str__(self) -> str:
        return self.name()


def _register(cls: type[Accelerator], accelerator_registry: Any) -> None:
    accelerator_registry.register(cls.name(), cls, description=cls.__name__)


class DeviceTypeError(ConfigurationValueError):
    """An accelerator was given a device of another kind: Lightning's Trainer raises `MisconfigurationException`
    there and Lightning Fabric `ValueError`; this is both."""


def _check_device_type(device: torch.device, expected: str, label: str) -> None:
    if device.type != expected:
        raise DeviceTypeError(f"Device should be {label}, got {device} instead.")


class CPUAccelerator(Accelerator):
    """The CPU; `devices=n` means n processes on it."""

    def setup_device(self, device: torch.device) -> None:
        """Check that `device` is a CPU.

        Raises:
            DeviceTypeError: it is not.
        """
        _check_device_type(device, "cpu", "CPU")

    def teardown(self) -> None:
        """Nothing to release."""

    @staticmethod
    def parse_devices(devices: int | str) -> int:
        """The number of processes: an int > 0 or a digit string.

        Raises:
            TypeError: anything else.
        """
        if isinstance(devices, str) and devices.strip().isdigit():
            devices = int(devices)
        if not isinstance(devices, int) or devices <= 0:
            raise TypeError("`devices` selected with `CPUAccelerator` should be an int > 0.")
        return devices

    @staticmethod
    def get_parallel_devices(devices: int | str) -> list[torch.device]:
        """`[cpu] * n` for n processes."""
        return [torch.device("cpu")] * CPUAccelerator.parse_devices(devices)

    @staticmethod
    def auto_device_count() -> int:
        """One process."""
        return 1

    @staticmethod
    def is_available() -> bool:
        """Always True."""
        return True

    @staticmethod
    def name() -> str:
        return "cpu"

    def get_device_stats(self, device: torch.device | str | int) -> dict[str, Any]:
        """Memory, CPU and swap usage in percent (needs `psutil`)."""
        return get_cpu_stats()

    @classmethod
    def register_accelerators(cls, accelerator_registry: Any) -> None:
        _register(cls, accelerator_registry)


class CUDAAccelerator(Accelerator):
    """NVIDIA GPUs; `devices` names a count, `-1` (all), or GPU ids."""

    def setup_device(self, device: torch.device) -> None:
        """Make `device` the current CUDA device (after Lightning's Tensor Cores note, once per process).

        Raises:
            DeviceTypeError: `device` is not a CUDA device.
        """
        _check_device_type(device, "cuda", "CUDA")
        _note_matmul_precision(device)
        torch.cuda.set_device(device)

    def setup(self, trainer: Any) -> None:
        """Log which GPUs this process sees (Lightning's `LOCAL_RANK: 0 - CUDA_VISIBLE_DEVICES: [0]` line)."""
        os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        visible = os.getenv("CUDA_VISIBLE_DEVICES", ",".join(str(i) for i in range(num_cuda_devices())))
        log.info(f"LOCAL_RANK: {trainer.local_rank} - CUDA_VISIBLE_DEVICES: [{visible}]")
        torch.cuda.empty_cache()

    def teardown(self) -> None:
        """Return cached GPU memory to the driver."""
        torch.cuda.empty_cache()

    @staticmethod
    def parse_devices(devices: int | str | list[int]) -> list[int] | None:
        """The GPU ids `devices` names (None for `0`, `"0"`, `"[]"`).

        Raises:
            TypeError: a value of the wrong type.
            MisconfigurationException: ids this machine does not have, repeated ids, or no GPU at all.
        """
        return _parse_gpu_ids(devices, "cuda")

    @staticmethod
    def get_parallel_devices(devices: list[int]) -> list[torch.device]:
        """`cuda:i` for each id."""
        return [torch.device("cuda", index) for index in devices]

    @staticmethod
    def auto_device_count() -> int:
        """Every visible GPU."""
        return num_cuda_devices()

    @staticmethod
    def is_available() -> bool:
        return num_cuda_devices() > 0

    @staticmethod
    def name() -> str:
        return "cuda"

    def get_device_stats(self, device: torch.device | str | int) -> dict[str, Any]:
        """`torch.cuda.memory_stats(device)`."""
        return torch.cuda.memory_stats(device)

    @classmethod
    def register_accelerators(cls, accelerator_registry: Any) -> None:
        _register(cls, accelerator_registry)


class MPSAccelerator(Accelerator):
    """The GPU of Apple silicon (one device)."""

    def setup_device(self, device: torch.device) -> None:
        """Check that `device` is the MPS device.

        Raises:
            DeviceTypeError: it is not.
        """
        _check_device_type(device, "mps", "MPS")

    def teardown(self) -> None:
        """Nothing to release."""

    @staticmethod
    def parse_devices(devices: int | str | list[int]) -> list[int] | None:
        """The device ids `devices` names (only `[0]` exists); None for `0`, `"0"`, `"[]"`."""
        return _parse_gpu_ids(devices, "mps")

    @staticmethod
    def get_parallel_devices(devices: int | str | list[int]) -> list[torch.device]:
        """`mps:i` for each parsed id's position."""
        parsed = MPSAccelerator.parse_devices(devices) or []
        return [torch.device("mps", index) for index in range(len(parsed))]

    @staticmethod
    def auto_device_count() -> int:
        return 1

    @staticmethod
    def is_available() -> bool:
        return mps_available()

    @staticmethod
    def name() -> str:
        return "mps"

    def get_device_stats(self, device: torch.device | str | int) -> dict[str, Any]:
        """Memory, CPU and swap usage of the machine in percent (needs `psutil`)."""
        return get_device_stats()

    @classmethod
    def register_accelerators(cls, accelerator_registry: Any) -> None:
        _register(cls, accelerator_registry)


_BUILT_IN: dict[str, type[Accelerator]] = {"cpu": CPUAccelerator, "cuda": CUDAAccelerator, "mps": MPSAccelerator}


@functools.lru_cache(1)  # once per process, as Lightning
def _note_matmul_precision(device: torch.device) -> None:
    if torch.cuda.get_device_capability(device)[0] < 8 or torch.get_float32_matmul_precision() != "highest":
        return
    rank_zero_info(
        f"You are using a CUDA device ({torch.cuda.get_device_name(device)!r}) that has Tensor Cores. To properly"
        " utilize them, you should set `torch.set_float32_matmul_precision('medium' | 'high')` which will trade-off"
        " precision for performance. For more details, read https://pytorch.org/docs/stable/generated/"
        "torch.set_float32_matmul_precision.html#torch.set_float32_matmul_precision"
    )


# --------------------------------------------------------------------------------------- the Trainer's two flags


def resolve_accelerator(accelerator: str | Accelerator = "auto") -> Accelerator:
    """Turn the `accelerator` Trainer flag into an Accelerator.

    Args:
        accelerator: "auto", "cpu", "cuda", "mps" or "gpu" (case-insensitive), or an `Accelerator` instance (yours
            included, used as it is).

    Returns:
        The accelerator. "auto" picks the first available of MPS, CUDA, CPU; "gpu" picks MPS, else CUDA.

    Raises:
        ValueError: an unknown name or an object that is not an Accelerator.
        MisconfigurationException: "gpu" without any GPU, an accelerator not available here, or "tpu".
    """
    if isinstance(accelerator, Accelerator):
        _check_available(type(accelerator))
        return accelerator
    name = accelerator.lower() if isinstance(accelerator, str) else None
    if name == "tpu":
        raise MisconfigurationException(
            f"`Trainer(accelerator={accelerator!r})`: TPUs are not supported by fulgor."
            " Use `accelerator='auto'`, 'cpu', 'cuda', 'mps' or 'gpu', or pytorch-lightning with torch_xla for TPUs."
        )
    if name is None or name not in ACCELERATOR_NAMES:
        raise ValueError(
            f"You selected an invalid accelerator name: `accelerator={accelerator!r}`."
            f" Available names are: {', '.join(ACCELERATOR_NAMES)}."
        )
    if name == "auto":
        name = "mps" if mps_available() else "cuda" if is_cuda_available() else "cpu"
    elif name == "gpu":
        if not (mps_available() or is_cuda_available()):
            raise MisconfigurationException(
                "No supported gpu backend found! `Trainer(accelerator='gpu')` needs a CUDA or MPS device and PyTorch"
                " sees none. Use `accelerator='cpu'` (or 'auto'), or install a PyTorch build with CUDA support."
            )
        name = "mps" if mps_available() else "cuda"
    cls = _BUILT_IN[name]
    _check_available(cls)
    return cls()


def _check_available(cls: type[Accelerator]) -> None:
    if cls.is_available():
        return
    available = [name for name, built_in in _BUILT_IN.items() if built_in.is_available()]
    raise MisconfigurationException(
        f"`{cls.__qualname__}` can not run on your system since the accelerator is not available. The following"
        f" accelerator(s) is available and can be passed into `accelerator` argument of `Trainer`: {available}."
    )


def parallel_devices(accelerator: Accelerator, devices: Any = "auto", label: str | None = None) -> list[torch.device]:
    """Turn the `devices` Trainer flag into the device of each process on this node (Lightning's `parallel_devices`).

    Args:
        accelerator: the resolved accelerator (`resolve_accelerator`).
        devices: "auto", an int (`-1` = all GPUs), a string ("2", "-1", "0,1", "0,"), or a list/tuple of GPU ids.
        label: how the errors name the accelerator (default: its `name()`).

    Raises:
        MisconfigurationException: `devices` is 0/"0"/[], asks for GPUs this machine does not have, or repeats one.
        TypeError: a value of the wrong type (for CPU: anything but an int > 0 or a digit string).
    """
    label = label or accelerator.name()
    invalid = f"`Trainer(devices={devices!r})` value is not a valid input using {label} accelerator."
    if _is_zero(devices):
        raise MisconfigurationException(invalid)
    if isinstance(devices, str) and devices == "auto":
        devices = _auto_count(accelerator)
        if devices == 0:
            raise MisconfigurationException("GPUs requested but none are available.")
    parsed = type(accelerator).parse_devices(devices)
    if parsed is None:  # " 0 ", "[]": Lightning's parser says "no devices"
        raise MisconfigurationException(invalid)
    return list(type(accelerator).get_parallel_devices(parsed))


def device_ids(devices: Sequence[torch.device]) -> list[int]:
    """`trainer.device_ids` for parallel devices: each device's index, or its position when it has none (CPU).

    (Lightning writes `index or position`, so its `devices=[1, 0]` reports `[1, 1]`; fulgor reports `[1, 0]`.)
    """
    return [position if device.index is None else device.index for position, device in enumerate(devices)]


def _is_zero(devices: Any) -> bool:
    # Lightning compares with `in ([], 0, "0")`, so False and 0.0 count as zero too.
    try:
        return bool(devices in ([], 0, "0"))
    except (TypeError, ValueError, RuntimeError):  # objects with odd __eq__ (arrays, tensors) are simply not zero
        return False


def _auto_count(accelerator: Accelerator) -> int:
    count = accelerator.auto_device_count()
    if count > 1 and isinstance(accelerator, CUDAAccelerator) and _is_interactive():
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
    return list(range(num_cuda_devices()))


def _parse_gpu_ids(value: Any, accelerator: str) -> list[int] | None:
    _check_gpu_ids_type(value)
    if (isinstance(value, int) and value == 0) or str(value).strip() in ("0", "[]"):
        return None
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
