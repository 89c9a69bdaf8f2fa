"""`RegisterRecordFunction`: label every submodule's forward in torch profiler traces (`[pl][module]<type>: <name>`),
as Lightning's PyTorchProfiler does with `record_module_names=True`; usable around any forward call."""

from __future__ import annotations

from functools import partial
from types import TracebackType
from typing import Any

from torch import nn
from torch.autograd.profiler import record_function
from torch.utils.hooks import RemovableHandle

__all__ = ["RegisterRecordFunction"]


class RegisterRecordFunction:
    """A context manager: while it is open, each submodule's forward runs inside a `record_function` range named after
    the module, so profiler traces show which layer an operator belongs to.

    Example: `with RegisterRecordFunction(model): out = model(batch)` inside a `torch.profiler.profile()`.

    Args:
        model: the module whose submodules are labelled.
    """

    def __init__(self, model: nn.Module) -> None:
        self._model = model
        self._records: dict[str, record_function] = {}
        self._handles: dict[str, list[RemovableHandle]] = {}

    def _start(self, _: nn.Module, inputs: Any, record_name: str) -> None:
        record = record_function("[pl][module]" + record_name)
        record.__enter__()  # type: ignore[no-untyped-call]
        self._records[record_name] = record

    def _stop(self, _: nn.Module, __: Any, output: Any, record_name: str) -> None:
        self._records.pop(record_name).__exit__(None, None, None)

    def __enter__(self) -> None:
        for name, module in self._model.named_modules():
            if not name:
                continue  # the model itself: the profiler's own step range covers it
            kind = type(module)
            label = f"{kind.__module__}.{kind.__name__}: {name}"
            self._handles[name] = [
                module.register_forward_pre_hook(partial(self._start, record_name=label)),
                module.register_forward_hook(partial(self._stop, record_name=label)),
            ]

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        for handles in self._handles.values():
            for handle in handles:
                handle.remove()
        self._handles = {}
