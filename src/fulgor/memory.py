"""Memory helpers Lightning exports (`utilities.memory`): which errors are out-of-memory errors, freeing cached CUDA
memory, and detaching (optionally offloading) every tensor of a nested collection."""

from __future__ import annotations

import gc
from collections.abc import Mapping
from typing import Any

import torch

__all__ = [
    "garbage_collection_cuda",
    "is_cuda_out_of_memory",
    "is_cudnn_snafu",
    "is_oom_error",
    "is_out_of_cpu_memory",
    "recursive_detach",
]


def _runtime_error_says(exception: BaseException, *texts: str) -> bool:
    return (
        isinstance(exception, RuntimeError) and len(exception.args) == 1 and any(t in exception.args[0] for t in texts)
    )


def is_cuda_out_of_memory(exception: BaseException) -> bool:
    """Whether `exception` is CUDA running out of memory."""
    return _runtime_error_says(exception, "CUDA out of memory.", "CUDA error: out of memory")


def is_cudnn_snafu(exception: BaseException) -> bool:
    """Whether `exception` is the cuDNN error that an out-of-memory shows up as (cudnn#3192)."""
    return _runtime_error_says(exception, "cuDNN error: CUDNN_STATUS_NOT_SUPPORTED.")


def is_out_of_cpu_memory(exception: BaseException) -> bool:
    """Whether `exception` is the CPU allocator running out of memory."""
    return _runtime_error_says(exception, "DefaultCPUAllocator: can't allocate memory")


def is_oom_error(exception: BaseException) -> bool:
    """Whether `exception` is any of the out-of-memory errors above (CUDA, cuDNN's variant, CPU)."""
    return is_cuda_out_of_memory(exception) or is_cudnn_snafu(exception) or is_out_of_cpu_memory(exception)


def garbage_collection_cuda() -> None:
    """Collect Python garbage, then give CUDA's cached blocks back (a no-op without CUDA). An out-of-memory error
    while emptying the cache is ignored: the memory is freed as far as it can be."""
    gc.collect()
    if not torch.cuda.is_available():
        return
    try:
        torch.cuda.empty_cache()
    except RuntimeError as error:
        if not is_oom_error(error):
            raise


def recursive_detach(in_dict: Any, to_cpu: bool = False) -> Any:
    """`in_dict` with every tensor (in nested dicts, lists and tuples too) detached, and moved to the CPU if `to_cpu`;
    other values are kept as they are.

    Args:
        in_dict: a tensor or a collection holding tensors.
        to_cpu: also move the tensors to the CPU.

    Returns:
        The same structure with detached tensors.
    """
    if isinstance(in_dict, torch.Tensor):
        detached = in_dict.detach()
        return detached.cpu() if to_cpu else detached
    if isinstance(in_dict, Mapping):
        return type(in_dict)({k: recursive_detach(v, to_cpu) for k, v in in_dict.items()})  # type: ignore[call-arg]
    if isinstance(in_dict, tuple) and hasattr(in_dict, "_fields"):  # a namedtuple
        return type(in_dict)(*(recursive_detach(v, to_cpu) for v in in_dict))
    if isinstance(in_dict, (list, tuple)):
        return type(in_dict)(recursive_detach(v, to_cpu) for v in in_dict)
    return in_dict
