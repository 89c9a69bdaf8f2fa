"""`_runif_reasons`: why a test needing some hardware or software should be skipped here (Lightning's `RunIf` test
helper), for test suites written against Lightning's testing utilities."""

from __future__ import annotations

import os
import sys

import torch

from fulgor.available_packages import version_at_least

__all__ = ["_runif_reasons"]


def _runif_reasons(
    *,
    min_cuda_gpus: int = 0,
    min_torch: str | None = None,
    max_torch: str | None = None,
    min_python: str | None = None,
    bf16_cuda: bool = False,
    tpu: bool = False,
    mps: bool | None = None,
    skip_windows: bool = False,
    standalone: bool = False,
    deepspeed: bool = False,
    dynamo: bool = False,
    linux_only: bool = False,
) -> tuple[list[str], dict[str, bool]]:
    """The unmet requirements (as short reasons for `pytest.mark.skipif`) and the markers a conftest may act on.

    Args:
        min_cuda_gpus: at least this many CUDA devices.
        min_torch: torch at least this version.
        max_torch: torch below this version.
        min_python: Python at least this version.
        bf16_cuda: a CUDA device with bfloat16 support.
        tpu: TPUs (never available: fulgor does not support XLA).
        mps: True: an Apple MPS device; False: no MPS device.
        skip_windows: not on Windows.
        standalone: only when `PL_RUN_STANDALONE_TESTS=1` (tests run in their own process).
        deepspeed: DeepSpeed (never available: fulgor does not provide it).
        dynamo: torch.compile's dynamo works on this platform.
        linux_only: only on Linux.

    Returns:
        (reasons, kwargs): the reasons for skipping (empty: run the test) and the flags set for conftest hooks.
    """
    reasons = _version_reasons(min_torch, max_torch, min_python)
    reasons += _device_reasons(min_cuda_gpus, bf16_cuda, tpu, mps)
    kwargs = {
        name: True
        for name, asked in (("min_cuda_gpus", min_cuda_gpus), ("tpu", tpu), ("standalone", standalone))
        if asked
    }
    if skip_windows and sys.platform == "win32":
        reasons.append("unimplemented on Windows")
    if standalone and os.getenv("PL_RUN_STANDALONE_TESTS", "0") != "1":
        reasons.append("Standalone execution")
    if deepspeed:
        reasons.append("Deepspeed")
    if dynamo and not _dynamo_supported():
        reasons.append("torch.dynamo")
    if linux_only and sys.platform != "linux":
        reasons.append("only linux")
    return reasons, kwargs


def _version_reasons(min_torch: str | None, max_torch: str | None, min_python: str | None) -> list[str]:
    reasons = []
    if min_torch and not version_at_least("torch", min_torch):
        reasons.append(f"torch>={min_torch}, {torch.__version__} installed")
    if max_torch and version_at_least("torch", max_torch):
        reasons.append(f"torch<{max_torch}, {torch.__version__} installed")
    if min_python and sys.version_info[:3] < tuple(int(p) for p in min_python.split(".")):
        reasons.append(f"python>={min_python}")
    return reasons


def _device_reasons(min_cuda_gpus: int, bf16_cuda: bool, tpu: bool, mps: bool | None) -> list[str]:
    reasons = []
    if min_cuda_gpus and torch.cuda.device_count() < min_cuda_gpus:
        reasons.append(f"GPUs>={min_cuda_gpus}")
    if bf16_cuda and not (torch.cuda.is_available() and torch.cuda.is_bf16_supported()):
        reasons.append("CUDA device bf16")
    if tpu:
        reasons.append("TPU")  # fulgor does not support XLA
    if mps is not None and mps != torch.backends.mps.is_available():
        reasons.append("MPS" if mps else "not MPS")
    return reasons


def _dynamo_supported() -> bool:
    from torch._dynamo.eval_frame import is_dynamo_supported  # torch's compiler stack: loaded only when asked

    return bool(is_dynamo_supported())
