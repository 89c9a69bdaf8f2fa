"""LightningModule: the user's model with every Lightning 2.6.6 hook and its default, `self.log`, and the
handles a step needs (trainer, device, optimizers, freeze/unfreeze). Hook order lives in `fulgor.hooks`."""

from __future__ import annotations

import builtins
import inspect
import numbers
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from typing_extensions import Self

from fulgor import hparams as _hparams
from fulgor.data.transfer import move_data_to_device
from fulgor.errors import MisconfigurationException
from fulgor.rank import rank_zero_warn

if TYPE_CHECKING:
    from fulgor.callbacks.callback import Callback
    from fulgor.loggers.logger import Logger
    from fulgor.optimizer import LightningOptimizer
    from fulgor.trainer.trainer import Trainer

STEP_OUTPUT = Tensor | Mapping[str, Any] | None


class _class_only(classmethod):  # type: ignore[type-arg]
    """A classmethod that refuses to run on an instance (its result would be silently discarded)."""

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is not None:
            raise TypeError(
                f"The classmethod `{type(instance).__name__}.{self.__func__.__name__}` cannot be called on an"
                " instance. Please call it on the class type and make sure the return value is used."
            )
        return super().__get__(instance, owner)


class LightningModule(nn.Module):
    """A `torch.nn.Module` that also says how to train, validate, test and predict with it.

    Override ``training_step`` and ``configure_optimizers`` at least; every other hook is optional, and a hook you
    do not override costs nothing per step.
    """

    CHECKPOINT_HYPER_PARAMS_KEY = "hyper_parameters"
    CHECKPOINT_HYPER_PARAMS_NAME = "hparams_name"
    CHECKPOINT_HYPER_PARAMS_TYPE = "hparams_type"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._trainer: Trainer | None = None
        self._current_fx_name: str | None = None
        self._automatic_optimization = True
        self._strict_loading: bool | None = None
        self._example_input_array: Any = None
        self._device = torch.device("cpu")
        self._dtype: torch.dtype = torch.get_default_dtype()
        self.prepare_data_per_node = True
        self.allow_zero_length_dataloader_with_multiple_devices = False

    # ------------------------------------------------------------------ properties
    @property
    def trainer(self) -> Trainer:
        """The Trainer running this module (RuntimeError when it is not attached to one)."""
        if self._trainer is None:
            raise RuntimeError(f"{self.__class__.__qualname__} is not attached to a `Trainer`.")
        return self._trainer

    @trainer.setter
    def trainer(self, trainer: Trainer | None) -> None:
        self._trainer = trainer

    @property
    def device(self) -> torch.device:
        """The device the module lives on; follows `.to()`, `.cuda()` and `.cpu()` (buffers included)."""
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        """The floating-point dtype of the module; follows `.to(dtype)`, `.double()`, `.half()`..."""
        return self._dtype

    @dtype.setter
    def dtype(self, value: torch.dtype) -> None:
        self._dtype = value

    @property
    def example_input_array(self) -> Any:
        """An example input; the model summary uses it to show input and output sizes."""
        return self._example_input_array

    @example_input_array.setter
    def example_input_array(self, example: Any) -> None:
        self._example_input_array = example

    @property
    def current_epoch(self) -> int:
        """The trainer's current epoch (0 without a trainer)."""
        return self._trainer.current_epoch if self._trainer is not None else 0

    @property
    def global_step(self) -> int:
        """Optimizer steps taken so far (0 without a trainer)."""
        return self._trainer.global_step if self._trainer is not None else 0

    @property
    def global_rank(self) -> int:
        """The process's rank across all nodes (0 without a trainer)."""
        return self._trainer.global_rank if self._trainer is not None else 0

    @property
    def local_rank(self) -> int:
        """The process's rank on its node (0 without a trainer)."""
        return self._trainer.local_rank if self._trainer is not None else 0

    @property
    def on_gpu(self) -> bool:
        """True when the module is on a CUDA device."""
        return self.device.type == "cuda"

    @property
    def automatic_optimization(self) -> bool:
        """If False, `training_step` drives the optimizers itself (manual optimization)."""
        return self._automatic_optimization

    @automatic_optimization.setter
    def automatic_optimization(self, value: bool) -> None:
        self._automatic_optimization = value

    @property
    def strict_loading(self) -> bool:
        """Whether `load_state_dict` is strict when loading checkpoints."""
        return True if self._strict_loading is None else self._strict_loading

    @strict_loading.setter
    def strict_loading(self, value: bool) -> None:
        self._strict_loading = value

    @property
    def logger(self) -> Logger | None:
        """The trainer's first logger, if any."""
        return self._trainer.logger if self._trainer is not None else None

    @property
    def loggers(self) -> list[Logger]:
        """All the trainer's loggers."""
        return self._trainer.loggers if self._trainer is not None else []

    @property
    def hparams(self) -> _hparams.AttributeDict:
        """Hyperparameters collected by `save_hyperparameters` (mutable)."""
        return _hparams.hparams_of(self)

    @property
    def hparams_initial(self) -> _hparams.AttributeDict:
        """A frozen copy of the hyperparameters as they were saved; this is what loggers receive."""
        return _hparams.hparams_initial_of(self)

    def save_hyperparameters(
        self,
        *args: Any,
        ignore: Sequence[str] | str | None = None,
        frame: Any = None,
        logger: bool = True,
    ) -> None:
        """Save the `__init__` arguments to `self.hparams` and to checkpoints (see the user guide)."""
        frame = frame if frame is not None else inspect.currentframe().f_back  # type: ignore[union-attr]
        _hparams.save_hyperparameters(self, *args, ignore=ignore, frame=frame, logger=logger)

    # ------------------------------------------------------------------ device and dtype tracking
    def to(self, *args: Any, **kwargs: Any) -> Self:
        """Move and/or cast the module, like `torch.nn.Module.to`, keeping `device` and `dtype` up to date."""
        device, dtype = torch._C._nn._parse_to(*args, **kwargs)[:2]
        self._track(device=device, dtype=dtype)
        return super().to(*args, **kwargs)

    def cuda(self, device: torch.device | int | None = None) -> Self:
        """Move to a CUDA device (the current one when `device` is None)."""
        if device is None:
            device = torch.device("cuda", torch.cuda.current_device())
        elif isinstance(device, int):
            device = torch.device("cuda", index=device)
        self._track(device=device)
        return super().cuda(device=device)

    def cpu(self) -> Self:
        """Move to the CPU."""
        self._track(device=torch.device("cpu"))
        return super().cpu()

    def type(self, dst_type: str | torch.dtype) -> Self:
        """Cast all parameters and buffers to `dst_type`."""
        self._track(dtype=dst_type if isinstance(dst_type, torch.dtype) else None)
        return super().type(dst_type)

    def float(self) -> Self:
        """Cast floating-point parameters and buffers to float32."""
        self._track(dtype=torch.float)
        return super().float()

    def double(self) -> Self:
        """Cast floating-point parameters and buffers to float64."""
        self._track(dtype=torch.double)
        return super().double()

    def half(self) -> Self:
        """Cast floating-point parameters and buffers to float16."""
        self._track(dtype=torch.half)
        return super().half()

    def bfloat16(self) -> Self:
        """Cast floating-point parameters and buffers to bfloat16."""
        self._track(dtype=torch.bfloat16)
        return super().bfloat16()

    def _track(self, device: torch.device | None = None, dtype: torch.dtype | None = None) -> None:
        # Nested LightningModules move with their parent, whose `.to()` never calls theirs: update them all here.
        for module in self.modules():
            if isinstance(module, LightningModule):
                if device is not None:
                    module._device = _with_index(torch.device(device))
                if dtype is not None and dtype.is_floating_point:
                    module._dtype = dtype

    # ------------------------------------------------------------------ logging
    def print(self, *args: Any, **kwargs: Any) -> None:
        """`print` only on global rank 0 (so DDP jobs do not print the same line N times)."""
        if self._trainer is None or self._trainer.is_global_zero:
            print(*args, **kwargs)  # noqa: T201

    def log(
        self,
        name: str,
        value: Any,
        prog_bar: bool = False,
        logger: bool | None = None,
        on_step: bool | None = None,
        on_epoch: bool | None = None,
        reduce_fx: str | Callable[..., Any] = "mean",
        enable_graph: bool = False,
        sync_dist: bool = False,
        sync_dist_group: Any | None = None,
        add_dataloader_idx: bool = True,
        batch_size: int | None = None,
        metric_attribute: str | None = None,
        rank_zero_only: bool = False,
    ) -> None:
        """Log a scalar (number, one-element tensor or torchmetrics `Metric`) under `name`.

        Where the value goes (progress bar, loggers, `trainer.callback_metrics`) and whether it is reduced over
        the epoch follow Lightning's rules: see the logging page of the user guide. The value is stored on its
        device; nothing is synchronised with the host until a logger or the progress bar needs it.
        """
        _check_loggable(name, value)
        trainer = self._trainer
        if trainer is None:
            rank_zero_warn(
                "You are trying to `self.log()` but the `self.trainer` reference is not registered on the model yet."
                " This is most likely because the model hasn't been passed to the `Trainer`"
            )
            return
        if trainer.barebones:
            rank_zero_warn(
                "You are trying to `self.log()` but `Trainer(barebones=True)` is configured."
                " Logging can impact raw speed so it is disabled under this setting."
            )
            return
        results = trainer._results
        if results is None:
            raise MisconfigurationException(
                "You are trying to `self.log()` but the loop's result collection is not registered"
                " yet. This is most likely because you are trying to log in a `predict` hook,"
                " but it doesn't support logging"
            )
        if self._current_fx_name is None:
            raise MisconfigurationException(
                "You are trying to `self.log()` but it is not managed by the `Trainer` control flow"
            )
        if logger and trainer.logger is None:
            rank_zero_warn(
                f"You called `self.log({name!r}, ..., logger=True)` but have no logger configured. You can enable one"
                " by doing `Trainer(logger=ALogger(...))`"
            )
        options = (
            prog_bar, True if logger is None else logger, on_step, on_epoch, reduce_fx, enable_graph,
            add_dataloader_idx, sync_dist, rank_zero_only,
        )  # fmt: skip
        results.log(self._current_fx_name, name, value, options, batch_size)

    def log_dict(
        self,
        dictionary: Mapping[str, Any],
        prog_bar: bool = False,
        logger: bool | None = None,
        on_step: bool | None = None,
        on_epoch: bool | None = None,
        reduce_fx: str | Callable[..., Any] = "mean",
        enable_graph: bool = False,
        sync_dist: bool = False,
        sync_dist_group: Any | None = None,
        add_dataloader_idx: bool = True,
        batch_size: int | None = None,
        rank_zero_only: bool = False,
    ) -> None:
        """Log each key/value of `dictionary` with `self.log` and the same options."""
        items = dictionary.items()  # a Mapping or a torchmetrics MetricCollection
        for name, value in items:
            self.log(
                name,
                value,
                prog_bar=prog_bar,
                logger=logger,
                on_step=on_step,
                on_epoch=on_epoch,
                reduce_fx=reduce_fx,
                enable_graph=enable_graph,
                sync_dist=sync_dist,
                sync_dist_group=sync_dist_group,
                add_dataloader_idx=add_dataloader_idx,
                batch_size=batch_size,
                rank_zero_only=rank_zero_only,
            )

    def all_gather(self, data: Any, group: Any | None = None, sync_grads: bool = False) -> Any:
        """Gather tensors from every process (stacked on a new first dimension); identity on one process."""
        return self.trainer.strategy.all_gather(data, group=group, sync_grads=sync_grads)

    # ------------------------------------------------------------------ steps
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Same as `torch.nn.Module.forward`; define it to use the module as a function (`self(x)`)."""
        return super().forward(*args, **kwargs)

    def training_step(self, *args: Any, **kwargs: Any) -> STEP_OUTPUT:
        """Compute and return the training loss (a tensor, a dict with a ``"loss"`` key, or None to skip)."""
        rank_zero_warn("`training_step` must be implemented to be used with the Lightning Trainer")
        return None

    def validation_step(self, *args: Any, **kwargs: Any) -> STEP_OUTPUT:
        """One validation batch; log metrics with `self.log`. What it returns reaches `on_validation_batch_end`."""
        return None

    def test_step(self, *args: Any, **kwargs: Any) -> STEP_OUTPUT:
        """One test batch; log metrics with `self.log`. What it returns reaches `on_test_batch_end`."""
        return None

    def predict_step(self, *args: Any, **kwargs: Any) -> Any:
        """One prediction batch; by default ``self(batch)``. The results are collected by `trainer.predict`."""
        batch = kwargs.get("batch", args[0])
        return self(batch)

    # ------------------------------------------------------------------ configuration hooks
    def configure_callbacks(self) -> Sequence[Callback] | Callback:
        """Callbacks this model needs; they replace Trainer callbacks of the same type."""
        return []

    def configure_optimizers(self) -> Any:
        """Return the optimizer(s) and optional LR scheduler(s): see the optimization page of the user guide."""
        rank_zero_warn("`configure_optimizers` must be implemented to be used with the Lightning Trainer")
        return None

    def configure_model(self) -> None:
        """Create layers here to build them directly on the target device (called only when overridden)."""

    def configure_sharded_model(self) -> None:
        """Deprecated name of `configure_model`."""

    # ------------------------------------------------------------------ optimization
    def optimizers(self, use_pl_optimizer: bool = True) -> Any:
        """The optimizer(s) from `configure_optimizers`: one object, or a list when there are several."""
        trainer = self.trainer
        opts: list[Any] = list(trainer.strategy._lightning_optimizers if use_pl_optimizer else trainer.optimizers)
        return opts[0] if len(opts) == 1 else opts

    def lr_schedulers(self) -> Any:
        """The LR scheduler(s) from `configure_optimizers`: None, one object, or a list."""
        configs = self.trainer.lr_scheduler_configs
        if not configs:
            return None
        schedulers = [config.scheduler for config in configs]
        return schedulers[0] if len(schedulers) == 1 else schedulers

    def manual_backward(self, loss: Tensor, *args: Any, **kwargs: Any) -> None:
        """Use instead of `loss.backward()` in manual optimization (applies precision scaling and the hooks)."""
        from fulgor.trainer.optimization import run_backward

        if self.automatic_optimization:
            raise MisconfigurationException(
                "to use manual_backward, please disable automatic optimization:"
                " set model property `automatic_optimization` as False"
            )
        run_backward(self.trainer, loss, *args, **kwargs)

    def backward(self, loss: Tensor, *args: Any, **kwargs: Any) -> None:
        """Compute gradients; by default ``loss.backward()``."""
        loss.backward(*args, **kwargs)  # type: ignore[no-untyped-call]

    def toggle_optimizer(self, optimizer: Optimizer | LightningOptimizer) -> None:
        """Freeze every parameter that `optimizer` does not own, remembering the previous flags."""
        owned = {id(p) for group in optimizer.param_groups for p in group["params"]}
        state: dict[int, bool] = {}
        for opt in self.trainer.optimizers:
            for group in opt.param_groups:
                for param in group["params"]:
                    if id(param) in state:
                        continue
                    state[id(param)] = param.requires_grad
                    if id(param) not in owned:
                        param.requires_grad = False
        self._param_requires_grad_state = state

    def untoggle_optimizer(self, optimizer: Optimizer | LightningOptimizer) -> None:
        """Restore the `requires_grad` flags saved by `toggle_optimizer`."""
        state: dict[int, bool] = getattr(self, "_param_requires_grad_state", {})
        for opt in self.trainer.optimizers:
            if opt is optimizer or opt is getattr(optimizer, "optimizer", None):
                continue
            for group in opt.param_groups:
                for param in group["params"]:
                    if id(param) in state:
                        param.requires_grad = state[id(param)]
        self._param_requires_grad_state = {}

    @contextmanager
    def toggled_optimizer(self, optimizer: Optimizer | LightningOptimizer) -> Generator[None, None, None]:
        """``with self.toggled_optimizer(opt):`` toggles on entry and untoggles on exit."""
        self.toggle_optimizer(optimizer)
        try:
            yield
        finally:
            self.untoggle_optimizer(optimizer)

    def clip_gradients(
        self,
        optimizer: Optimizer,
        gradient_clip_val: builtins.float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip the gradients of `optimizer`'s parameters by norm (default) or by value."""
        from fulgor.trainer.optimization import clip_gradients

        clip_gradients(self.trainer, optimizer, gradient_clip_val, gradient_clip_algorithm)

    def configure_gradient_clipping(
        self,
        optimizer: Optimizer,
        gradient_clip_val: builtins.float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Called before each optimizer step with the Trainer's clipping flags; override to customise."""
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def lr_scheduler_step(self, scheduler: Any, metric: Any | None) -> None:
        """Step one LR scheduler; override for schedulers that do not follow torch's API."""
        if metric is None:
            scheduler.step()
        else:
            scheduler.step(metric)

    def optimizer_step(
        self,
        epoch: int,
        batch_idx: int,
        optimizer: Optimizer | LightningOptimizer,
        optimizer_closure: Callable[[], Any] | None = None,
    ) -> None:
        """Step the optimizer; the closure runs `training_step`, `zero_grad` and `backward` and must be called."""
        optimizer.step(closure=optimizer_closure)

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: Optimizer) -> None:
        """Reset the gradients; by default ``optimizer.zero_grad()``."""
        optimizer.zero_grad()

    def freeze(self) -> Self:
        """Turn off gradients for every parameter and put the module in eval mode."""
        for param in self.parameters():
            param.requires_grad = False
        return self.eval()

    def unfreeze(self) -> Self:
        """Turn gradients back on for every parameter and put the module in training mode."""
        for param in self.parameters():
            param.requires_grad = True
        return self.train()

    # ------------------------------------------------------------------ notification hooks (no-op defaults)
    def on_fit_start(self) -> None:
        """Called at the very beginning of fit."""

    def on_fit_end(self) -> None:
        """Called at the very end of fit."""

    def on_train_start(self) -> None:
        """Called at the beginning of training after the sanity check."""

    def on_train_end(self) -> None:
        """Called at the end of training before the logger experiment is closed."""

    def on_validation_start(self) -> None:
        """Called at the beginning of validation."""

    def on_validation_end(self) -> None:
        """Called at the end of validation."""

    def on_test_start(self) -> None:
        """Called at the beginning of testing."""

    def on_test_end(self) -> None:
        """Called at the end of testing."""

    def on_predict_start(self) -> None:
        """Called at the beginning of predicting."""

    def on_predict_end(self) -> None:
        """Called at the end of predicting."""

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> int | None:
        """Called before the training batch; return -1 to skip the rest of the epoch."""
        return None

    def on_train_batch_end(self, outputs: STEP_OUTPUT, batch: Any, batch_idx: int) -> None:
        """Called after the training batch with what `training_step` returned (loss divided for accumulation)."""

    def on_validation_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Called before a validation batch."""

    def on_validation_batch_end(
        self, outputs: STEP_OUTPUT, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """Called after a validation batch with what `validation_step` returned."""

    def on_test_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Called before a test batch."""

    def on_test_batch_end(self, outputs: STEP_OUTPUT, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Called after a test batch with what `test_step` returned."""

    def on_predict_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Called before a predict batch."""

    def on_predict_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Called after a predict batch with what `predict_step` returned."""

    def on_validation_model_zero_grad(self) -> None:
        """Called before validation inside fit; releases the gradients."""
        self.zero_grad()

    def on_validation_model_eval(self) -> None:
        """Called when validation starts; puts the model in eval mode."""
        self._trainer_model().eval()

    def on_validation_model_train(self) -> None:
        """Called when validation ends (only if overridden; else each submodule's mode is restored)."""
        self._trainer_model().train()

    def on_test_model_eval(self) -> None:
        """Called when testing starts; puts the model in eval mode."""
        self._trainer_model().eval()

    def on_test_model_train(self) -> None:
        """Called when testing ends (only if overridden; else each submodule's mode is restored)."""
        self._trainer_model().train()

    def on_predict_model_eval(self) -> None:
        """Called when predicting starts; puts the model in eval mode."""
        self._trainer_model().eval()

    def on_train_epoch_start(self) -> None:
        """Called at the start of a training epoch."""

    def on_train_epoch_end(self) -> None:
        """Called at the end of a training epoch, after the epoch's validation."""

    def on_validation_epoch_start(self) -> None:
        """Called at the start of a validation epoch."""

    def on_validation_epoch_end(self) -> None:
        """Called at the end of a validation epoch."""

    def on_test_epoch_start(self) -> None:
        """Called at the start of a test epoch."""

    def on_test_epoch_end(self) -> None:
        """Called at the end of a test epoch."""

    def on_predict_epoch_start(self) -> None:
        """Called at the start of a predict epoch."""

    def on_predict_epoch_end(self) -> None:
        """Called at the end of a predict epoch."""

    def on_before_zero_grad(self, optimizer: Optimizer) -> None:
        """Called before `optimizer.zero_grad()`."""

    def on_before_backward(self, loss: Tensor) -> None:
        """Called before `loss.backward()`."""

    def on_after_backward(self) -> None:
        """Called after `loss.backward()` and before the optimizer step."""

    def on_before_optimizer_step(self, optimizer: Optimizer) -> None:
        """Called before `optimizer.step()`, after unscaling and before clipping."""

    def _trainer_model(self) -> nn.Module:
        model = self.trainer.model
        return self if model is None else model

    # ------------------------------------------------------------------ data hooks
    def prepare_data(self) -> None:
        """Download or prepare data once per node (or once in total): no state assignment here."""

    def setup(self, stage: str) -> None:
        """Called at the beginning of fit/validate/test/predict on every process."""

    def teardown(self, stage: str) -> None:
        """Called at the end of fit/validate/test/predict on every process."""

    def train_dataloader(self) -> Any:
        """The training data (a DataLoader or an iterable)."""
        raise MisconfigurationException("`train_dataloader` must be implemented to be used with the Lightning Trainer")

    def val_dataloader(self) -> Any:
        """The validation data (one DataLoader or several)."""
        raise MisconfigurationException("`val_dataloader` must be implemented to be used with the Lightning Trainer")

    def test_dataloader(self) -> Any:
        """The test data (one DataLoader or several)."""
        raise MisconfigurationException("`test_dataloader` must be implemented to be used with the Lightning Trainer")

    def predict_dataloader(self) -> Any:
        """The prediction data (one DataLoader or several)."""
        raise MisconfigurationException(
            "`predict_dataloader` must be implemented to be used with the Lightning Trainer"
        )

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Move a batch of any nesting to `device` (tensors and objects with `.to`)."""
        return move_data_to_device(batch, device)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Alter the batch before it is moved to the device."""
        return batch

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Alter the batch after it was moved to the device."""
        return batch

    # ------------------------------------------------------------------ checkpoint hooks
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add anything you need to the checkpoint dict before it is written."""

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Read what you added in `on_save_checkpoint`, before the weights are restored."""

    # ------------------------------------------------------------------ checkpoints
    @_class_only
    def load_from_checkpoint(
        cls,
        checkpoint_path: Any,
        map_location: Any = None,
        hparams_file: Any = None,
        strict: bool | None = None,
        weights_only: bool | None = None,
        **kwargs: Any,
    ) -> Self:
        """Build the module from a checkpoint's hyperparameters (overridable by `kwargs`) and load its weights."""
        from fulgor.checkpoint_loading import load_module_from_checkpoint

        # `cls` is the class (`_class_only` is a classmethod), which mypy cannot see through the decorator.
        module: Self = load_module_from_checkpoint(
            cast(Any, cls), checkpoint_path, map_location, hparams_file, strict, weights_only, **kwargs
        )
        return module


def _with_index(device: torch.device) -> torch.device:
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def _check_loggable(name: str, value: Any) -> None:
    """Reject values `self.log` cannot store, with Lightning's messages."""
    if isinstance(value, (Tensor, numbers.Number)) or hasattr(value, "compute"):
        return
    if isinstance(value, Mapping):
        raise ValueError(f"`self.log({name}, {value})` was called, but nested dictionaries cannot be logged")
    if isinstance(value, Iterable) and not isinstance(value, str):
        for item in value:
            _check_loggable(name, item)
        return
    raise ValueError(f"`self.log({name}, {value})` was called, but `{type(value).__name__}` values cannot be logged")


def is_overridden(name: str, obj: Any, parent: type = LightningModule) -> bool:
    """Whether `obj`'s class (or the instance itself) replaces `parent.name`."""
    if name in getattr(obj, "__dict__", {}):
        return True
    attr = getattr(type(obj), name, None)
    base = getattr(parent, name, None)
    if attr is None:
        return False
    if base is None:
        return True
    return getattr(attr, "__code__", attr) is not getattr(base, "__code__", base)
