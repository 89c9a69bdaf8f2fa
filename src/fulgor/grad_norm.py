"""`grad_norm`: the p-norm of each parameter's gradient and of all of them together, keyed as Lightning logs them."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["grad_norm"]


def grad_norm(module: nn.Module, norm_type: float | int | str, group_separator: str = "/") -> dict[str, torch.Tensor]:
    """The gradient norms of `module`'s parameters: `{"grad_2.0_norm/layer.weight": ..., "grad_2.0_norm_total": ...}`.

    Parameters without a gradient are left out; the total is the norm of all gradients seen as one vector.

    Args:
        module: the module whose gradients are measured.
        norm_type: p of the p-norm (`"inf"` for the largest absolute value).
        group_separator: what joins the `grad_<p>_norm` group and the parameter name (loggers group on it).

    Returns:
        The norms by name, each a 0-d tensor.

    Raises:
        ValueError: `norm_type` is not a number or `"inf"`, or is not positive.
    """
    p = float(norm_type)
    if p <= 0:
        raise ValueError(f"`norm_type` must be a positive number or 'inf' (infinity norm). Got {norm_type}")
    group = f"grad_{p}_norm"
    norms = {
        f"{group}{group_separator}{name}": torch.linalg.vector_norm(param.grad.detach(), ord=p)
        for name, param in module.named_parameters()
        if param.grad is not None
    }
    if norms:
        norms[f"{group}_total"] = torch.linalg.vector_norm(torch.stack(list(norms.values())), ord=p)
    return norms
