"""Throughput measurement as Lightning Fabric has it (`lightning_fabric.utilities.throughput`): `Throughput` (rolling
rates of batches, samples, items and FLOPs), Fabric's `ThroughputMonitor`, `measure_flops` and
`get_available_flops` (the theoretical peak of known GPUs, from their datasheets)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import torch

from fulgor.rank import rank_zero_only, rank_zero_warn

__all__ = ["Throughput", "ThroughputMonitor", "compute_dtype", "get_available_flops", "measure_flops"]

Metrics = dict[str, int | float]


class _IncreasingWindow:
    """The last `size` values of a counter that must strictly increase (a mistake in a user's counter or clock
    would otherwise give negative or infinite rates)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.values: deque[float] = deque(maxlen=size)

    def append(self, value: float) -> None:
        if self.values and self.values[-1] >= value:
            raise ValueError(f"Expected the value to increase, last: {self.values[-1]}, current: {value}")
        self.values.append(value)

    @property
    def full(self) -> bool:
        return len(self.values) == self.size

    def span(self) -> float:
        return self.values[-1] - self.values[0]


class Throughput:
    """Rolling throughput over the last ``window_size`` updates.

    :meth:`compute` returns ``time``, ``batches``, ``samples`` (and ``lengths``) totals; once the window is full,
    ``device/batches_per_sec``, ``device/samples_per_sec`` (``device/items_per_sec`` with lengths); with FLOPs,
    ``device/flops_per_sec`` and ``device/mfu`` (with ``available_flops``). With ``world_size > 1`` the global rates
    (``batches_per_sec``, ``samples_per_sec``, ``items_per_sec``, ``flops_per_sec``) are added.

    Args:
        available_flops: the theoretical FLOPs per second of one device (for ``device/mfu``).
        world_size: the number of devices; the global rates are the device rates times this.
        window_size: how many updates the rates are computed over (at least 2).
        separator: joins ``device`` and the metric name.

    Example::

        throughput = Throughput(window_size=10)
        t0 = time.perf_counter()
        for i in range(1, 101):
            train_step()
            throughput.update(time=time.perf_counter() - t0, batches=i, samples=i * batch_size)
        print(throughput.compute()["device/samples_per_sec"])
    """

    def __init__(
        self, available_flops: float | None = None, world_size: int = 1, window_size: int = 100, separator: str = "/"
    ) -> None:
        if world_size < 1:
            raise ValueError(f"`Throughput(world_size={world_size!r})` must be at least 1.")
        if window_size < 2:
            raise ValueError(f"`Throughput(window_size={window_size!r})` must be at least 2 (rates need two points).")
        self.available_flops = available_flops
        self.world_size = world_size
        self.separator = separator
        self._time = _IncreasingWindow(window_size)
        self._batches = _IncreasingWindow(window_size)
        self._samples = _IncreasingWindow(window_size)
        self._lengths = _IncreasingWindow(window_size)
        self._flops: deque[float] = deque(maxlen=window_size)

    def update(
        self, *, time: float, batches: int, samples: int, lengths: int | None = None, flops: int | None = None
    ) -> None:
        """Record the totals so far.

        Args:
            time: seconds elapsed since the start (increasing).
            batches: batches seen by this device so far (increasing).
            samples: samples seen by this device so far (increasing, at least ``batches``).
            lengths: items (e.g. tokens) seen so far (at least ``samples``).
            flops: FLOPs this device ran since the previous update.
        """
        self._time.append(time)
        if samples < batches:
            raise ValueError(f"Expected samples ({samples}) to be greater or equal than batches ({batches})")
        self._batches.append(batches)
        self._samples.append(samples)
        if lengths is not None:
            if lengths < samples:
                raise ValueError(f"Expected lengths ({lengths}) to be greater or equal than samples ({samples})")
            self._lengths.append(lengths)
            if len(self._samples.values) != len(self._lengths.values):
                raise RuntimeError(
                    f"If lengths are passed ({len(self._lengths.values)}), there needs to be the same number of"
                    f" samples ({len(self._samples.values)})"
                )
        if flops is not None:
            self._flops.append(flops * self.world_size)  # summed over the devices

    def compute(self) -> Metrics:
        """The totals, and the rates once ``window_size`` updates were recorded."""
        sep = self.separator
        metrics: Metrics = {
            "time": self._time.values[-1],
            "batches": self._batches.values[-1],
            "samples": self._samples.values[-1],
        }
        if self._lengths.values:
            metrics["lengths"] = self._lengths.values[-1]
        scale = self.world_size if self.world_size > 1 else None  # global rates only with several devices
        if self._time.full:
            elapsed = self._time.span()
            rates = {
                "batches_per_sec": self._batches.span() / elapsed,
                "samples_per_sec": self._samples.span() / elapsed,
            }
            if self._lengths.full:
                rates["items_per_sec"] = self._lengths.span() / elapsed
            for name, rate in rates.items():
                metrics[f"device{sep}{name}"] = rate
                if scale:
                    metrics[name] = rate * scale
        if len(self._flops) == self._flops.maxlen:
            # The first entry's FLOPs were spent before the window's first time point.
            flops_per_sec = (sum(self._flops) - self._flops[0]) / self._time.span()
            if scale:
                metrics["flops_per_sec"] = flops_per_sec
            device_flops = flops_per_sec / self.world_size
            metrics[f"device{sep}flops_per_sec"] = device_flops
            if self.available_flops:
                metrics[f"device{sep}mfu"] = device_flops / self.available_flops
        return metrics

    def reset(self) -> None:
        """Forget every update."""
        for window in (self._time, self._batches, self._samples, self._lengths):
            window.values.clear()
        self._flops.clear()


