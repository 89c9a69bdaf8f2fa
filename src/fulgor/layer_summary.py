"""One layer's row of a model summary as an object (`LayerSummary`: type, parameter count, mode, and the in/out
shapes of its first forward call), with `parse_batch_shape` and `get_formatted_model_size` -- the per-layer names of
Lightning's `utilities.model_summary` for custom summaries (the table itself is fulgor.summary)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.parameter import UninitializedParameter
from torch.utils.hooks import RemovableHandle

from fulgor.summary import UNKNOWN_SIZE

__all__ = ["LayerSummary", "get_formatted_model_size", "parse_batch_shape"]


def parse_batch_shape(batch: Any) -> list[Any] | str:
    """`[4, 256]` for a tensor (anything with `.shape`), nested lists for lists and tuples, `"?"` otherwise."""
    if hasattr(batch, "shape"):
        return list(batch.shape)
    if isinstance(batch, (list, tuple)):
        return [parse_batch_shape(item) for item in batch]
    return UNKNOWN_SIZE


def get_formatted_model_size(total_model_size: float) -> str:
    """A size in MB as the summary prints it: three decimals, thousands separated (`1,234.568`)."""
    return f"{total_model_size:,.3f}"


class LayerSummary:
    """What the summary shows of one module. The in/out shapes are recorded by a forward hook on the module's first
    call (then the hook removes itself); until then they are `"?"`.

    Args:
        module: the layer to describe.
    """

    def __init__(self, module: nn.Module) -> None:
        self._module = module
        self._in_size: list[Any] | str | None = None
        self._out_size: list[Any] | str | None = None
        self._hook_handle: RemovableHandle | None = None
        if not isinstance(module, torch.jit.ScriptModule):  # scripted modules take no hooks
            self._hook_handle = module.register_forward_hook(self._record, with_kwargs=True)

    def _record(self, _: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        inputs: Any = (*args, *kwargs.values())
        self._in_size = parse_batch_shape(inputs[0] if len(inputs) == 1 else inputs)
        self._out_size = parse_batch_shape(out)
        self.detach_hook()  # the first call is the one shown (modules called repeatedly or recursively)

    def __del__(self) -> None:
        self.detach_hook()

    def detach_hook(self) -> None:
        """Remove the forward hook if the module was never called."""
        if self._hook_handle is not None:
            self._hook_handle.remove()
            self._hook_handle = None

    @property
    def in_size(self) -> list[Any] | str:
        """The input shape(s) of the first call, or `"?"`."""
        return self._in_size or UNKNOWN_SIZE

    @property
    def out_size(self) -> list[Any] | str:
        """The output shape(s) of the first call, or `"?"`."""
        return self._out_size or UNKNOWN_SIZE

    @property
    def layer_type(self) -> str:
        """The module's class name, e.g. `"Linear"`."""
        return type(self._module).__name__

    @property
    def num_parameters(self) -> int:
        """The number of parameter elements (lazy, uninitialized parameters count 0)."""
        return sum(0 if isinstance(p, UninitializedParameter) else p.numel() for p in self._module.parameters())

    @property
    def training(self) -> bool:
        """Whether the module is in training mode."""
        return self._module.training
