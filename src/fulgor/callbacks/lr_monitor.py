"""LearningRateMonitor: log each optimizer's learning rate (and optionally momentum / weight decay) to the loggers."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

import torch
from torch.optim import Optimizer

from fulgor.callbacks.callback import Callback
from fulgor.errors import MisconfigurationException
from fulgor.rank import rank_zero_warn

if TYPE_CHECKING:
    from fulgor.module import LightningModule
    from fulgor.trainer.trainer import Trainer


class LearningRateMonitor(Callback):
    """Log learning rates under Lightning's names: ``lr-<OptimizerClass>`` (``lr-SGD``), the scheduler's ``name``
    when it has one, ``/pg<N>`` (or the param group's ``name``) per parameter group when there are several, and
    ``-<N>`` for a second optimizer of the same class.

    Args:
        logging_interval: ``"step"``, ``"epoch"``, or ``None``: follow each scheduler's own ``interval``
            (optimizers without a scheduler are logged per step).
        log_momentum: also log ``<name>-momentum`` (``betas[0]`` for Adam-like optimizers, 0 when there is none).
        log_weight_decay: also log ``<name>-weight_decay``.

    Raises:
        MisconfigurationException: for another ``logging_interval``, or at fit start when the Trainer has no logger.
    """

    def __init__(
        self, logging_interval: str | None = None, log_momentum: bool = False, log_weight_decay: bool = False
    ) -> None:
        super().__init__()
        if logging_interval not in (None, "step", "epoch"):
            raise MisconfigurationException("logging_interval should be `step` or `epoch` or `None`.")
        self.logging_interval = logging_interval
        self.log_momentum = log_momentum
        self.log_weight_decay = log_weight_decay
        self.lrs: dict[str, list[float]] = {}
        self.last_momentum_values: dict[str, float | None] = {}
        self.last_weight_decay_values: dict[str, float | None] = {}

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.loggers:
            raise MisconfigurationException(
                "Cannot use `LearningRateMonitor` callback with `Trainer` that has no logger."
            )
        if self.log_momentum and _lacks(trainer, "momentum") and _lacks(trainer, "betas"):
            rank_zero_warn(
                "You have set log_momentum=True, but some optimizers do not"
                " have momentum. This will log a value 0 for the momentum.",
                category=RuntimeWarning,
            )
        names = [name for _, group_names, _ in self._named_optimizers(trainer) for name in group_names]
        self.lrs = {name: [] for name in names}
        self.last_momentum_values = {f"{name}-momentum": None for name in names}
        self.last_weight_decay_values = {f"{name}-weight_decay": None for name in names}

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if self.logging_interval != "epoch" and _logs_this_step(trainer):
            self._log(trainer, "step" if self.logging_interval is None else "any")

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.logging_interval != "step":
            self._log(trainer, "epoch" if self.logging_interval is None else "any")

    def _log(self, trainer: Trainer, interval: str) -> None:
        stats = self._extract_stats(trainer, interval)
        if stats:
            step = trainer.state.batches_that_stepped
            for logger in trainer.loggers:
                logger.log_metrics(stats, step=step)

    def _extract_stats(self, trainer: Trainer, interval: str) -> dict[str, float]:
        """The current values of the optimizers due at `interval` ("step", "epoch" or "any")."""
        stats: dict[str, float] = {}
        for optimizer, names, scheduler_interval in self._named_optimizers(trainer):
            self._remap_new_groups(names)
            if scheduler_interval is None or interval in (scheduler_interval, "any"):
                stats.update(self._optimizer_stats(optimizer, names))
        device = trainer.strategy.root_device
        trainer.callback_metrics.update({name: torch.tensor(value, device=device) for name, value in stats.items()})
        return stats

    def _optimizer_stats(self, optimizer: Optimizer, names: list[str]) -> dict[str, float]:
        stats: dict[str, float] = {}
        use_betas = "betas" in optimizer.defaults
        for group, name in zip(optimizer.param_groups, names):
            stats[name] = group["lr"]
            self.lrs.setdefault(name, []).append(group["lr"])
            if self.log_momentum:
                momentum = group["betas"][0] if use_betas else group.get("momentum", 0)
                stats[f"{name}-momentum"] = self.last_momentum_values[f"{name}-momentum"] = momentum
            if self.log_weight_decay:
                decay = group["weight_decay"]
                stats[f"{name}-weight_decay"] = self.last_weight_decay_values[f"{name}-weight_decay"] = decay
        return stats

    def _remap_new_groups(self, names: list[str]) -> None:
        """A param group added during training (fine-tuning) turns ``lr-SGD`` into ``lr-SGD/pg1``: keep its history."""
        for name in names:
            old = name.replace("/pg1", "")
            if "/pg1" in name and old in self.lrs:
                self.lrs[name] = self.lrs.pop(old)
            elif name not in self.lrs:
                self.lrs[name] = []

    @staticmethod
    def _named_optimizers(trainer: Trainer) -> list[tuple[Optimizer, list[str], str | None]]:
        """(optimizer, one name per param group, interval): scheduled optimizers first, then the others (None)."""
        seen: list[Optimizer] = []
        type_counts: defaultdict[type, int] = defaultdict(int)
        result: list[tuple[Optimizer, list[str], str | None]] = []
        for config in trainer.lr_scheduler_configs:
            optimizer = config.scheduler.optimizer
            base = config.name if config.name is not None else f"lr-{type(optimizer).__name__}"
            names = _group_names(optimizer, base, seen, type_counts, counted=config.name is None)
            result.append((optimizer, names, config.interval))
        for optimizer in trainer.optimizers:
            optimizer = getattr(optimizer, "optimizer", optimizer)
            if optimizer in seen:
                continue
            names = _group_names(optimizer, f"lr-{type(optimizer).__name__}", seen, type_counts, counted=True)
            result.append((optimizer, names, None))  # no scheduler: logged at every opportunity
        return result


def _group_names(
    optimizer: Optimizer, base: str, seen: list[Optimizer], type_counts: defaultdict[type, int], counted: bool
) -> list[str]:
    seen.append(optimizer)
    cls = type(optimizer)
    if counted:
        type_counts[cls] += 1
    groups = optimizer.param_groups
    group_names = [g.get("name", f"pg{i}") for i, g in enumerate(groups, start=1)]
    duplicates = {n for n in group_names if group_names.count(n) > 1}
    if duplicates:
        raise MisconfigurationException(
            "A single `Optimizer` cannot have multiple parameter groups with identical "
            f"`name` values. {base} has duplicated parameter group names {duplicates}"
        )
    if cls in type_counts and type_counts[cls] > 1:
        base = f"{base}-{type_counts[cls] - 1}"
    if len(groups) > 1:
        return [f"{base}/{g.get('name', f'pg{i}')}" for i, g in enumerate(groups, start=1)]
    name = groups[0].get("name")
    return [f"{base}/{name}" if name else base]


def _lacks(trainer: Trainer, key: str) -> bool:
    if trainer.lr_scheduler_configs:
        return any(key not in c.scheduler.optimizer.defaults for c in trainer.lr_scheduler_configs)
    return any(key not in optimizer.defaults for optimizer in trainer.optimizers)


def _logs_this_step(trainer: Trainer) -> bool:
    """Lightning's step-logging rule: every `log_every_n_steps` optimizer steps, and when stopping."""
    every = trainer.log_every_n_steps
    return every > 0 and ((trainer.state.batches_that_stepped + 1) % every == 0 or trainer.should_stop)
