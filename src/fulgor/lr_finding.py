"""The learning-rate range test of `Tuner.lr_find` and `LearningRateFinder`: a short fit with the learning rate
rising step by step, the smoothed loss of each step, the suggestion (steepest descent) and its plot."""

from __future__ import annotations

from typing import Any

import torch

from fulgor.callbacks.callback import Callback
from fulgor.module import LightningModule
from fulgor.rank import log, rank_zero_warn
from fulgor.trainer.trainer import Trainer
from fulgor.tuning_trials import kept_weights, short_fit

__all__ = ["LR_MODES", "check_lr_mode", "find_lr", "lr_attr_name", "set_attr"]

LR_MODES = ("linear", "exponential")


def check_lr_mode(mode: str) -> None:
    """Refuse a learning-rate schedule other than "linear" and "exponential" (Lightning's message)."""
    if mode not in LR_MODES:
        raise ValueError(f"`mode` should be either of {LR_MODES}, got {mode!r}.")


def find_lr(
    trainer: Trainer, model: LightningModule, train_dataloaders: Any, datamodule: Any, min_lr: float, max_lr: float,
    num_training: int, mode: str, early_stop_threshold: float | None, update_attr: bool, attr_name: str,
) -> _LRFinder | None:  # fmt: skip
    """Run the range test on a trial copy of `trainer` (see `Tuner.lr_find`), restore the weights, and set the
    suggestion on the model's attribute when `update_attr`. None under `fast_dev_run`."""
    check_lr_mode(mode)
    if trainer.fast_dev_run:
        rank_zero_warn("Skipping learning rate finder since `fast_dev_run` is enabled.")
        return None
    name = lr_attr_name(model, attr_name) if update_attr else ""
    finder = _LRFinder(mode, min_lr, max_lr, num_training)
    callback = _LRCallback(finder, early_stop_threshold)
    with kept_weights(trainer, model):
        short_fit(trainer, model, callback, num_training, train_dataloaders, datamodule)
    finder.results = {"lr": callback.lrs, "loss": callback.losses}
    if len(callback.losses) < num_training:
        log.info(f"LR finder stopped early after {len(callback.losses)} steps due to diverging loss.")
    if update_attr:
        lr = finder.suggestion()
        if lr is not None:
            set_attr(model, name, lr)
            log.info(f"Learning rate set to {lr}")
    return finder


class _LRFinder:
    """The result of `lr_find`: `results` (``{"lr": [...], "loss": [...]}``), `suggestion()` and `plot()`."""

    def __init__(self, mode: str, lr_min: float, lr_max: float, num_training: int) -> None:
        self.mode = mode
        self.lr_min = lr_min
        self.lr_max = lr_max
        self.num_training = num_training
        self.results: dict[str, list[float]] = {}
        self._optimal_idx: int | None = None

    def lr_at(self, step: int) -> float:
        """The learning rate of optimizer step `step` (0-based): `lr_min`, then rising to `lr_max` at the last."""
        if step == 0:
            return self.lr_min
        fraction = (step + 1) / self.num_training
        if self.mode == "linear":
            return self.lr_min + fraction * (self.lr_max - self.lr_min)
        return float(self.lr_min * (self.lr_max / self.lr_min) ** fraction)

    def suggestion(self, skip_begin: int = 10, skip_end: int = 1) -> float | None:
        """The learning rate where the loss falls fastest (steepest negative gradient of loss over lr).

        Args:
            skip_begin: Points skipped at the start (too early to say anything).
            skip_end: Points skipped at the end (the divergence).

        Returns:
            The suggested learning rate, or None when fewer than two finite points remain.
        """
        end = len(self.results["loss"]) - skip_end
        indices = [i for i in range(skip_begin, end) if torch.isfinite(torch.tensor(self.results["loss"][i]))]
        if len(indices) < 2:
            log.error(
                "Failed to compute suggestion for learning rate because there are not enough points. Increase the loop"
                " iteration limits or the size of your dataset/dataloader."
            )
            self._optimal_idx = None
            return None
        losses = torch.tensor([self.results["loss"][i] for i in indices], dtype=torch.float64)
        lrs = torch.tensor([self.results["lr"][i] for i in indices], dtype=torch.float64)
        gradients = torch.gradient(losses, spacing=[lrs])[0]
        self._optimal_idx = indices[int(torch.argmin(gradients))]
        return self.results["lr"][self._optimal_idx]

    def plot(self, suggest: bool = False, show: bool = False, ax: Any = None) -> Any:
        """A matplotlib figure of loss against learning rate (log x-axis in exponential mode).

        Args:
            suggest: Mark the suggested learning rate with a red dot.
            show: Call `plt.show()`.
            ax: Draw into this Axes instead of a new figure.
        """
        import matplotlib

        if ax is None and not show:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        lrs, losses = self.results["lr"], self.results["loss"]
        fig, ax = plt.subplots() if ax is None else (ax.figure, ax)
        ax.plot(lrs, losses)
        if self.mode == "exponential":
            ax.set_xscale("log")
        ax.set_xlabel("Learning rate")
        ax.set_ylabel("Loss")
        if suggest:
            _ = self.suggestion()
            if self._optimal_idx is not None:
                ax.plot(lrs[self._optimal_idx], losses[self._optimal_idx], markersize=10, marker="o", color="red")
        if show:
            plt.show()
        return fig