class ThroughputMonitor(Throughput):
    """Lightning Fabric's `ThroughputMonitor`: a :class:`Throughput` that knows the Fabric object's devices and
    precision and logs with ``fabric.log_dict``; only global rank 0 records and logs.

    Args:
        fabric: the Fabric-like object (``device``, ``world_size``, ``strategy.precision``, ``log_dict``).
        **kwargs: ``window_size`` and ``separator`` of :class:`Throughput`.
    """

    def __init__(self, fabric: Any, **kwargs: Any) -> None:
        validate = getattr(fabric, "_validate_launched", None)
        if callable(validate):
            validate()  # the world size is known only once the processes are launched
        dtype = compute_dtype(getattr(fabric.strategy, "precision", None))
        super().__init__(
            available_flops=get_available_flops(fabric.device, dtype), world_size=fabric.world_size, **kwargs
        )
        self._fabric = fabric
        self.step = -1

    def update(self, **kwargs: Any) -> None:
        """:meth:`Throughput.update` on global rank 0 only."""
        if _global_zero():
            super().update(**kwargs)

    def compute(self) -> Metrics:
        """:meth:`Throughput.compute` on global rank 0; ``{}`` elsewhere."""
        return super().compute() if _global_zero() else {}

    def reset(self) -> None:
        """:meth:`Throughput.reset` on global rank 0 only."""
        if _global_zero():
            super().reset()

    def compute_and_log(self, step: int | None = None, **kwargs: Any) -> Metrics:
        """Compute the metrics and log them at ``step`` (default: one more than the last step logged); ``{}`` and
        nothing logged on ranks other than 0."""
        if not _global_zero():
            return {}
        self.step = self.step + 1 if step is None else step
        metrics = self.compute(**kwargs)
        self._fabric.log_dict(metrics=metrics, step=self.step)
        return metrics


def _global_zero() -> bool:
    return bool(rank_zero_only.rank == 0)  # type: ignore[attr-defined]


