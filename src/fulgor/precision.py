"""The precision objects the Trainer's loop and Fabric use (autocast context, module/input/output dtype conversion,
loss scaling, backward, optimizer step and GradScaler state), and `select_precision` for the `precision` flag (whose
accepted values are in `precision_flags`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from fulgor.data.conversion import cast_floats
from fulgor.errors import ConfigurationValueError, MisconfigurationException
from fulgor.fsdp_precision_config import mixed_precision_config, sharded_scaler
from fulgor.precision_flags import ALLOWED_PRECISIONS, normalize_precision, unified_precision
from fulgor.rank import rank_zero_info

__all__ = [
    "ALLOWED_PRECISIONS",
    "DoublePrecision",
    "FSDPPrecision",
    "HalfPrecision",
    "MixedPrecision",
    "Precision",
    "normalize_precision",
    "select_precision",
    "unified_precision",
]


def select_precision(value: str | int | None, accelerator: str, sharded: bool = False) -> Precision:
    """Normalise the `precision` flag and build its precision object (printing Lightning's AMP info line).

    Args:
        value: the `precision` Trainer flag.
        accelerator: the type of the device the run uses ("cpu", "cuda", "mps").
        sharded: the strategy shards the model (FSDP): the result is an `FSDPPrecision`, as in Lightning.
    """
    name = normalize_precision(value, accelerator)
    precision: Precision
    if sharded:
        precision = FSDPPrecision(name, device=accelerator)  # type: ignore[arg-type]
    elif name == "32-true":
        precision = Precision()
    elif name == "64-true":
        precision = DoublePrecision()
    elif name in ("16-true", "bf16-true"):
        precision = HalfPrecision(name)  # type: ignore[arg-type]
    else:
        precision = MixedPrecision(name, accelerator)  # type: ignore[arg-type]
    if precision.amp_message is not None:
        rank_zero_info(precision.amp_message)
    return precision


_NULL_CONTEXT = contextlib.nullcontext()


class _DefaultDtype:
    """Sets `torch.get_default_dtype()` while entered, so tensors created in `forward` get the run's dtype.

    One instance is reused every step; the stack makes it safe to nest.
    """

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype
        self._previous: list[torch.dtype] = []

    def __enter__(self) -> None:
        self._previous.append(torch.get_default_dtype())
        torch.set_default_dtype(self.dtype)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        torch.set_default_dtype(self._previous.pop())


class Precision:
    """Full fp32 ("32-true"): every hook is the identity. Also the base of the other precisions.

    Subclasses set `_dtype` to train entirely in another dtype (`DoublePrecision`, `HalfPrecision`), or override the
    autocast and scaling hooks (`MixedPrecision`). The class name is the checkpoint key of `state_dict()`, as in
    Lightning (`checkpoint["MixedPrecision"]`). Pass an instance as `Trainer(plugins=[...])` to choose it directly.

    Attributes:
        precision: the precision's name ("32-true", "bf16-mixed", ...), what `trainer.precision` reports.
    """

    precision: str = "32-true"
    bits: int = 32
    scaler: torch.amp.GradScaler | None = None
    amp_message: str | None = None
    # For "*-true": the dtype of weights, float inputs and tensors created in forward. None keeps everything as is.
    _dtype: torch.dtype | None = None

    def __init__(self) -> None:
        self._dtype_context = None if self._dtype is None else _DefaultDtype(self._dtype)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.precision!r})"

    @property
    def name(self) -> str:
        """The same as `precision` (fulgor's earlier attribute)."""
        return self.precision

    @property
    def checkpoint_key(self) -> str:
        """The key under which Lightning stores `state_dict()` in a checkpoint (when it is not empty)."""
        return type(self).__qualname__

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The context to run `*_step`/`forward` in: autocast for mixed precision, the default dtype for "*-true".

        For "32-true" this is one shared `nullcontext`, so entering it every step costs nothing.
        """
        return _NULL_CONTEXT if self._dtype_context is None else self._dtype_context

    def forward_context(self) -> contextlib.AbstractContextManager[Any]:
        """Lightning's name for `autocast()`."""
        return self.autocast()

    def tensor_init_context(self) -> contextlib.AbstractContextManager[Any]:
        """The context in which new tensors get the precision's weight dtype ("*-true"; float32 otherwise)."""
        return contextlib.nullcontext() if self._dtype is None else _DefaultDtype(self._dtype)

    def module_init_context(self) -> contextlib.AbstractContextManager[Any]:
        """The context for building a module whose weights get the precision's dtype (as `tensor_init_context`)."""
        return self.tensor_init_context()

    @property
    def changes_compute(self) -> bool:
        """Whether `autocast()` does anything: False for "32-true", whose training step the loop calls as it is."""
        return self._dtype_context is not None or type(self).autocast is not Precision.autocast

    @property
    def converts_input(self) -> bool:
        """Whether `convert_input` can change a batch ("*-true" or an override): the loop skips the call otherwise."""
        return self._dtype is not None or type(self).convert_input is not Precision.convert_input

    def connect(
        self, model: nn.Module, optimizers: list[Any], lr_schedulers: list[Any]
    ) -> tuple[nn.Module, list[Any], list[Any]]:
        """Called once the run's optimizers exist; returns the model, optimizers and scheduler configs the run uses
        (the same ones; a plugin may wrap them)."""
        return model, optimizers, lr_schedulers

    def convert_module(self, module: nn.Module) -> nn.Module:
        """Cast the module's floating-point parameters and buffers to the precision's dtype ("*-true" only)."""
        return module if self._dtype is None else module.to(dtype=self._dtype)

    def convert_input(self, data: Any) -> Any:
        """Cast floating-point tensors inside nested lists/tuples/dicts/dataclasses to the dtype ("*-true" only)."""
        return data if self._dtype is None else cast_floats(data, self._dtype)

    # ------------------------------------------------------------------ Fabric's side of the precision API
    @property
    def converts_forward(self) -> bool:
        """Whether Fabric's module wrapper must convert a forward's inputs and outputs (False for plain "32-true")."""
        return type(self).convert_forward_input is not Precision.convert_forward_input or (
            type(self).convert_output is not Precision.convert_output or self.converts_input
        )

    def convert_forward_input(self, data: Any) -> Any:
        """The arguments of a forward call through Fabric's module wrapper: `convert_input` (mixed precision also
        casts them to the autocast dtype there, as Lightning Fabric does; the Trainer leaves batches alone)."""
        return self.convert_input(data)

    def convert_output(self, data: Any) -> Any:
        """What Fabric's module wrapper returns from forward: unchanged for "32-true"; other precisions cast floating
        tensors back to the default dtype (float32), so the loss is computed in full precision."""
        return data

    def pre_backward(self, tensor: Tensor, module: nn.Module | None) -> Any:
        """Before `backward` (Fabric's hook; nothing by default)."""

    def backward(self, tensor: Tensor, model: nn.Module | None, *args: Any, **kwargs: Any) -> None:
        """Run backward on `tensor` (scaled for "16-mixed"); `args`/`kwargs` go to `Tensor.backward`.

        Lightning's Trainer-side signature `backward(tensor, model, optimizer, ...)` is accepted too: an optimizer as
        the first extra argument is not passed on.
        """
        if args and isinstance(args[0], Optimizer):
            args = args[1:]
        self.scale_loss(tensor).backward(*args, **kwargs)  # type: ignore[no-untyped-call]

    def post_backward(self, tensor: Tensor, module: nn.Module | None) -> Any:
        """After `backward` (Fabric's hook; nothing by default)."""

    def main_params(self, optimizer: Optimizer) -> Any:
        """The parameters the optimizer updates (what gradient clipping acts on)."""
        for group in optimizer.param_groups:
            yield from group["params"]

    def scale_loss(self, loss: Tensor) -> Tensor:
        """The loss to call `backward` on: scaled by the GradScaler for "16-mixed", unchanged otherwise."""
        return loss

    def unscale_gradients(self, optimizer: Optimizer) -> None:
        """Divide the gradients by the loss scale before clipping/inspection ("16-mixed"; a no-op otherwise)."""

    def check_gradient_clipping(self, optimizer: Optimizer, clip_val: float) -> None:
        """Raise if gradients of `optimizer` cannot be clipped at this precision (call before clipping)."""

    def clip_gradients(
        self, optimizer: Optimizer, clip_val: int | float = 0.0, gradient_clip_algorithm: str = "norm"
    ) -> None:
        """Clip the gradients of `optimizer`'s parameters to `clip_val` by norm or by value (nothing when <= 0)."""
        self.check_gradient_clipping(optimizer, clip_val)
        if clip_val <= 0:
            return
        if str(getattr(gradient_clip_algorithm, "value", gradient_clip_algorithm)) == "value":
            self.clip_grad_by_value(optimizer, clip_val)
        else:
            self.clip_grad_by_norm(optimizer, clip_val)

    def clip_grad_by_value(self, optimizer: Optimizer, clip_val: int | float) -> None:
        """Clip every gradient of `optimizer`'s parameters to [-clip_val, clip_val]."""
        torch.nn.utils.clip_grad_value_(list(self.main_params(optimizer)), clip_val)

    def clip_grad_by_norm(self, optimizer: Optimizer, clip_val: int | float) -> None:
        """Scale the gradients of `optimizer`'s parameters so that their total norm is at most `clip_val`."""
        torch.nn.utils.clip_grad_norm_(list(self.main_params(optimizer)), clip_val)

    def optimizer_step(
        self,
        optimizer: Optimizer,
        closure: Callable[[], Any] | None = None,
        *,
        automatic_optimization: bool = True,
        **kwargs: Any,
    ) -> Any:
        """Step the optimizer, running `closure` (forward, backward, before-step hooks) inside it.

        Args:
            optimizer: the torch optimizer.
            closure: computes the loss and gradients; returns None when the step must be skipped. None (Fabric's
                call): backward already ran.
            automatic_optimization: False for manual optimization, where the closure returns None by design.
            **kwargs: passed to `optimizer.step`.

        Returns:
            What `optimizer.step` returned.
        """
        if closure is None:
            return optimizer.step(**kwargs)
        return optimizer.step(closure=closure, **kwargs)

    def state_dict(self) -> dict[str, Any]:
        """The state to checkpoint: the GradScaler's for "16-mixed", else empty."""
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore `state_dict()`."""

    def teardown(self) -> None:
        """Release what the precision holds after a run (nothing by default)."""


class DoublePrecision(Precision):
    """ "64-true": module, float inputs and new tensors in float64."""

    precision = "64-true"
    bits = 64
    _dtype = torch.float64

    def convert_output(self, data: Any) -> Any:
        """Floating tensors back to the default dtype (Fabric's module wrapper returns float32 outputs)."""
        return cast_floats(data, torch.get_default_dtype())

    def convert_module(self, module: nn.Module) -> nn.Module:
        """`module.double()`: floating parameters and buffers to float64; complex ones stay complex (as Lightning)."""
        return module.double()


class HalfPrecision(Precision):
    """ "16-true" / "bf16-true": module, float inputs and new tensors in float16 / bfloat16 (no autocast, no scaler).

    Args:
        precision: "16-true" or "bf16-true".

    Raises:
        ValueError: another value (Lightning accepts it and trains in float16; fulgor says what it accepts).
    """

    bits = 16

    def __init__(self, precision: Literal["bf16-true", "16-true"] = "16-true") -> None:
        if precision not in ("16-true", "bf16-true"):
            raise ValueError(f"`HalfPrecision(precision={precision!r})`: precision must be '16-true' or 'bf16-true'.")
        self.precision = precision
        self._dtype = torch.bfloat16 if precision == "bf16-true" else torch.float16
        super().__init__()

    def convert_output(self, data: Any) -> Any:
        """Floating tensors back to the default dtype (Fabric's module wrapper returns float32 outputs)."""
        return cast_floats(data, torch.get_default_dtype())


class _AutocastPrecision(Precision):
    """Autocast in forward and, with a GradScaler, loss scaling: what MixedPrecision and FSDPPrecision share."""

    autocast_dtype: torch.dtype | None = None
    device: str = "cuda"

    def __init__(self) -> None:
        super().__init__()
        self._unscaled: set[int] = set()  # ids of optimizers unscaled since the last scaler.update()

    @property
    def changes_compute(self) -> bool:
        return self.autocast_dtype is not None or self._dtype_context is not None

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """`torch.autocast` for the device and dtype (weights cache off, as in Lightning); for "*-true", the default
        dtype as for `HalfPrecision`."""
        if self.autocast_dtype is None:
            return super().autocast()
        return torch.autocast(self.device, dtype=self.autocast_dtype, cache_enabled=False)

    def autocast_context_manager(self) -> contextlib.AbstractContextManager[Any]:
        """Lightning's name for `autocast()`."""
        return self.autocast()

    def convert_output(self, data: Any) -> Any:
        """Floating tensors back to the default dtype (Fabric's module wrapper returns float32 outputs)."""
        return cast_floats(data, torch.get_default_dtype())

    def scale_loss(self, loss: Tensor) -> Tensor:
        """Multiply the loss by the current scale (fp16), so that backward produces scaled gradients."""
        return loss if self.scaler is None else self.scaler.scale(loss)

    def unscale_gradients(self, optimizer: Optimizer) -> None:
        """Unscale this optimizer's gradients in place; later calls in the same step do nothing.

        Call it only after a backward ran (GradScaler cannot be unscaled and then skipped). Optimizers that unscale
        inside their own `step` (fused ones) are left alone.
        """
        if self.scaler is None or id(optimizer) in self._unscaled:
            return
        if not getattr(optimizer, "_step_supports_amp_scaling", False):
            self.scaler.unscale_(optimizer)
        self._unscaled.add(id(optimizer))

    def check_gradient_clipping(self, optimizer: Optimizer, clip_val: float) -> None:
        """Fused optimizers unscale inside `step`, after clipping would run, so their gradients are still scaled."""
        if clip_val > 0 and getattr(optimizer, "_step_supports_amp_scaling", False):
            raise RuntimeError(
                f"The current optimizer, {type(optimizer).__qualname__}, does not allow for gradient clipping"
                " because it performs unscaling of gradients internally. HINT: Are you using a 'fused' optimizer?"
            )

    def optimizer_step(
        self,
        optimizer: Optimizer,
        closure: Callable[[], Any] | None = None,
        *,
        automatic_optimization: bool = True,
        **kwargs: Any,
    ) -> Any:
        """Step with the GradScaler for fp16: run the closure, then `scaler.step` (skips non-finite grads) and update.

        A closure that returns None in automatic optimization means "no backward ran": the step is skipped.
        """
        if self.scaler is None:
            return super().optimizer_step(optimizer, closure, **kwargs)
        if isinstance(optimizer, torch.optim.LBFGS):
            # LBFGS re-evaluates the closure several times per step; GradScaler can only check one backward per step.
            raise MisconfigurationException("AMP and the LBFGS optimizer are not compatible.")
        closure_result = closure() if closure is not None else True  # None: Fabric's call, backward already ran
        if closure_result is None and automatic_optimization:
            self._unscaled.discard(id(optimizer))
            return None
        self.unscale_gradients(optimizer)  # no-op when the closure already did it
        step_output = self.scaler.step(optimizer, **kwargs)
        self.scaler.update()
        self._unscaled.clear()
        return step_output

    def state_dict(self) -> dict[str, Any]:
        """The GradScaler state (scale, growth tracker, ...) for "16-mixed"; empty for "bf16-mixed"."""
        return {} if self.scaler is None else self.scaler.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the GradScaler state written by `state_dict()`."""
        if self.scaler is not None:
            self.scaler.load_state_dict(state_dict)


def _amp_message(precision: str) -> str:
    return f"Using {'16bit' if precision == '16-mixed' else 'bfloat16'} Automatic Mixed Precision (AMP)"


class MixedPrecision(_AutocastPrecision):
    """ "16-mixed" / "bf16-mixed": fp32 weights, `torch.autocast` in forward; fp16 also scales the loss (GradScaler).

    Args:
        precision: "16-mixed" (float16, with loss scaling) or "bf16-mixed" (bfloat16).
        device: the device type for `torch.autocast` ("cuda", "cpu", "mps").
        scaler: the `torch.amp.GradScaler` for "16-mixed" (default: a new one for `device`).

    Raises:
        ValueError: another precision.
        MisconfigurationException: a scaler with "bf16-mixed", which does not scale.
    """

    def __init__(
        self, precision: Literal["16-mixed", "bf16-mixed"], device: str, scaler: torch.amp.GradScaler | None = None
    ) -> None:
        if precision not in ("16-mixed", "bf16-mixed"):
            raise ValueError(
                f"`Passed `{type(self).__name__}(precision={precision!r})`."
                " Precision must be '16-mixed' or 'bf16-mixed'."
            )
        if scaler is not None and precision == "bf16-mixed":
            raise ConfigurationValueError(f"`precision='bf16-mixed'` does not use a scaler, found {scaler}.")
        super().__init__()
        self.precision = precision
        self.device = device
        self.autocast_dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float16
        # bf16 has fp32's exponent range, so only fp16 needs loss scaling to keep small gradients from underflowing.
        if scaler is None and precision == "16-mixed":
            scaler = torch.amp.GradScaler(device)
        self.scaler = scaler
        self.amp_message = _amp_message(precision)

    def convert_forward_input(self, data: Any) -> Any:
        """Floating arguments of a Fabric-wrapped forward in the autocast dtype (Lightning Fabric's rule)."""
        return cast_floats(self.convert_input(data), self.autocast_dtype or torch.get_default_dtype())


_FSDP_PRECISIONS = ("32-true", "16-true", "bf16-true", "16-mixed", "bf16-mixed")


class FSDPPrecision(_AutocastPrecision):
    """The precision of a sharded (FSDP) run: "*-true" trains in that dtype (as `HalfPrecision`), "*-mixed" autocasts
    (as `MixedPrecision`, with a GradScaler for "16-mixed"). fulgor's FSDP strategy selects it, as Lightning does.

    Args:
        precision: "32-true", "16-true", "bf16-true", "16-mixed" or "bf16-mixed".
        scaler: the GradScaler for "16-mixed" (default: a new `ShardedGradScaler`).
        device: the device type for `torch.autocast` (fulgor runs FSDP on CPU too); default "cuda" when CUDA is
            available, else "cpu".

    Raises:
        ValueError: another precision, or a scaler with a precision other than "16-mixed".
    """

    def __init__(
        self,
        precision: Literal["32-true", "16-true", "bf16-true", "16-mixed", "bf16-mixed"],
        scaler: torch.amp.GradScaler | None = None,
        device: str | None = None,
    ) -> None:
        if precision not in _FSDP_PRECISIONS:
            raise ValueError(
                f"`precision={precision!r})` is not supported in FSDP. `precision` must be one of: {_FSDP_PRECISIONS}."
            )
        if scaler is not None and precision != "16-mixed":
            raise ValueError(f"`precision={precision!r}` does not use a scaler, found {scaler}.")
        self.precision = precision
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if precision in ("16-true", "bf16-true"):
            self._dtype = torch.bfloat16 if precision == "bf16-true" else torch.float16
        super().__init__()
        if precision.endswith("mixed"):
            self.autocast_dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float16
            self.amp_message = _amp_message(precision)
        self.scaler = sharded_scaler(self.device) if scaler is None and precision == "16-mixed" else scaler

    @property
    def mixed_precision_config(self) -> Any:
        """torch's FSDP `MixedPrecision` in the precision's dtype, as in Lightning (warns for "*-true"). fulgor's FSDP
        strategy applies it only when passed as `FSDPStrategy(mixed_precision=...)`; see docs/distributed.md."""
        return mixed_precision_config(self.precision)

    def backward(self, tensor: Tensor, model: nn.Module | None, *args: Any, **kwargs: Any) -> None:
        """Fabric's `backward(tensor, model, *args)`: `tensor.backward(*args)` on the scaled tensor; Lightning's
        Trainer form `backward(tensor, model, optimizer, *args)` calls `model.backward(scaled, *args)` instead."""
        trainer_form = args and (args[0] is None or isinstance(args[0], Optimizer))
        if trainer_form and callable(getattr(model, "backward", None)):
            model.backward(self.scale_loss(tensor), *args[1:], **kwargs)  # type: ignore[union-attr,operator]
            return
        super().backward(tensor, model, *args, **kwargs)

    def optimizer_step(self, optimizer: Optimizer, *args: Any, **kwargs: Any) -> Any:
        """Step (through the scaler for "16-mixed"). Accepts Fabric's `(optimizer, **kwargs)`, fulgor's `(optimizer,
        closure)` and Lightning's Trainer form `(optimizer, model, closure, **kwargs)`."""
        closure = args[-1] if args else kwargs.pop("closure", None)
        return super().optimizer_step(optimizer, closure, **kwargs)