class _LRCallback(Callback):
    """Sets each step's learning rate before the batch and records the smoothed loss after it; stops on divergence."""

    order = -1

    def __init__(self, finder: _LRFinder, early_stop_threshold: float | None, beta: float = 0.98) -> None:
        self.finder = finder
        self.early_stop_threshold = early_stop_threshold
        self.beta = beta
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.avg_loss = 0.0
        self.best_loss = 0.0

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        trainer.lr_scheduler_configs.clear()  # the range test owns the learning rate; the user's schedulers wait

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if (batch_idx + 1) % trainer.accumulate_grad_batches != 0:
            return
        lr = self.finder.lr_at(len(self.lrs))
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = lr
        self.lrs.append(lr)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if (batch_idx + 1) % trainer.accumulate_grad_batches != 0:
            return
        if not outputs:
            self.losses.append(float("nan"))  # keeps lrs and losses aligned; NaNs are skipped by suggestion()
            return
        loss = float((outputs if isinstance(outputs, torch.Tensor) else outputs["loss"]).item())
        step = trainer.global_step
        # Bias-corrected exponential moving average, so one noisy batch neither stops the search nor moves the curve.
        self.avg_loss = self.beta * self.avg_loss + (1 - self.beta) * loss
        smoothed = self.avg_loss / (1 - self.beta ** (step + 1))
        if self.early_stop_threshold is not None and step > 1 and smoothed > self.early_stop_threshold * self.best_loss:
            trainer.should_stop = True
        if smoothed < self.best_loss or step == 1:
            self.best_loss = smoothed
        self.losses.append(smoothed)


def lr_attr_name(model: LightningModule, attr_name: str) -> str:
    """The attribute (of the model or its hparams) holding the learning rate: `attr_name`, else `lr`/`learning_rate`."""
    if attr_name:
        if _has_attr(model, attr_name):
            return attr_name
        raise AttributeError(
            f"The attribute name for the learning rate was set to {attr_name}, but could not find this as a field in"
            " `model` or `model.hparams`."
        )
    for name in ("lr", "learning_rate"):
        if _has_attr(model, name):
            return name
    raise AttributeError(
        "When using the learning rate finder, either specify in your model `model.lr` or `model.learning_rate` or"
        " `model.hparams.lr`/`model.hparams.learning_rate`, or pass the name with `lr_find(attr_name=...)`."
    )


def _has_attr(obj: Any, name: str) -> bool:
    if name in vars(obj) or hasattr(type(obj), name):
        return True
    hparams = getattr(obj, "hparams", None)
    return hparams is not None and name in hparams


def set_attr(obj: Any, name: str, value: Any) -> None:
    """Set `name` on `obj` when it has it, else in `obj.hparams` (Lightning's `lightning_setattr` order)."""
    if name in vars(obj) or hasattr(type(obj), name):
        setattr(obj, name, value)
        hparams = getattr(obj, "hparams", None)
        if hparams is not None and name in hparams:
            hparams[name] = value
    else:
        obj.hparams[name] = value
