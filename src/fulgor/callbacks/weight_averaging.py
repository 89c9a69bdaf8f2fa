"""Weight averaging callbacks: StochasticWeightAveraging (SWA with an SWALR schedule and a batch-norm update epoch),
and WeightAveraging / EMAWeightAveraging (a `torch.optim.swa_utils.AveragedModel` updated after optimizer steps)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from copy import deepcopy
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.swa_utils import SWALR, AveragedModel, get_ema_avg_fn

from fulgor.callbacks.callback import STEP_OUTPUT, Callback
from fulgor.errors import MisconfigurationException
from fulgor.module import is_overridden
from fulgor.optimizer import LRSchedulerConfig
from fulgor.rank import rank_zero_info, rank_zero_warn

if TYPE_CHECKING:
    from fulgor.module import LightningModule
    from fulgor.trainer.trainer import Trainer

_CPU = torch.device("cpu")
AvgFn = Callable[[Tensor, Tensor, Tensor], Tensor]


def _has_batch_norm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


class StochasticWeightAveraging(Callback):
    """Stochastic Weight Averaging (Izmailov et al., 2018): from `swa_epoch_start` on, the learning rate is annealed
    to `swa_lrs` by an ``SWALR`` scheduler (replacing yours) and the weights are averaged once per epoch. At the end
    the model gets the averaged weights; a model with batch norm gets one more epoch of forward passes (no optimizer
    steps) to recompute the running statistics, as Lightning does.

    Args:
        swa_lrs: the SWA learning rate, one float for all param groups or one per group.
        swa_epoch_start: the epoch (int >= 1, counted from 1) or the fraction of ``max_epochs`` (float in [0, 1])
            where averaging starts.
        annealing_epochs: epochs of the annealing phase.
        annealing_strategy: ``"cos"`` or ``"linear"``.
        avg_fn: ``(averaged, current, n_averaged) -> new averaged``; None: equal-weight average.
        device: where the averaged copy lives (None: the model's device).
    """

    def __init__(
        self,
        swa_lrs: float | list[float],
        swa_epoch_start: int | float = 0.8,
        annealing_epochs: int = 10,
        annealing_strategy: str = "cos",
        avg_fn: AvgFn | None = None,
        device: torch.device | str | None = _CPU,
    ) -> None:
        super().__init__()
        _check_swa_arguments(swa_lrs, swa_epoch_start, avg_fn, device)
        self._swa_epoch_start = swa_epoch_start
        self._swa_lrs = swa_lrs
        self._annealing_epochs = annealing_epochs
        self._annealing_strategy = annealing_strategy
        self._avg_fn: AvgFn = avg_fn or self.avg_fn
        self._device = device
        self.n_averaged: Tensor | None = None
        self._init_n_averaged = 0
        self._latest_update_epoch = -1
        self._average_model: nn.Module | None = None
        self._initialized = False
        self._swa_scheduler: Any = None
        self._scheduler_state: dict[str, Any] | None = None
        self._model_contains_batch_norm = False
        self._max_epochs = -1
        self._accumulate_grad_batches = 1
        self._in_batch_norm_epoch = False
        self.momenta: dict[nn.modules.batchnorm._BatchNorm, float | None] = {}

    @property
    def swa_start(self) -> int:
        """First epoch (0-based) whose start updates the average."""
        return max(int(self._swa_epoch_start) - 1, 0)

    @property
    def swa_end(self) -> int | float:
        """Last training epoch (0-based) of the original `max_epochs`."""
        return float("inf") if self._max_epochs == -1 else self._max_epochs - 1

    @staticmethod
    def avg_fn(averaged: Tensor, current: Tensor, num_averaged: Tensor) -> Tensor:
        """Equal-weight running average."""
        return averaged + (current - averaged) / (num_averaged + 1)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        with _without_trainer(pl_module):
            self._average_model = deepcopy(pl_module)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if len(trainer.optimizers) != 1:
            raise MisconfigurationException("SWA currently works with 1 `optimizer`.")
        if len(trainer.lr_scheduler_configs) > 1:
            raise MisconfigurationException("SWA currently not supported for more than 1 `lr_scheduler`.")
        max_epochs = trainer.max_epochs if trainer.max_epochs is not None else -1
        if isinstance(self._swa_epoch_start, float):
            if max_epochs == -1:
                raise MisconfigurationException(
                    "SWA with `swa_epoch_start` as a float is not supported when `max_epochs=-1`. "
                    "Please provide `swa_epoch_start` as an integer."
                )
            self._swa_epoch_start = int(max_epochs * self._swa_epoch_start)
        self._model_contains_batch_norm = _has_batch_norm(pl_module)
        self._max_epochs = max_epochs
        if self._model_contains_batch_norm and max_epochs != -1:
            trainer.max_epochs = max_epochs + 1  # one more epoch: the batch-norm statistics pass
        if self._scheduler_state is not None and trainer.lr_scheduler_configs:
            trainer.lr_scheduler_configs.clear()

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        epoch = trainer.current_epoch
        if not self._initialized and self.swa_start <= epoch <= self.swa_end:
            self._start_swa(trainer, pl_module)
        if self.swa_start <= epoch <= self.swa_end and epoch > self._latest_update_epoch:
            assert self.n_averaged is not None
            assert self._average_model is not None
            self.update_parameters(self._average_model, pl_module, self.n_averaged, self._avg_fn)
            self._latest_update_epoch = epoch
        if self._max_epochs != -1 and epoch == self.swa_end + 1:
            self._start_batch_norm_epoch(trainer, pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        bn_epoch_ran = trainer.current_epoch - 1 == self.swa_end + 1
        if self._model_contains_batch_norm and self._max_epochs != -1 and bn_epoch_ran:
            trainer.accumulate_grad_batches = self._accumulate_grad_batches
            trainer.max_epochs = self._max_epochs
            self.reset_momenta()
        elif (trainer.current_epoch - 1 == self.swa_end or self._max_epochs == -1) and self._average_model is not None:
            self.transfer_weights(self._average_model, pl_module)

    def _start_swa(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Move the average to its device and swap the user's scheduler for SWALR (stepped every epoch)."""
        self._initialized = True
        assert self._average_model is not None
        self._average_model = self._average_model.to(self._device or pl_module.device)
        optimizer = trainer.optimizers[0]
        if isinstance(self._swa_lrs, float):
            self._swa_lrs = [self._swa_lrs] * len(optimizer.param_groups)
        for lr, group in zip(self._swa_lrs, optimizer.param_groups):
            group["initial_lr"] = lr
        last_epoch = trainer.max_epochs if self._annealing_strategy == "cos" else -1
        swa_lrs: Any = self._swa_lrs  # SWALR takes a float or one per param group; its stub says float only
        self._swa_scheduler = SWALR(
            optimizer, swa_lr=swa_lrs, anneal_epochs=self._annealing_epochs,
            anneal_strategy=self._annealing_strategy, last_epoch=last_epoch,  # type: ignore[arg-type]
        )  # fmt: skip
        if self._scheduler_state is not None:
            self._swa_scheduler.load_state_dict(self._scheduler_state)
        elif trainer.current_epoch != self.swa_start:
            rank_zero_warn(
                "SWA is initializing after swa_start without any checkpoint data. "
                "This may be caused by loading a checkpoint from an older version of PyTorch Lightning."
            )
        config = LRSchedulerConfig(self._swa_scheduler)
        if trainer.lr_scheduler_configs:
            current = trainer.lr_scheduler_configs[0]
            if current.interval != "epoch" or current.frequency != 1:
                rank_zero_warn(f"SWA is currently only supported every epoch. Found {current}")
            rank_zero_info(
                f"Swapping scheduler `{type(current.scheduler).__name__}` for `{type(self._swa_scheduler).__name__}`"
            )
            trainer.lr_scheduler_configs[0] = config
        else:
            trainer.lr_scheduler_configs.append(config)
        if self.n_averaged is None:
            self.n_averaged = torch.tensor(self._init_n_averaged, dtype=torch.long, device=pl_module.device)

    def _start_batch_norm_epoch(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """The extra epoch: averaged weights in, batch-norm statistics reset, and gradients accumulated over the whole
        epoch; its one optimizer step (counted in `global_step`, as in Lightning) finds no gradients, so only the
        forward passes change the model: they recompute the running statistics."""
        assert self._average_model is not None
        self.transfer_weights(self._average_model, pl_module)
        self.reset_batch_norm_and_save_state(pl_module)
        self._accumulate_grad_batches = trainer.accumulate_grad_batches
        batches = trainer.num_training_batches
        assert batches != float("inf"), "Iterable-style datasets are not supported"
        trainer.accumulate_grad_batches = int(batches)
        self._in_batch_norm_epoch = True

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Optimizer) -> None:
        if self._in_batch_norm_epoch:
            for param in pl_module.parameters():
                param.grad = None  # optimizers skip parameters without gradients: the step changes nothing

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._in_batch_norm_epoch = False

    @staticmethod
    def transfer_weights(src: nn.Module, dst: nn.Module) -> None:
        """Copy the parameters of `src` into `dst`."""
        for src_param, dst_param in zip(src.parameters(), dst.parameters()):
            dst_param.detach().copy_(src_param.to(dst_param.device))

    def reset_batch_norm_and_save_state(self, pl_module: nn.Module) -> None:
        """Zero the running statistics and use a cumulative average (momentum None) for the update pass."""
        self.momenta = {}
        for module in pl_module.modules():
            if not isinstance(module, nn.modules.batchnorm._BatchNorm) or module.running_mean is None:
                continue
            assert module.running_var is not None
            assert module.num_batches_tracked is not None
            module.running_mean = torch.zeros_like(module.running_mean)
            module.running_var = torch.ones_like(module.running_var)
            self.momenta[module] = module.momentum
            module.momentum = None
            module.num_batches_tracked *= 0

    def reset_momenta(self) -> None:
        for module, momentum in self.momenta.items():
            module.momentum = momentum

    @staticmethod
    def update_parameters(average: nn.Module, model: nn.Module, n_averaged: Tensor, avg_fn: AvgFn) -> None:
        """Fold the current weights into the average (the first update copies them)."""
        for p_avg, p_model in zip(average.parameters(), model.parameters()):
            target = p_avg.detach()
            current = p_model.detach().to(target.device)
            target.copy_(current if n_averaged == 0 else avg_fn(target, current, n_averaged.to(target.device)))
        n_averaged += 1

    def state_dict(self) -> dict[str, Any]:
        return {
            "n_averaged": 0 if self.n_averaged is None else int(self.n_averaged.item()),
            "latest_update_epoch": self._latest_update_epoch,
            "scheduler_state": None if self._swa_scheduler is None else self._swa_scheduler.state_dict(),
            "average_model_state": None if self._average_model is None else self._average_model.state_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._init_n_averaged = state_dict["n_averaged"]
        self._latest_update_epoch = state_dict["latest_update_epoch"]
        self._scheduler_state = state_dict["scheduler_state"]
        if self._average_model is not None and state_dict["average_model_state"] is not None:
            self._average_model.load_state_dict(state_dict["average_model_state"])


def _check_swa_arguments(swa_lrs: Any, swa_epoch_start: Any, avg_fn: Any, device: Any) -> None:
    if isinstance(swa_epoch_start, int) and swa_epoch_start < 1:
        raise MisconfigurationException("swa_epoch_start should be a >0 integer or a float between 0 and 1.")
    if isinstance(swa_epoch_start, float) and not 0 <= swa_epoch_start <= 1:
        raise MisconfigurationException("swa_epoch_start should be a >0 integer or a float between 0 and 1.")
    wrong_float = isinstance(swa_lrs, float) and swa_lrs <= 0
    wrong_list = isinstance(swa_lrs, list) and not all(isinstance(lr, float) and lr > 0 for lr in swa_lrs)
    if not isinstance(swa_lrs, (float, list)) or wrong_float or wrong_list:
        raise MisconfigurationException("The `swa_lrs` should a positive float, or a list of positive floats")
    if avg_fn is not None and not callable(avg_fn):
        raise MisconfigurationException("The `avg_fn` should be callable.")
    if device is not None and not isinstance(device, (torch.device, str)):
        raise MisconfigurationException(f"device is expected to be a torch.device or a str. Found {device}")


class WeightAveraging(Callback):
    """Keep an `AveragedModel` of the module, updated after optimizer steps (and/or epochs) as `should_update`
    decides; validation runs on the averaged weights and the module ends training with them.

    Args:
        device: where the averaged copy lives (None: the module's device).
        use_buffers: average the buffers (batch-norm statistics) too.
        **kwargs: passed to ``AveragedModel`` (``avg_fn``, ``multi_avg_fn``); none: equal-weight average (SWA).
    """

    def __init__(self, device: torch.device | str | int | None = None, use_buffers: bool = True, **kwargs: Any) -> None:
        super().__init__()
        self._device = torch.device(device) if isinstance(device, str) else device
        self._use_buffers = use_buffers
        self._kwargs = kwargs
        self._average_model: AveragedModel | None = None
        self._latest_update_step = 0
        self._latest_update_epoch = -1

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        """Whether to update after optimizer step `step_idx` or epoch `epoch_idx` (default: after every step)."""
        return step_idx is not None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if is_overridden("configure_model", pl_module):
            rank_zero_warn(
                "You're using the WeightAveraging callback with a model that overrides the configure_model "
                "callback. WeightAveraging doesn't support sharding model layers, so you may run out of memory."
            )
            pl_module.configure_model()
        device = self._device or pl_module.device
        with _without_trainer(pl_module):  # AveragedModel deep-copies the module
            self._average_model = AveragedModel(pl_module, device=device, use_buffers=self._use_buffers, **self._kwargs)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: STEP_OUTPUT, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step > self._latest_update_step and self.should_update(step_idx=trainer.global_step - 1):
            assert self._average_model is not None
            self._average_model.update_parameters(pl_module)
            self._latest_update_step = trainer.global_step

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        epoch = trainer.current_epoch
        if epoch > self._latest_update_epoch and self.should_update(epoch_idx=epoch):
            assert self._average_model is not None
            self._average_model.update_parameters(pl_module)
            self._latest_update_epoch = epoch

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._copy_average_to_current(pl_module)

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._average_model is not None:
            self._swap_models(pl_module)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._average_model is not None:
            self._swap_models(pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"latest_update_step": self._latest_update_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._latest_update_step = state_dict["latest_update_step"]

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        """Checkpoints hold the averaged weights in ``state_dict``; the current ones go to ``current_model_state``."""
        if self._average_model is None:
            rank_zero_info(
                "You're using the WeightAveraging callback, but saving a checkpoint outside the 'fit' stage. The state "
                "of the WeightAveraging callback won't be saved in the checkpoint. If training has finished, the "
                "average model parameters will be saved to the state_dict in the checkpoint."
            )
            return
        state = self._average_model.state_dict()
        checkpoint["current_model_state"] = checkpoint["state_dict"]
        checkpoint["state_dict"] = {k[len("module.") :]: v for k, v in state.items() if k.startswith("module.")}
        checkpoint["averaging_state"] = {k: v for k, v in state.items() if not k.startswith("module.")}

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        if self._average_model is None:
            rank_zero_warn(
                "You're using the WeightAveraging callback, but loading a checkpoint outside the 'fit' stage. The "
                "WeightAveraging state cannot be restored. If you're using the checkpoint for prediction or testing, "
                "you can ignore this warning. To disable the warning, remove the WeightAveraging callback."
            )
        elif "current_model_state" in checkpoint and "averaging_state" in checkpoint:
            rank_zero_info("Found current_model_state in the checkpoint. This will be used to initialize the model.")
            state = {f"module.{k}": v for k, v in checkpoint["state_dict"].items()} | checkpoint["averaging_state"]
            self._average_model.load_state_dict(state)
            pl_module.load_state_dict(checkpoint["current_model_state"])
        else:
            rank_zero_warn(
                "The checkpoint was not created with WeightAveraging. Both the current and the average model will be "
                "initialized with state_dict."
            )
            self._average_model.module.load_state_dict(deepcopy(checkpoint["state_dict"]), strict=False)

    def _pairs(self, pl_module: LightningModule) -> zip[tuple[Tensor, Tensor]]:
        assert self._average_model is not None
        average = itertools.chain(self._average_model.module.parameters(), self._average_model.module.buffers())
        current = itertools.chain(pl_module.parameters(), pl_module.buffers())
        return zip(average, current)

    # `_swap_models` and `_copy_average_to_current` keep Lightning's names: subclasses override them to observe swaps.
    def _swap_models(self, pl_module: LightningModule) -> None:
        for average, current in self._pairs(pl_module):
            saved = average.data.clone()
            average.data.copy_(current.data)
            current.data.copy_(saved)

    def _copy_average_to_current(self, pl_module: LightningModule) -> None:
        for average, current in self._pairs(pl_module):
            current.data.copy_(average.data)


class EMAWeightAveraging(WeightAveraging):
    """Exponential moving average of the weights: ``avg = decay * avg + (1 - decay) * current``.

    Args:
        device: where the averaged copy lives (None: the module's device).
        use_buffers: average the buffers too.
        decay: the EMA decay.
        update_every_n_steps: update after every n-th optimizer step (step index divisible by n).
        update_starting_at_step: first step index that updates (None: from the start).
        update_starting_at_epoch: also update at the end of every epoch from this index on (None: never per epoch).
        **kwargs: passed to ``AveragedModel``.
    """

    def __init__(
        self,
        device: torch.device | str | int | None = None,
        use_buffers: bool = True,
        decay: float = 0.999,
        update_every_n_steps: int = 1,
        update_starting_at_step: int | None = None,
        update_starting_at_epoch: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(device=device, use_buffers=use_buffers, **kwargs, avg_fn=get_ema_avg_fn(decay=decay))  # type: ignore[no-untyped-call]
        self.update_every_n_steps = update_every_n_steps
        self.update_starting_at_step = update_starting_at_step
        self.update_starting_at_epoch = update_starting_at_epoch

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        if step_idx is not None:
            started = self.update_starting_at_step is None or step_idx >= self.update_starting_at_step
            if started and self.update_every_n_steps > 0 and step_idx % self.update_every_n_steps == 0:
                return True
        start_epoch = self.update_starting_at_epoch
        return epoch_idx is not None and start_epoch is not None and epoch_idx >= start_epoch


@contextmanager
def _without_trainer(module: LightningModule) -> Iterator[None]:
    """Detach `module` from its Trainer while it is copied: the averaged copy must not drag a deep copy of the
    Trainer (its run, loaders and datasets) along, nor point at it."""
    trainer = module.trainer  # attached: this runs in the callback's setup
    module.trainer = None
    try:
        yield
    finally:
        module.trainer = trainer
