"""Layer synchronisation plugins (Lightning's API): `LayerSync` and `TorchSyncBatchNorm`, which turns BatchNorm layers
into synchronised ones for a distributed fit (`Trainer(sync_batchnorm=True)`) and back: torch's SyncBatchNorm on GPUs,
fulgor's `CPUSyncBatchNorm` on CPU processes (gloo), where torch's and DDP refuse it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["CPUSyncBatchNorm", "LayerSync", "TorchSyncBatchNorm"]

# Where torch's SyncBatchNorm runs; elsewhere (CPU) fulgor's computes the global statistics itself.
_TORCH_SYNC_DEVICES = ("cuda", "hpu", "xpu", torch._C._get_privateuse1_backend_name())


class LayerSync(ABC):
    """Wraps layers of a model with synchronisation across processes; pass your own as `Trainer(plugins=[...])`."""

    @abstractmethod
    def apply(self, model: nn.Module) -> nn.Module:
        """Return `model` with its layers synchronised (called before a distributed fit wraps the model)."""

    @abstractmethod
    def revert(self, model: nn.Module) -> nn.Module:
        """Undo `apply` (called when the fit ends)."""


class TorchSyncBatchNorm(LayerSync):
    """Every BatchNorm layer becomes a synchronised one: during training its statistics are those of the global batch
    (all processes), so they do not depend on how the batch is split. Has no effect on one process.

    Layers on a GPU become `torch.nn.SyncBatchNorm` (as in Lightning); layers on the CPU become `CPUSyncBatchNorm`.
    """

    def apply(self, model: nn.Module) -> nn.Module:
        """Convert the BatchNorm layers of `model` (the same module object is returned unless it is one itself).

        Args:
            model: the LightningModule (or any module).
        """
        return _to_sync(model)

    def revert(self, model: nn.Module) -> nn.Module:
        """Convert the SyncBatchNorm layers back to the BatchNorm classes `apply` replaced (a class-agnostic BatchNorm
        for layers it did not convert), keeping the weights and running statistics."""
        return _from_sync(model)


class CPUSyncBatchNorm(_BatchNorm):
    """A BatchNorm (of inputs of any rank >= 2) that, while training in a process group, normalises with the mean and
    variance of the global batch: the sums are all-reduced with torch's differentiable collectives, so gradients
    flow across processes as with `torch.nn.SyncBatchNorm`, which runs on GPUs only. Works on any device.

    Args:
        num_features, eps, momentum, affine, track_running_stats: as for `torch.nn.BatchNorm1d`.
        process_group: the processes to synchronise (default: all).

    Attributes:
        original_type: the BatchNorm class this layer replaced (what `TorchSyncBatchNorm.revert` restores).
    """

    original_type: type[_BatchNorm] | None = None

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        process_group: Any | None = None,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        self.process_group = process_group

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: Tensor) -> Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(input)
        self._check_input_dim(input)
        return self._all_reduce_forward(input)

    def _all_reduce_forward(self, x: Tensor) -> Tensor:
        group = self.process_group or dist.group.WORLD
        dims = [0, *range(2, x.dim())]
        shape = [1, x.shape[1]] + [1] * (x.dim() - 2)
        count = torch.tensor([x.numel() // x.shape[1]], dtype=x.dtype, device=x.device)
        sums: Tensor = _AllReduceSum.apply(torch.cat([x.sum(dims), count]), group)  # type: ignore[no-untyped-call]
        total = sums[-1]
        mean = sums[:-1] / total
        centered = x - mean.view(shape)
        # Two passes (mean, then squared deviations) rather than E[x²] - E[x]²: no cancellation for large means.
        var: Tensor = _AllReduceSum.apply(centered.pow(2).sum(dims), group) / total  # type: ignore[no-untyped-call]
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), total.detach())
        out = centered * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, var: Tensor, total: Tensor) -> None:
        assert self.num_batches_tracked is not None
        assert self.running_mean is not None
        assert self.running_var is not None
        self.num_batches_tracked.add_(1)
        factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        unbiased = var * total / (total - 1).clamp(min=1)
        self.running_mean.mul_(1 - factor).add_(mean, alpha=factor)
        self.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)


class _AllReduceSum(torch.autograd.Function):
    """Sum over the processes, differentiable: the gradient of a sum that every process used is the sum of their
    gradients (so each process receives what the others' losses owe to its inputs)."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor, group: Any) -> Tensor:
        ctx.group = group
        total = tensor.clone()
        dist.all_reduce(total, group=group)
        return total

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        total = grad.clone()
        dist.all_reduce(total, group=ctx.group)
        return total, None


class _BatchNormXd(_BatchNorm):
    """A BatchNorm for inputs of any rank: what a SyncBatchNorm of unknown origin reverts to."""

    def _check_input_dim(self, input: Tensor) -> None:
        return


def _move_state(source: _BatchNorm, target: _BatchNorm) -> None:
    """Give `target` the parameters, running statistics and mode of `source` (the same tensors, not copies)."""
    if source.affine:
        target.weight = source.weight
        target.bias = source.bias
    target.running_mean = source.running_mean
    target.running_var = source.running_var
    target.num_batches_tracked = source.num_batches_tracked
    target.training = source.training
    if hasattr(source, "qconfig"):
        target.qconfig = source.qconfig


def _arguments(layer: _BatchNorm) -> tuple[Any, ...]:
    return (layer.num_features, layer.eps, layer.momentum, layer.affine, layer.track_running_stats)


def _to_sync(module: nn.Module) -> nn.Module:
    converted = module
    if isinstance(module, _BatchNorm) and not isinstance(module, (nn.SyncBatchNorm, CPUSyncBatchNorm)):
        tensor = next(iter([*module.parameters(), *module.buffers()]), None)
        on_gpu = tensor is not None and tensor.device.type in _TORCH_SYNC_DEVICES
        converted = (nn.SyncBatchNorm if on_gpu else CPUSyncBatchNorm)(*_arguments(module))
        converted.original_type = type(module)
        _move_state(module, converted)
    for name, child in module.named_children():
        converted.add_module(name, _to_sync(child))
    return converted


def _from_sync(module: nn.Module) -> nn.Module:
    converted = module
    if isinstance(module, (nn.SyncBatchNorm, CPUSyncBatchNorm)):
        original = getattr(module, "original_type", None) or _BatchNormXd
        try:
            converted = original(*_arguments(module))
        except TypeError:  # a BatchNorm subclass with its own constructor
            converted = _BatchNormXd(*_arguments(module))
        _move_state(module, converted)
    for name, child in module.named_children():
        converted.add_module(name, _from_sync(child))
    return converted
