"""The model summary (Lightning's ``utilities.model_summary``): one `LayerSummary` per listed layer (type, parameter
count, mode, In/Out sizes from one forward pass of ``example_input_array``), FLOPs, and the table rendered exactly as
Lightning 2.6.6 prints it."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn.parameter import UninitializedParameter

from fulgor.rank import rank_zero_warn, warn_once

if TYPE_CHECKING:
    from torch.utils.flop_counter import FlopCounterMode
    from torch.utils.hooks import RemovableHandle

__all__ = [
    "LayerSummary",
    "ModelSummary",
    "get_formatted_model_size",
    "get_human_readable_count",
    "parse_batch_shape",
    "summarize",
]

_UNITS = (" ", "K", "M", "B", "T")
UNKNOWN_SIZE = "?"
LEFTOVER_PARAMS_NAME = "other params"
NOT_APPLICABLE = "n/a"

# Bits per parameter for the size estimate; mixed precisions keep fp32 weights, so they fall back to 32 with a warning.
_PRECISION_BITS = {
    "64": 64,
    "32": 32,
    "16": 16,
    "bf16": 16,
    "16-true": 16,
    "bf16-true": 16,
    "32-true": 32,
    "64-true": 64,
}


def get_human_readable_count(number: int | float) -> str:
    """Abbreviate a non-negative count with K, M, B, T (thousands ... trillions), as Lightning does.

    Args:
        number: a non-negative number (floats such as ``2e6`` are accepted).

    Returns:
        ``"999  "`` below a thousand (number, space, blank unit), ``"1.2 K"`` with one decimal while the scaled value
        is below 100, ``"132 K"`` above; beyond trillions the value stays in ``T`` (``"5,000 T"``).

    Example:
        >>> get_human_readable_count(1234)
        '1.2 K'
    """
    if number < 0:
        raise ValueError(f"`number` must be >= 0 to be made human readable, got {number}.")
    digits = math.floor(math.log10(number)) + 1 if number > 0 else 1
    unit = min(math.ceil(digits / 3), len(_UNITS)) - 1
    scaled = number * 10 ** (-3 * unit)
    if unit == 0 or scaled >= 100:
        return f"{int(scaled):,d} {_UNITS[unit]}"
    return f"{scaled:,.1f} {_UNITS[unit]}"


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


def _count(params: Iterator[nn.Parameter]) -> int:
    """Number of elements, counting lazy (uninitialized) parameters as 0 with a one-time warning."""
    total = 0
    for p in params:
        if isinstance(p, UninitializedParameter):
            warn_once(
                "The total number of parameters detected may be inaccurate because the model contains"
                " an instance of `UninitializedParameter`. To get an accurate number, set `self.example_input_array`"
                " in your LightningModule."
            )
            continue
        total += p.numel()
    return total


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


class ModelSummary:
    """Summary of a model's layers; ``str(summary)`` is Lightning's table, byte for byte.

    If the model has a non-None ``example_input_array`` attribute, it is run once through the model (eval mode,
    ``no_grad``, training flags restored afterwards) to record each layer's In/Out sizes and FLOPs. A tuple/list input
    is unpacked as positional arguments, a dict as keyword arguments.

    Args:
        model: the module to summarize (a LightningModule or any ``nn.Module``).
        max_depth: depth of nested layers to list: 1 = direct children, -1 = all, 0 = none.
    """

    def __init__(self, model: nn.Module, max_depth: int = 1) -> None:
        if not isinstance(max_depth, int) or isinstance(max_depth, bool) or max_depth < -1:
            raise ValueError(f"`max_depth` can be -1, 0 or > 0, got {max_depth}.")
        self._model = model
        self._max_depth = max_depth
        self._layers: dict[str, LayerSummary] = {name: LayerSummary(module) for name, module in self._listed_modules()}
        self._flop_counts: dict[str, dict[Any, int]] = {}
        self._total_flops = 0
        try:
            if self._example_input is not None:
                self._forward_example_input()
        finally:
            for layer in self._layers.values():
                layer.detach_hook()
        self._bytes_per_param = _precision_bits(model) / 8.0

    def summarize(self) -> dict[str, LayerSummary]:
        """Each listed layer's `LayerSummary`, by name (their hooks are already removed: the example input, if any,
        ran when the summary was made)."""
        return dict(self._layers)

    @property
    def _example_input(self) -> Any:
        return getattr(self._model, "example_input_array", None)

    def _listed_modules(self) -> list[tuple[str, nn.Module]]:
        if self._max_depth == 0:
            return []
        if self._max_depth == 1:
            return list(self._model.named_children())
        modules = list(self._model.named_modules())[1:]  # the root is not a row
        if self._max_depth < 0:
            return modules
        return [(name, module) for name, module in modules if name.count(".") < self._max_depth]

    def _forward_example_input(self) -> None:
        from torch.utils.flop_counter import FlopCounterMode  # lazy: pulls in torch's dispatch machinery

        model = self._model
        batch = _prepare_example_input(model, self._example_input)
        modes = {module: module.training for module in model.modules()}
        counter = FlopCounterMode(display=False, depth=self._max_depth + 1)
        model.eval()
        try:
            with torch.no_grad(), _forward_context(model), counter:
                if isinstance(batch, (list, tuple)):
                    model(*batch)
                elif isinstance(batch, dict):
                    model(**batch)
                else:
                    model(batch)
        finally:
            for module, training in modes.items():
                module.training = training
        self._read_flops(counter)

    def _read_flops(self, counter: FlopCounterMode) -> None:
        # FlopCounterMode names modules "<RootClass>.<dotted.path>"; "Global" holds everything.
        counts = counter.get_flop_counts()
        prefix = type(self._model).__name__
        self._flop_counts = {name: counts.get(f"{prefix}.{name}", {}) for name in self._layers}
        self._total_flops = counter.get_total_flops()

    @property
    def layer_names(self) -> list[str]:
        """Dotted names of the listed layers."""
        return list(self._layers)

    @property
    def layer_types(self) -> list[str]:
        """Class names of the listed layers."""
        return [layer.layer_type for layer in self._layers.values()]

    @property
    def in_sizes(self) -> list[list[Any] | str]:
        """Input shapes seen in the example forward pass (``"?"`` when unknown)."""
        return [layer.in_size for layer in self._layers.values()]

    @property
    def out_sizes(self) -> list[list[Any] | str]:
        """Output shapes seen in the example forward pass (``"?"`` when unknown)."""
        return [layer.out_size for layer in self._layers.values()]

    @property
    def param_nums(self) -> list[int]:
        """Number of parameters of each listed layer (its own and its children's)."""
        return [_count(layer._module.parameters()) for layer in self._layers.values()]

    @property
    def training_modes(self) -> list[bool]:
        """``training`` flag of each listed layer."""
        return [layer.training for layer in self._layers.values()]

    @property
    def total_training_modes(self) -> dict[str, int]:
        """How many submodules (all depths, root excluded) are in train and in eval mode."""
        modes = [module.training for module in self._model.modules()][1:]
        return {"train": modes.count(True), "eval": modes.count(False)}

    @property
    def total_parameters(self) -> int:
        """Number of parameters of the whole model."""
        return _count(self._model.parameters())

    @property
    def trainable_parameters(self) -> int:
        """Number of parameters with ``requires_grad=True``."""
        return _count(p for p in self._model.parameters() if p.requires_grad)

    @property
    def total_layer_params(self) -> int:
        """Sum of the listed layers' parameter counts."""
        return sum(self.param_nums)

    @property
    def model_size(self) -> float:
        """Estimated size of the parameters in MB at the trainer's precision."""
        return self.total_parameters * self._bytes_per_param * 1e-6

    @property
    def total_flops(self) -> int:
        """FLOPs of the whole example forward pass (0 without ``example_input_array``)."""
        return self._total_flops

    @property
    def flop_counts(self) -> dict[str, dict[Any, int]]:
        """Per listed layer: FLOPs by operator in the example forward pass."""
        return {name: self._flop_counts.get(name, {}) for name in self._layers}

    def _columns(self) -> list[tuple[str, list[str]]]:
        columns: list[tuple[str, list[str]]] = [
            (" ", [str(i) for i in range(len(self._layers))]),
            ("Name", self.layer_names),
            ("Type", self.layer_types),
            ("Params", [get_human_readable_count(n) for n in self.param_nums]),
            ("Mode", ["train" if training else "eval" for training in self.training_modes]),
            ("FLOPs", [get_human_readable_count(sum(c.values())) for c in self.flop_counts.values()]),
        ]
        with_sizes = self._example_input is not None
        if with_sizes:
            columns.append(("In sizes", [str(size) for size in self.in_sizes]))
            columns.append(("Out sizes", [str(size) for size in self.out_sizes]))
        leftover = self.total_parameters - self.total_layer_params
        if leftover > 0:  # parameters held directly by the root (or by unlisted modules)
            extra = [" ", LEFTOVER_PARAMS_NAME, NOT_APPLICABLE, get_human_readable_count(leftover)]
            extra += [NOT_APPLICABLE] * (len(columns) - len(extra))
            for (_, cells), cell in zip(columns, extra):
                cells.append(cell)
        return columns

    def __str__(self) -> str:
        columns = self._columns()
        widths = [max([len(header), *(len(cell) for cell in cells)]) for header, cells in columns]
        rule = "-" * (sum(widths) + 3 * (len(columns) + 1))
        rows = [[header for header, _ in columns]]
        rows += [[cells[i] for _, cells in columns] for i in range(len(columns[0][1]))]
        lines = [" | ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in rows]
        lines.insert(1, rule)
        lines.append(rule)
        trainable, total = self.trainable_parameters, self.total_parameters
        modes = self.total_training_modes
        footer = [
            (get_human_readable_count(trainable), "Trainable params"),
            (get_human_readable_count(total - trainable), "Non-trainable params"),
            (get_human_readable_count(total), "Total params"),
            (f"{self.model_size:,.3f}", "Total estimated model params size (MB)"),
            (str(modes["train"]), "Modules in train mode"),
            (str(modes["eval"]), "Modules in eval mode"),
            (get_human_readable_count(self.total_flops), "Total Flops"),
        ]
        lines += [f"{value:<10}{label}" for value, label in footer]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)


def _precision_bits(model: nn.Module) -> int:
    trainer = getattr(model, "_trainer", None)
    if trainer is None:
        return 32
    precision = str(trainer.precision)
    if precision not in _PRECISION_BITS:
        rank_zero_warn(
            f"Precision {precision} is not supported by the model summary. "
            " Estimated model size in MB will not be accurate. Using 32 bits instead.",
            category=UserWarning,
        )
    return _PRECISION_BITS.get(precision, 32)


def _forward_context(model: nn.Module) -> contextlib.AbstractContextManager[Any]:
    """The trainer's precision context (autocast for mixed precision) when a trainer is attached."""
    plugin = getattr(getattr(model, "_trainer", None), "precision_plugin", None)
    forward_context = getattr(plugin, "forward_context", None)
    return forward_context() if callable(forward_context) else contextlib.nullcontext()


def _model_device(model: nn.Module) -> torch.device | None:
    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        return device
    first = next(model.parameters(), None)
    return None if first is None else first.device


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, (list, tuple)):
        moved = [_to_device(item, device) for item in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
    if isinstance(batch, dict):
        return type(batch)({key: _to_device(value, device) for key, value in batch.items()})
    return batch


def _prepare_example_input(model: nn.Module, batch: Any) -> Any:
    """Pass the example input through the module's batch-transfer hooks (LightningModule) or move it to its device."""
    device = _model_device(model)
    before = getattr(model, "on_before_batch_transfer", None)
    transfer = getattr(model, "transfer_batch_to_device", None)
    after = getattr(model, "on_after_batch_transfer", None)
    if callable(before) and callable(transfer) and callable(after):
        batch = before(batch, 0)
        if device is not None:
            batch = transfer(batch, device, 0)
        return after(batch, 0)
    return batch if device is None else _to_device(batch, device)


def summarize(lightning_module: nn.Module, max_depth: int = 1) -> ModelSummary:
    """Summarize a model (Lightning's ``utilities.model_summary.summarize``).

    Args:
        lightning_module: the module to summarize.
        max_depth: depth of nested layers to list: 1 = direct children, -1 = all, 0 = none.

    Returns:
        The summary; ``str()`` of it is the table.
    """
    return ModelSummary(lightning_module, max_depth=max_depth)
