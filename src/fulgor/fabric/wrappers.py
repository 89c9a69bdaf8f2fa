"""What `Fabric.setup*` returns: a module whose forward runs under the precision (through the strategy's wrapper), an
optimizer whose step goes through the precision, and a dataloader that moves batches and sets the sampler epoch."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DataParallel, DistributedDataParallel
from torch.optim import Optimizer
from torch.utils.data import DataLoader

from fulgor.data.conversion import map_leaves
from fulgor.data.transfer import move_data_to_device
from fulgor.device_dtype import DeviceDtypeModuleMixin
from fulgor.precision import Precision
from fulgor.strategies.ddp import _StepRouter
from fulgor.strategies.strategy import Strategy
from fulgor.type_aliases import Optimizable

__all__ = [
    "FABRIC_BACKWARD",
    "_FabricDataLoader",
    "_FabricModule",
    "_FabricOptimizer",
    "is_wrapped",
    "requires_fabric_backward",
    "unwrap_objects",
]

# The LightningModule step methods that go through the strategy's wrapper by default (as `mark_forward_method`).
_STEP_METHODS = ("training_step", "validation_step", "test_step", "predict_step")


class _BackwardState:
    """Whether `Fabric.backward` is running (plain `loss.backward()` is refused where the precision needs Fabric's)."""

    active = False


FABRIC_BACKWARD = _BackwardState()


def requires_fabric_backward(precision: Precision) -> bool:
    """Whether the precision changes backward (loss scaling, hooks): then `loss.backward()` would silently be wrong."""
    kind = type(precision)
    return any(
        getattr(kind, name) is not getattr(Precision, name)
        for name in ("scale_loss", "backward", "pre_backward", "post_backward")
    )


def _refuse_plain_backward(grad: Tensor) -> Tensor:
    if not FABRIC_BACKWARD.active:
        raise RuntimeError(
            "The current strategy and precision selection requires you to call `fabric.backward(loss)`"
            " instead of `loss.backward()`."
        )
    return grad


def _changes_forward_context(precision: Precision) -> bool:
    """Whether the precision's forward context does anything (autocast, a default dtype, an override)."""
    return precision.changes_compute or type(precision).forward_context is not Precision.forward_context


def _routes_by_name(forward_module: nn.Module) -> bool:
    """fulgor's DDP and FSDP wrap a router whose forward takes the method name first (see strategies/ddp.py)."""
    return isinstance(forward_module, (DistributedDataParallel, _StepRouter))


class _FabricOptimizer:
    """An optimizer whose `step` goes through the strategy (`strategy.optimizer_step`: the precision's loss-scaler
    step for "16-mixed") and whose `state_dict` is the strategy's (`strategy.get_optimizer_state`); every other
    attribute is the wrapped optimizer's, and `isinstance(wrapped, type(optimizer))` holds.

    Args:
        optimizer: the torch optimizer.
        strategy: the strategy that steps it.
        callbacks: objects whose `on_after_optimizer_step(strategy=..., optimizer=...)` runs after each step.
    """

    def __init__(self, optimizer: Optimizer, strategy: Strategy, callbacks: list[Any] | None = None) -> None:
        self._optimizer = optimizer
        self._strategy = strategy
        self._callbacks = callbacks or []
        # What `step` steps: the optimizer, or a strategy's model that steps itself (an engine with `step`, as
        # DeepSpeed's). Fixed once set up, so the structural isinstance check does not run every step.
        model = getattr(strategy, "model", None)
        self._step_target: Any = model if isinstance(model, Optimizable) else optimizer
        # A class per optimizer type, so that isinstance checks against the torch optimizer class still pass.
        kind = optimizer.__class__  # not type(): a Mock(spec=SGD) reports SGD here
        self.__class__ = type("Fabric" + kind.__name__, (type(self), kind), {})
        # Called every step: bound to the optimizer directly, not through the class (whose method would read every
        # attribute through __getattr__).
        self.zero_grad = optimizer.zero_grad

    @property
    def optimizer(self) -> Optimizer:
        """The wrapped torch optimizer."""
        return self._optimizer

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state as the strategy collects it (`strategy.get_optimizer_state`)."""
        state: dict[str, Any] = self._strategy.get_optimizer_state(self._optimizer)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load into the wrapped optimizer."""
        self._optimizer.load_state_dict(state_dict)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Step through the strategy (`strategy.optimizer_step`); returns what `optimizer.step` returned."""
        target = self._step_target
        strategy = self._strategy
        output = (
            strategy.optimizer_step(target) if closure is None else strategy.optimizer_step(target, closure=closure)
        )
        for callback in self._callbacks:
            hook = getattr(callback, "on_after_optimizer_step", None)
            if callable(hook):
                hook(strategy=strategy, optimizer=target)
        return output

    def __getattr__(self, item: str) -> Any:
        return getattr(self._optimizer, item)


class _FabricModule(DeviceDtypeModuleMixin):
    """A module whose forward converts its inputs, runs under the precision's context and converts its outputs back.

    Attribute reads and writes the wrapper does not have go to the original module; `state_dict`/`load_state_dict`
    are the original module's (no wrapper prefix), so checkpoints have the plain keys.

    Args:
        forward_module: what forward calls: the strategy's wrapper (DDP) or the module itself.
        strategy: the strategy (its precision plugin converts and autocasts).
        original_module: the module as the user passed it (default: `forward_module`).
    """

    def __init__(self, forward_module: nn.Module, strategy: Strategy, original_module: nn.Module | None = None) -> None:
        super().__init__()
        self._forward_module = forward_module
        self._original_module = forward_module if original_module is None else original_module
        self._strategy = strategy
        self._forward_methods = set(_STEP_METHODS)
        # Fixed once set up (Fabric never swaps a strategy's precision), so forward does not look them up every call.
        precision = strategy.precision
        self._fabric_precision = precision
        self._converts = isinstance(precision, Precision) and precision.converts_forward
        self._guards_backward = isinstance(precision, Precision) and requires_fabric_backward(precision)
        self._forward_takes_name = _routes_by_name(forward_module)
        # "32-true" autocasts nothing: its forward context is not entered (as the Trainer's loop skips it).
        self._enters_context = not isinstance(precision, Precision) or _changes_forward_context(precision)
        # Nothing to convert, no context, a wrapper called with forward's own arguments: forward is just that call.
        self._plain_forward = not (self._converts or self._enters_context or self._forward_takes_name)
        self._fabric_module_initialized = True

    @property
    def module(self) -> nn.Module:
        """The original module."""
        return self._original_module

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The module's forward under the precision (inputs converted, outputs back in the default dtype)."""
        # Per-step path: plain reads from __dict__ (a submodule read would go through __getattr__ twice).
        state = self.__dict__
        if state["_plain_forward"]:
            return state["_modules"]["_forward_module"](*args, **kwargs)
        return self._call_through("forward", args, kwargs)

    def _call_through(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        state = self.__dict__
        precision = state["_fabric_precision"]
        converts = state["_converts"]
        if converts:
            args, kwargs = precision.convert_forward_input((args, kwargs))
        if state["_enters_context"]:
            with precision.forward_context():
                output = self._dispatch(name, args, kwargs)
        else:
            output = self._dispatch(name, args, kwargs)
        if not converts:
            return output
        output = precision.convert_output(output)
        if state["_guards_backward"]:
            map_leaves(output, _guard_backward)
        return output

    def _dispatch(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        forward_module = self.__dict__["_modules"]["_forward_module"]
        if self.__dict__["_forward_takes_name"]:
            return forward_module(name, *args, **kwargs)
        if name == "forward":
            return forward_module(*args, **kwargs)
        return self._call_method_through_wrapper(forward_module, name, args, kwargs)

    def _call_method_through_wrapper(
        self, forward_module: nn.Module, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Call the original module's `name` through a strategy wrapper that only knows `forward` (so its hooks run):
        for this one call the original's forward is that method, and it is restored before the method runs."""
        original = self._original_module
        if isinstance(forward_module, DataParallel):  # its replicas copy the patched forward: call the method directly
            return getattr(original, name)(*args, **kwargs)
        state = original.__dict__
        had_own, own = "forward" in state, state.get("forward")

        def restore() -> None:
            if had_own:
                state["forward"] = own
            else:
                state.pop("forward", None)

        def call_method_once(*inner_args: Any, **inner_kwargs: Any) -> Any:
            restore()  # the method may call the module itself: that must run the real forward
            return getattr(original, name)(*inner_args, **inner_kwargs)  # a missing method raises, naming it

        state["forward"] = call_method_once
        try:
            return forward_module(*args, **kwargs)
        finally:
            restore()

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        """The original module's state dict (no wrapper prefix)."""
        return self._original_module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, **kwargs: Any) -> Any:  # type: ignore[override]
        """Load into the original module."""
        return self._original_module.load_state_dict(state_dict, strict=strict, **kwargs)

    def mark_forward_method(self, method: Any) -> None:
        """Make calls to `method` (a bound method or its name) go through the strategy's wrapper, like forward.

        Raises:
            TypeError: neither a method nor a string.
            ValueError: `forward` itself.
            AttributeError: the module has no such method.
        """
        if not isinstance(method, (str, type(self.forward))):
            raise TypeError(f"Expected a method or a string, but got: {type(method).__name__}")
        name = method if isinstance(method, str) else method.__name__
        if name == "forward":
            raise ValueError("You cannot mark the forward method itself as a forward method.")
        if not inspect.ismethod(getattr(self._original_module, name, None)):
            raise AttributeError(
                f"You marked '{name}' as a forward method, but `{type(self._original_module).__name__}.{name}` does not"
                " exist or is not a method."
            )
        self._forward_methods.add(name)

    def __getattr__(self, item: str) -> Any:
        if item in self.__dict__.get("_forward_methods", ()) and self._is_wrapped_by_strategy():
            return self._redirected(item)
        try:
            return super().__getattr__(item)
        except AttributeError:
            value = getattr(super().__getattr__("_original_module"), item)
        if inspect.ismethod(value) and self._is_wrapped_by_strategy():
            return self._refusing_model_calls(value, item)
        return value

    def _redirected(self, name: str) -> Callable[..., Any]:
        """A forward method (`training_step`, ...) as a function that calls it through the strategy's wrapper."""

        def call_forward_module(*args: Any, **kwargs: Any) -> Any:
            return self._call_through(name, args, kwargs)

        return call_forward_module

    def _refusing_model_calls(self, method: Callable[..., Any], name: str) -> Callable[..., Any]:
        """`method`, raising when it runs the model (or a submodule) past the strategy's wrapper: DDP would miss
        those computations (their gradients would not be synchronised)."""
        original = self._original_module

        @functools.wraps(method)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            ran: list[bool] = []
            handles = [module.register_forward_hook(lambda *_: ran.append(True)) for module in original.modules()]
            try:
                output = method(*args, **kwargs)
            finally:
                for handle in handles:
                    handle.remove()
            if ran:
                raise RuntimeError(
                    f"You are calling the method `{type(original).__name__}.{name}()` from outside the model. To avoid"
                    " issues with the currently selected strategy, explicitly mark it as a forward method with"
                    f" `fabric_model.mark_forward_method({name!r})` after `fabric.setup()`."
                )
            return output

        return guarded

    def _is_wrapped_by_strategy(self) -> bool:
        modules = self.__dict__["_modules"]
        return modules["_forward_module"] is not modules["_original_module"]

    def __setattr__(self, name: str, value: Any) -> None:
        if not self.__dict__.get("_fabric_module_initialized", False):
            super().__setattr__(name, value)
            return
        original = self._original_module
        on_original = hasattr(original, name)
        on_wrapper = name in dir(self)
        if on_original or not on_wrapper:
            setattr(original, name, value)
        if on_wrapper:
            super().__setattr__(name, value)


def _guard_backward(value: Any) -> Any:
    if isinstance(value, Tensor) and value.requires_grad:
        value.register_hook(_refuse_plain_backward)  # type: ignore[no-untyped-call]
    return value


class _FabricDataLoader:
    """A dataloader that moves each batch to `device` (when given) and sets a distributed sampler's epoch at each
    new iteration, so that shuffling differs between epochs. Other attributes are the dataloader's.

    Args:
        dataloader: the torch DataLoader.
        device: where batches go; None leaves them where the loader puts them.
    """

    def __init__(self, dataloader: DataLoader[Any], device: torch.device | None = None) -> None:
        self.__dict__.update(dataloader.__dict__)
        self._dataloader = dataloader
        self._device = device
        self._num_iter_calls = 0

    @property
    def device(self) -> torch.device | None:
        """Where batches are moved (None: not moved)."""
        return self._device

    def __len__(self) -> int:
        return len(self._dataloader)

    def __iter__(self) -> Iterator[Any]:
        # Without a new epoch a DistributedSampler repeats its order; each sampler is told once.
        batch_sampler = getattr(self._dataloader, "batch_sampler", None)
        candidates = (
            getattr(self._dataloader, "sampler", None),
            batch_sampler,
            getattr(batch_sampler, "sampler", None),
        )
        told: set[int] = set()
        for sampler in candidates:
            if callable(getattr(sampler, "set_epoch", None)) and id(sampler) not in told:
                told.add(id(sampler))
                sampler.set_epoch(self._num_iter_calls)  # type: ignore[union-attr]
        self._num_iter_calls += 1
        device = self._device
        if device is None:
            yield from self._dataloader
            return
        for batch in self._dataloader:
            yield batch if _already_on(batch, device) else move_data_to_device(batch, device)


def _already_on(batch: Any, device: torch.device) -> bool:
    """Whether `batch` is a plain tuple/list of plain tensors on `device` (the common case, checked without walking
    the collection): moving it would only rebuild the container."""
    if type(batch) is not tuple and type(batch) is not list:
        return False
    for item in batch:  # noqa: SIM110 (a loop, not all(<generator>): no generator frame per batch)
        if type(item) is not Tensor or item.device != device:
            return False
    return True


def is_wrapped(obj: object) -> bool:
    """Whether `obj` was set up by Fabric (a Fabric module, optimizer or dataloader, also under `torch.compile`)."""
    inner = getattr(obj, "_orig_mod", obj)
    return isinstance(inner, (_FabricModule, _FabricOptimizer, _FabricDataLoader))


def _unwrap(obj: Any) -> Any:
    inner = getattr(obj, "_orig_mod", obj) if isinstance(obj, nn.Module) else obj
    if isinstance(inner, _FabricModule):
        return inner._original_module
    if isinstance(inner, _FabricOptimizer):
        return inner.optimizer
    if isinstance(inner, _FabricDataLoader):
        return inner._dataloader
    return obj


def unwrap_objects(state: Any) -> Any:
    """`state` (an object, or dicts, lists and tuples of them at any depth) with Fabric's wrappers replaced by what they
    wrap (new containers; everything else is kept as it is)."""
    if isinstance(state, dict):
        return {key: unwrap_objects(value) for key, value in state.items()}
    if isinstance(state, (list, tuple)):
        items = [unwrap_objects(value) for value in state]
        return type(state)(*items) if hasattr(state, "_fields") else type(state)(items)  # a namedtuple takes fields
    return _unwrap(state)
