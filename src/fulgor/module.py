"""LightningModule: the user's model with every Lightning 2.6.6 hook and its default, `self.log`, and the
handles a step needs (trainer, device, optimizers, freeze/unfreeze). Hook order lives in `fulgor.hooks`."""

from __future__ import annotations

import builtins
import weakref
from collections.abc import Callable, Generator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from torch import Tensor, nn
from torch.optim import Optimizer
from typing_extensions import Self

from fulgor.checkpoint_loading import class_only, load_module_from_checkpoint
from fulgor.device_dtype import DeviceDtypeModuleMixin
from fulgor.errors import MisconfigurationException
from fulgor.gradient_clipping import clip_algorithm, clip_value
from fulgor.hook_defaults import STEP_OUTPUT, CheckpointHooks, DataHooks, ModelHooks
from fulgor.hparams_mixin import HyperparametersMixin
from fulgor.model_export import to_onnx, to_tensorrt
from fulgor.module_fabric import TrainerFabricShim, clip_through_fabric, log_through_fabric
from fulgor.rank import rank_zero_warn
from fulgor.torchscript import to_torchscript
from fulgor.trainer.log_store import LogOptions, check_loggable, check_metric_attribute

if TYPE_CHECKING:
    from fulgor.callbacks.callback import Callback
    from fulgor.loggers.logger import Logger
    from fulgor.optimizer import LightningOptimizer
    from fulgor.trainer.run import Run
    from fulgor.trainer.trainer import Trainer


