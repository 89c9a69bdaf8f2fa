"""`from_compiled` / `to_uncompiled`: a `torch.compile`d LightningModule turned back into a LightningModule whose
forward and step methods run compiled (so `isinstance` checks and the Trainer see a LightningModule), and undone."""

from __future__ import annotations

from typing import Any

from fulgor.module import LightningModule

__all__ = ["from_compiled", "to_uncompiled"]

_CONTEXT = "_compiler_ctx"  # where the original methods wait for `to_uncompiled` (Lightning's attribute name)
_COMPILED_METHODS = ("forward", "training_step", "validation_step", "test_step", "predict_step")


def _optimized_module_class() -> type:
    from torch._dynamo.eval_frame import OptimizedModule  # torch's compiler stack: loaded only when used

    return OptimizedModule


def from_compiled(model: Any) -> LightningModule:
    """The LightningModule inside `torch.compile(module)`, its forward and step methods replaced by compiled ones.

    Args:
        model: what `torch.compile` returned for a LightningModule.

    Returns:
        The original module (changed in place; `to_uncompiled` restores it).

    Raises:
        ValueError: `model` is not a compiled LightningModule.
    """
    if not isinstance(model, _optimized_module_class()):
        raise ValueError(f"`model` is required to be a `OptimizedModule`. Found a `{type(model).__name__}` instead.")
    compiled: Any = model
    original = compiled._orig_mod
    if not isinstance(original, LightningModule):
        raise ValueError(
            f"`model` is expected to be a compiled LightningModule. Found a `{type(original).__name__}` instead"
        )
    compile_fn = compiled.dynamo_ctx
    saved = {name: getattr(original, name) for name in _COMPILED_METHODS}
    setattr(original, _CONTEXT, {"compiler": "dynamo", "dynamo_ctx": compile_fn, "original_methods": saved})
    for name, method in saved.items():
        setattr(original, name, compile_fn(method))
    return original


def to_uncompiled(model: Any) -> LightningModule:
    """The LightningModule without compiled methods, from `torch.compile(module)` or from `from_compiled`'s result.

    Raises:
        ValueError: `model` is neither a compiled LightningModule nor one `from_compiled` returned.
    """
    if isinstance(model, _optimized_module_class()):
        compiled: Any = model
        original = compiled._orig_mod
        if not isinstance(original, LightningModule):
            raise TypeError(f"Unexpected error, the wrapped model should be a LightningModule, found {type(model)}")
    elif isinstance(model, LightningModule):
        if getattr(model, _CONTEXT, None) is None:
            raise ValueError(
                "`model` is required to be a compiled LightningModule. Found a non-compiled LightningModule instead."
            )
        original = model
    else:
        raise ValueError("`model` must either be an instance of OptimizedModule or LightningModule")
    context = getattr(original, _CONTEXT, None)
    if context is not None:
        for name, method in context["original_methods"].items():
            setattr(original, name, method)
        setattr(original, _CONTEXT, None)
    return original
