"""TorchScript export of a LightningModule (`LightningModule.to_torchscript`, deprecated in Lightning 2.6.6 as torch
deprecates TorchScript) and the switch under which `torch.jit` may read a module not attached to a Trainer."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from fulgor import fs
from fulgor.rank_messages import rank_zero_deprecation

_DEPRECATION = (
    "`LightningModule.to_torchscript` has been deprecated in v2.7 and will be removed in v2.8. "
    "TorchScript is deprecated in PyTorch. Use `torch.export.export()` for model exporting instead. "
    "See https://pytorch.org/docs/stable/export.html for more information."
)


@contextmanager
def jit_scripting(base: type) -> Iterator[None]:
    """Set `base._jit_is_scripting` while `torch.jit` compiles or traces: the compiler reads every property of the
    module, and `trainer` must then answer None instead of raising for a module not attached to a Trainer."""
    base._jit_is_scripting = True  # type: ignore[attr-defined]
    try:
        yield
    finally:
        base._jit_is_scripting = False  # type: ignore[attr-defined]


def to_torchscript(
    module: Any, base: type, file_path: Any, method: str | None, example_inputs: Any, **kwargs: Any
) -> Any:
    """`module` compiled (`method="script"`) or traced (`"trace"`, on `example_inputs` or the module's
    `example_input_array`, moved to its device through the batch-transfer hooks) in eval mode; saved to `file_path`
    when given. The module's training mode is restored after.

    Raises:
        ValueError: `method` is neither "script" nor "trace", or tracing has no example inputs.
    """
    rank_zero_deprecation(_DEPRECATION)
    training = module.training
    if method == "script":
        with jit_scripting(base):
            compiled = torch.jit.script(module.eval(), **kwargs)
    elif method == "trace":
        if example_inputs is None:
            if module.example_input_array is None:
                raise ValueError(
                    "Choosing method=`trace` requires either `example_inputs`"
                    " or `model.example_input_array` to be defined."
                )
            example_inputs = module.example_input_array
        example_inputs = _to_module_device(module, example_inputs)
        with jit_scripting(base):
            compiled = torch.jit.trace(  # type: ignore[no-untyped-call]
                func=module.eval(), example_inputs=example_inputs, **kwargs
            )
    else:
        raise ValueError(f"The 'method' parameter only supports 'script' or 'trace', but value given was: {method}")
    module.train(training)
    if file_path is not None:
        with fs.open(file_path, "wb") as f:
            torch.jit.save(compiled, f)
    return compiled


def _to_module_device(module: nn.Module, batch: Any) -> Any:
    hooks: Any = module
    batch = hooks.on_before_batch_transfer(batch, 0)
    batch = hooks.transfer_batch_to_device(batch, hooks.device, 0)
    return hooks.on_after_batch_transfer(batch, 0)
