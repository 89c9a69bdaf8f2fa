"""What this machine has: CUDA and MPS availability, the CUDA devices a process can use now, and device statistics
(psutil for CPU/MPS, nvidia-smi for GPUs), and the "GPU available" lines the Trainer prints. `fulgor.accelerators`
exposes the Lightning names."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from typing import Any

import torch

from fulgor.errors import PossibleUserWarning
from fulgor.rank import rank_zero_info, rank_zero_warn

__all__ = [
    "find_usable_cuda_devices",
    "get_cpu_stats",
    "get_device_stats",
    "get_nvidia_gpu_stats",
    "device_availability_messages",
    "is_cuda_available",
    "log_device_info",
    "mps_available",
    "num_cuda_devices",
    "unused_gpu_warning",
]


def num_cuda_devices() -> int:
    """The number of CUDA devices visible to this process."""
    return torch.cuda.device_count()


def is_cuda_available() -> bool:
    """Whether at least one CUDA device is visible."""
    return num_cuda_devices() > 0


def mps_available() -> bool:
    """Whether Apple's MPS backend can be used (Lightning's rule: Apple silicon, and `DISABLE_MPS=1` not set)."""
    if os.getenv("DISABLE_MPS", "0") == "1":
        return False
    return torch.backends.mps.is_available() and platform.processor() in ("arm", "arm64")


def _psutil(what: str) -> Any:
    try:
        import psutil
    except ImportError:
        raise ModuleNotFoundError(
            f"Fetching {what} device stats requires `psutil` to be installed. Install it with `pip install psutil`."
        ) from None
    return psutil


def get_cpu_stats() -> dict[str, float]:
    """`cpu_vm_percent`, `cpu_percent` and `cpu_swap_percent` of this machine (needs `psutil`)."""
    psutil = _psutil("CPU")
    return {
        "cpu_vm_percent": psutil.virtual_memory().percent,
        "cpu_percent": psutil.cpu_percent(),
        "cpu_swap_percent": psutil.swap_memory().percent,
    }


def get_device_stats() -> dict[str, float]:
    """The MPS machine's `M1_vm_percent`, `M1_percent` and `M1_swap_percent` (needs `psutil`)."""
    psutil = _psutil("MPS")
    return {
        "M1_vm_percent": psutil.virtual_memory().percent,
        "M1_percent": psutil.cpu_percent(),
        "M1_swap_percent": psutil.swap_memory().percent,
    }


_SMI_METRICS = (
    ("utilization.gpu", "%"),
    ("memory.used", "MB"),
    ("memory.free", "MB"),
    ("utilization.memory", "%"),
    ("fan.speed", "%"),
    ("temperature.gpu", "°C"),
    ("temperature.memory", "°C"),
)


def get_nvidia_gpu_stats(device: torch.device | str | int) -> dict[str, float]:
    """Utilisation, memory, fan speed and temperatures of a GPU from `nvidia-smi` (e.g. `"memory.used (MB)"`).

    Raises:
        FileNotFoundError: `nvidia-smi` is not on PATH.
    """
    smi = shutil.which("nvidia-smi")
    if smi is None:
        raise FileNotFoundError("nvidia-smi: command not found")
    index = torch._utils._get_device_index(device)
    # nvidia-smi numbers GPUs physically; CUDA_VISIBLE_DEVICES renumbers them for this process.
    visible = os.getenv("CUDA_VISIBLE_DEVICES", ",".join(str(i) for i in range(num_cuda_devices()))).split(",")
    query = ",".join(name for name, _ in _SMI_METRICS)
    command = [smi, f"--query-gpu={query}", "--format=csv,nounits,noheader", f"--id={visible[index].strip()}"]
    output = subprocess.run(command, encoding="utf-8", capture_output=True, check=True).stdout.strip()
    values = [_float_or_zero(text) for text in output.split(", ")]
    return {f"{name} ({unit})": value for (name, unit), value in zip(_SMI_METRICS, values)}


def _float_or_zero(text: str) -> float:
    try:
        return float(text)
    except ValueError:  # "[N/A]" for sensors a GPU does not have
        return 0.0


def find_usable_cuda_devices(num_devices: int = -1) -> list[int]:
    """Ids of CUDA devices that can take a tensor right now (not held by another process in exclusive mode).

    Args:
        num_devices: how many to find; -1: all usable ones.

    Raises:
        ValueError: no CUDA device, or fewer than `num_devices` on this machine.
        RuntimeError: fewer than `num_devices` are usable now.
    """
    if num_devices == 0:
        return []
    visible = list(range(num_cuda_devices()))
    if not visible:
        raise ValueError(
            f"You requested to find {num_devices} devices but there are no visible CUDA devices on this machine."
        )
    if num_devices > len(visible):
        raise ValueError(f"You requested to find {num_devices} devices but this machine only has {len(visible)} GPUs.")
    usable: list[int] = []
    busy: list[int] = []
    for index in visible:
        try:
            torch.tensor(0, device=torch.device("cuda", index))
        except RuntimeError:
            busy.append(index)
            continue
        usable.append(index)
        if len(usable) == num_devices:
            break
    if num_devices != -1 and len(usable) != num_devices:
        raise RuntimeError(
            f"You requested to find {num_devices} devices but only {len(usable)} are currently available. The devices"
            f" {busy} are occupied by other processes and can't be used at the moment."
        )
    return usable


# --------------------------------------------------------------------------------------------- device info lines


def device_availability_messages(device_type: str) -> list[str]:
    """The two info lines the Trainer prints at construction, e.g. "GPU available: False, used: False".

    Args:
        device_type: the type of the device the Trainer will use ("cpu", "cuda", "mps", ...).
    """
    if is_cuda_available():
        gpu_type = " (cuda)"
    elif mps_available():
        gpu_type = " (mps)"
    else:
        gpu_type = ""
    used = device_type in ("cuda", "mps")
    return [
        f"GPU available: {bool(gpu_type)}{gpu_type}, used: {used}",
        "TPU available: False, using: 0 TPU cores",
    ]


def unused_gpu_warning(device_type: str) -> str | None:
    """The warning text Lightning emits (as a `PossibleUserWarning`) when a GPU exists but is not used, else None."""
    if (is_cuda_available() and device_type != "cuda") or (mps_available() and device_type != "mps"):
        return "GPU available but not used. You can set it by doing `Trainer(accelerator='gpu')`."
    return None


def log_device_info(device_type: str) -> None:
    """Print the availability lines and warn about an unused GPU, as the Lightning Trainer's constructor does."""
    for line in device_availability_messages(device_type):
        rank_zero_info(line)
    warning = unused_gpu_warning(device_type)
    if warning is not None:
        rank_zero_warn(warning, category=PossibleUserWarning)