class LightningModule(DeviceDtypeModuleMixin, HyperparametersMixin, ModelHooks, DataHooks, CheckpointHooks, nn.Module):
    """A `torch.nn.Module` that also says how to train, validate, test and predict with it.

    Override ``training_step`` and ``configure_optimizers`` at least; every other hook is optional, and a hook you
    do not override costs nothing per step.
    """

    # Properties `torch.jit.script` must not compile; `_jit_is_scripting` is set while it runs (torchscript.py).
    __jit_unused_properties__: list[str] = [
        "example_input_array", "on_gpu", "current_epoch", "global_step", "global_rank", "local_rank", "logger",
        "loggers", "automatic_optimization", "trainer", "fabric", "strict_loading", "device", "dtype",
        *HyperparametersMixin.__jit_unused_properties__,
    ]  # fmt: skip
    _jit_is_scripting = False
    CHECKPOINT_HYPER_PARAMS_KEY = "hyper_parameters"
    CHECKPOINT_HYPER_PARAMS_NAME = "hparams_name"
    CHECKPOINT_HYPER_PARAMS_TYPE = "hparams_type"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._trainer: Trainer | None = None
        self._fabric: Any = None  # set by `Fabric.setup`: the module then logs, steps and clips through Fabric
        self._fabric_optimizers: list[Any] = []
        self._run: Run | None = None  # the trainer's current (or last) run: `self.log` writes to its store
        self._current_fx_name: str | None = None
        self._automatic_optimization = True
        self._strict_loading: bool | None = None
        self._example_input_array: Any = None
        self.prepare_data_per_node = True
        self.allow_zero_length_dataloader_with_multiple_devices = False

    # ------------------------------------------------------------------ properties
    @property
    def trainer(self) -> Trainer:
        """The Trainer running this module (RuntimeError when it is not attached to one); under Fabric, an object
        that answers from the Fabric object."""
        if self._fabric is not None:
            return cast("Trainer", TrainerFabricShim(self._fabric))
        if self._trainer is None and not self._jit_is_scripting:
            raise RuntimeError(f"{self.__class__.__qualname__} is not attached to a `Trainer`.")
        return self._trainer  # type: ignore[return-value]

    @trainer.setter
    def trainer(self, trainer: Trainer | None) -> None:
        for child in self.children():  # an ensemble's inner LightningModules see the same Trainer
            if isinstance(child, LightningModule):
                child.trainer = trainer
        self._trainer = trainer

    @property
    def fabric(self) -> Any:
        """The Fabric object running this module (None unless `fabric.setup` was given it)."""
        return self._fabric

    @fabric.setter
    def fabric(self, fabric: Any) -> None:
        for child in self.children():
            if isinstance(child, LightningModule):
                child.fabric = fabric
        if fabric is not None and not isinstance(fabric, weakref.ProxyTypes):
            fabric = weakref.proxy(fabric)  # the module must not keep Fabric (and its processes) alive
        self._fabric = fabric

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
        """The trainer's first logger, if any (Fabric's first logger under Fabric)."""
        if self._fabric is not None:
            return cast("Logger", self._fabric.logger)
        return self._trainer.logger if self._trainer is not None else None

    @property
    def loggers(self) -> list[Logger]:
        """All the trainer's loggers (Fabric's under Fabric)."""
        if self._fabric is not None:
            return cast("list[Logger]", self._fabric.loggers)
        return self._trainer.loggers if self._trainer is not None else []

    # ------------------------------------------------------------------ logging
    def print(self, *args: Any, **kwargs: Any) -> None:
        """`print` only on global rank 0 (so DDP jobs do not print the same line N times), through the progress bar
        when one is shown (so the line does not break it)."""
        trainer = self._trainer
        if trainer is not None and not trainer.is_global_zero:
            return
        bar = getattr(trainer, "progress_bar_callback", None)
        if bar is not None and bar.is_enabled:
            bar.print(*args, **kwargs)
        else:
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
        if self._fabric is not None:
            log_through_fabric(self._fabric, {name: value}, logger)
            return
        check_loggable(name, value)
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
        results = self._run.results if self._run is not None else None
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
        if not isinstance(value, Tensor):  # only a torchmetrics Metric needs it (and tensors are the per-step case)
            check_metric_attribute(self, name, value, metric_attribute)
        if logger and trainer.logger is None:
            rank_zero_warn(
                f"You called `self.log({name!r}, ..., logger=True)` but have no logger configured. You can enable one"
                " by doing `Trainer(logger=ALogger(...))`"
            )
        options = LogOptions(
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
        if self._fabric is not None:
            log_through_fabric(self._fabric, dictionary, logger)
            return
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

    # ------------------------------------------------------------------ optimization
    def optimizers(self, use_pl_optimizer: bool = True) -> Any:
        """The optimizer(s) from `configure_optimizers` (under Fabric, those set up with the module): one object, or a
        list when there are several."""
        if self._fabric is not None:
            opts: list[Any] = self._fabric_optimizers
        else:
            wrapped = self._run.lightning_optimizers if self._run is not None else []
            opts = list(wrapped if use_pl_optimizer else self.trainer.optimizers)
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
        if self._fabric is not None:
            self._fabric.backward(loss, *args, **kwargs)
            return
        if self.automatic_optimization:
            raise MisconfigurationException(
                "to use manual_backward, please disable automatic optimization:"
                " set model property `automatic_optimization` as False"
            )
        if self._run is None:
            raise RuntimeError(f"{self.__class__.__qualname__} is not attached to a `Trainer` run.")
        self._run.strategy.backward(loss, None, *args, **kwargs)

    def backward(self, loss: Tensor, *args: Any, **kwargs: Any) -> None:
        """Compute gradients; by default ``loss.backward()`` (`fabric.backward(loss)` under Fabric)."""
        if self._fabric is not None:
            self._fabric.backward(loss, *args, **kwargs)
            return
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
        """Clip the gradients of `optimizer`'s parameters by norm (default) or by value.

        The values default to the Trainer's `gradient_clip_val`/`gradient_clip_algorithm` (norm); passing values that
        contradict the Trainer's is an error. Under Fabric: `fabric.clip_gradients` with the given value.
        """
        if self._fabric is not None:
            clip_through_fabric(self._fabric, self, optimizer, gradient_clip_val, gradient_clip_algorithm)
            return
        trainer = self.trainer
        clip_val = clip_value(trainer.gradient_clip_val, gradient_clip_val)
        algorithm = clip_algorithm(trainer.gradient_clip_algorithm, gradient_clip_algorithm)
        trainer.precision_plugin.clip_gradients(optimizer, clip_val, algorithm)

    def configure_gradient_clipping(
        self,
        optimizer: Optimizer,
        gradient_clip_val: builtins.float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Called before each optimizer step with the Trainer's clipping flags; override to customise."""
        self.clip_gradients(
            optimizer, gradient_clip_val=gradient_clip_val, gradient_clip_algorithm=gradient_clip_algorithm
        )  # Lightning's keywords: an overriding `clip_gradients` may take them by name only

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

    def to_torchscript(
        self, file_path: Any = None, method: str | None = "script", example_inputs: Any = None, **kwargs: Any
    ) -> Any:
        """Deprecated (as in Lightning 2.6.6; use `torch.export.export()`): this module as TorchScript, compiled
        (`method="script"`) or traced (`"trace"`, on `example_inputs` or `example_input_array`); saved to
        `file_path` when given. See :func:`fulgor.torchscript.to_torchscript`."""
        return to_torchscript(self, LightningModule, file_path, method, example_inputs, **kwargs)

    to_onnx = to_onnx  # ONNX export through `torch.onnx.export` (model_export.py)
    to_tensorrt = to_tensorrt  # TensorRT compilation on a CUDA device (model_export.py)

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

    # ------------------------------------------------------------------ checkpoints
    @class_only
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
        # `cls` is the class (`class_only` is a classmethod), which mypy cannot see through the decorator.
        module: Self = load_module_from_checkpoint(
            cast(Any, cls), checkpoint_path, map_location, hparams_file, strict, weights_only, **kwargs
        )
        return module


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