def measure_flops(
    model: torch.nn.Module,
    forward_fn: Callable[[], torch.Tensor],
    loss_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> int:
    """The FLOPs `forward_fn()` runs (and, with `loss_fn`, the loss and its backward pass), counted by torch's
    `FlopCounterMode`. A model and input on the "meta" device are counted without computing anything.

    Args:
        model: the model `forward_fn` runs (kept for Lightning's signature).
        forward_fn: runs the forward pass and returns its output.
        loss_fn: turns the output into a loss; its backward pass is counted too.
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        output = forward_fn()
        if loss_fn is not None:
            loss_fn(output).backward()  # type: ignore[no-untyped-call]
    return int(counter.get_total_flops())


# Peak dense TFLOPS per chip from NVIDIA's datasheets, in the order of _TABLE_DTYPES (None: not supported/listed).
_TABLE_DTYPES: tuple[torch.dtype | str, ...] = (
    torch.float64, torch.float32, "tfloat32", torch.bfloat16, torch.float16, torch.int8, "int4"
)  # fmt: skip
_CUDA_TFLOPS: dict[str, tuple[float | None, ...]] = {
    "h200 sxm1": (34, 67, 990, 2000, 2000, 4000, None),
    "h200 nvl1": (30, 60, 840, 1700, 1700, 3300, None),
    "h100 nvl": (67, 133.8, 989.4, 1978.8, 1978.8, 3957.8, None),
    "h100 sxm": (33.5, 66.9, 494.7, 989.4, 989.4, 1978.9, None),
    "h100 pcie": (25.6, 51.2, 378, 756, 756, 1513, None),
    "rtx 4090": (None, 82.6, 82.6, 82.6, 82.6, 660.6, 1321.2),
    "rtx 4080": (None, 48.7, 48.7, 48.7, 48.7, 389.9, 779.8),
    "rtx 4080 super": (None, 52.2, 52.2, 52.2, 52.2, 417.6, 835.2),
    "l4": (None, 30.3, 60, 121, 121, 242, 484),
    "l40": (None, 90.5, 90.5, 181, 181, 362, 724),
    "a100": (9.7, 19.5, 156, 312, 312, 624, None),
    "a6000": (None, 38.7, 77.4, 38.7, 38.7, 309.7, 619.3),
    "a40": (None, 37.4, 74.8, 37.4, 37.4, 299.3, 598.7),
    "a10g": (None, 31.2, 62.5, 125, 125, 250, 500),
    "rtx 3090 ti": (None, 40, 40, 40, 40, 320, 640),
    "rtx 3090": (None, 35.6, 35.6, 35.6, 35.6, 284, 568),
    "rtx 3080 ti": (None, 34.1, 34.1, 34.1, 34.1, 272.8, 546.6),
    "rtx 3080": (None, 29.8, 29.8, 29.8, 29.8, 238, 476),
    "rtx 3070": (None, 20.3, 20.3, 20.3, 20.3, 162.6, 325.2),
    "t4": (None, 8.1, None, None, 65, 130, 260),
    "quadro rtx 5000": (None, 11.2, None, None, 89.2, None, None),
    "rtx 2080 super": (None, 11.2, None, None, 22.3, 178.4, 356.8),
    "rtx 2080 ti": (None, 14.2, None, None, 28.5, 227.7, 455.4),
    "rtx 2080": (None, 10.6, None, None, 21.2, 169.6, 339.1),
    "rtx 2070 super": (None, 9.1, None, None, 18.1, 145, 290),
    "titan rtx": (None, 16.3, None, None, 32.6, 261, 522),
    "v100 sxm": (7.8, 15.7, None, None, 125, None, None),
    "v100 pcie": (7, 14, None, None, 112, None, None),
    "v100s pcie": (8.2, 16.4, None, None, 130, None, None),
}
# Substrings of `torch.cuda.get_device_name()` (lower case) -> the chip, checked in order.
_SIMPLE_CHIPS = (
    ("a6000", "a6000"), ("a100", "a100"), ("a40", "a40"), ("a10g", "a10g"), ("t4", "t4"),
    ("quadro rtx 5000", "quadro rtx 5000"), ("titan rtx", "titan rtx"), ("v100-sxm", "v100 sxm"),
    ("v100-pcie", "v100 pcie"), ("v100s-pcie", "v100s pcie"),
)  # fmt: skip


def _chip_of(name: str) -> str | None:
    """The `_CUDA_TFLOPS` key of a device name such as "NVIDIA H100 80GB HBM3" (None when unknown)."""
    chip = name.lower()
    if "h200" in chip:
        return "h200 sxm1" if "sxm1" in chip else "h200 nvl1" if "nvl1" in chip else chip
    if "h100" in chip:
        if "hbm3" in chip:
            return "h100 sxm"
        if "nvl" in chip:
            return "h100 nvl"
        return "h100 pcie" if "pcie" in chip or "hbm2e" in chip else chip
    if "l4" in chip:
        return "l40" if "tesla" in chip else "l4"
    if "geforce rtx" in chip:
        extra = " super" if "super" in chip else " ti" if "ti" in chip else ""
        return f"rtx {chip.split(' ')[3]}{extra}"
    return next((key for part, key in _SIMPLE_CHIPS if part in chip), None)


def get_available_flops(device: torch.device, dtype: torch.dtype | str) -> int | None:
    """The theoretical peak FLOPs per second of `device` in `dtype` (float32 counts as TF32 on Ampere and later
    when `torch.get_float32_matmul_precision()` allows it); None, with a warning, for an unknown GPU; None for CPUs.
    """
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    chip = _chip_of(name)
    if chip is None:
        rank_zero_warn(f"FLOPs not found for {name!r}")
        return None
    if chip not in _CUDA_TFLOPS:
        rank_zero_warn(f"FLOPs not found for {name!r}, chip is {chip!r}")
        return None
    ampere_or_later = torch.cuda.get_device_capability(device)[0] >= 8
    if dtype is torch.float32 and ampere_or_later and torch.get_float32_matmul_precision() != "highest":
        dtype = "tfloat32"
    tflops = dict(zip(_TABLE_DTYPES, _CUDA_TFLOPS[chip])).get(dtype)
    if tflops is None:
        rank_zero_warn(f"{name!r} does not support {dtype}")
        return None
    return int(tflops * 1e12)


_PRECISION_DTYPES = {
    "64-true": torch.float64,
    "64": torch.float64,
    "16-true": torch.float16,
    "16-mixed": torch.float16,
    "bf16-true": torch.bfloat16,
    "bf16-mixed": torch.bfloat16,
}


def compute_dtype(precision: Any) -> torch.dtype:
    """The dtype matrix multiplications run in under a precision (a name such as "bf16-mixed", or an object with
    a ``name`` or ``precision`` attribute): float32 unless the precision says otherwise."""
    name = precision if isinstance(precision, str) else getattr(precision, "name", getattr(precision, "precision", ""))
    return _PRECISION_DTYPES.get(str(name), torch.float32)
