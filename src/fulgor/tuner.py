"""The Tuner: `lr_find` (learning-rate range test) and `scale_batch_size` (largest batch that fits), each run as
short `fit`s on a saved copy of the model and trainer state that is restored afterwards."""

from __future__ import annotations

import gc
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from fulgor.callbacks.callback import Callback
from fulgor.errors import MisconfigurationException
from fulgor.module import LightningModule
from fulgor.rank import log, rank_zero_info, rank_zero_warn
from fulgor.trainer.trainer import Trainer, training_data_of, tuning_trial

__all__ = ["Tuner"]


class Tuner:
    """Tunes a Trainer's model before training: ``Tuner(trainer).lr_find(model)``, ``.scale_batch_size(model)``."""

    def __init__(self, trainer: Trainer) -> None:
        self._trainer = trainer

    def lr_find(
        self,
        model: LightningModule,
        train_dataloaders: Any = None,
        val_dataloaders: Any = None,
        dataloaders: Any = None,
        datamodule: Any = None,
        method: str = "fit",
        min_lr: float = 1e-8,
        max_lr: float = 1,
        num_training: int = 100,
        mode: str = "exponential",
        early_stop_threshold: float | None = 4.0,
        update_attr: bool = True,
        attr_name: str = "",
    ) -> _LRFinder | None:
        """Train `num_training` steps with the learning rate rising from `min_lr` to `max_lr`, record the
        (smoothed) loss of each, then restore the model and trainer.

        Args:
            model: The model to tune; it must configure its optimizer from an attribute for `update_attr`.
            train_dataloaders: Training data (else the datamodule's or the model's `train_dataloader`).
            val_dataloaders: Accepted for Lightning compatibility; the search does not validate.
            dataloaders: Only for other methods (refused: lr_find runs `fit`).
            datamodule: A LightningDataModule providing the data.
            method: Must be ``"fit"``.
            min_lr: First learning rate.
            max_lr: Last learning rate.
            num_training: Number of learning rates (optimizer steps) to try.
            mode: ``"exponential"`` or ``"linear"`` increase.
            early_stop_threshold: Stop when the smoothed loss exceeds this multiple of the best (None: never).
            update_attr: Set the suggestion on the model's `lr`/`learning_rate` attribute (or `attr_name`).
            attr_name: The attribute holding the learning rate, when not `lr`/`learning_rate`.

        Returns:
            The finder with `results`, `suggestion()` and `plot()`, or None under `fast_dev_run`.
        """
        if method != "fit":
            raise MisconfigurationException(f"`Tuner.lr_find(method={method!r})`: method='fit' is the only valid one.")
        if dataloaders is not None:
            raise MisconfigurationException(
                "`Tuner.lr_find(dataloaders=...)` is only for other methods; pass `train_dataloaders=` for 'fit'."
            )
        if mode not in ("exponential", "linear"):
            raise MisconfigurationException(f"`mode={mode!r}` is invalid: use 'exponential' or 'linear'.")
        trainer = self._trainer
        if trainer.fast_dev_run:
            rank_zero_warn("Skipping learning rate finder since `fast_dev_run` is enabled.")
            return None
        name = lr_attr_name(model, attr_name) if update_attr else ""
        finder = _LRFinder(mode, min_lr, max_lr, num_training)
        callback = _LRCallback(finder, early_stop_threshold)
        with _kept_weights(trainer, model):
            _short_fit(trainer, model, callback, num_training, train_dataloaders, datamodule)
        finder.results = {"lr": callback.lrs, "loss": callback.losses}
        if len(callback.losses) < num_training:
            log.info(f"LR finder stopped early after {len(callback.losses)} steps due to diverging loss.")
        if update_attr:
            lr = finder.suggestion()
            if lr is not None:
                set_attr(model, name, lr)
                log.info(f"Learning rate set to {lr}")
        return finder

    def scale_batch_size(
        self,
        model: LightningModule,
        train_dataloaders: Any = None,
        val_dataloaders: Any = None,
        dataloaders: Any = None,
        datamodule: Any = None,
        method: str = "fit",
        mode: str = "power",
        steps_per_trial: int = 3,
        init_val: int = 2,
        max_trials: int = 25,
        batch_arg_name: str = "batch_size",
        margin: float = 0.05,
        max_val: int = 8192,
    ) -> int | None:
        """Find the largest batch size whose `steps_per_trial` steps (training steps, or batches of the `method`'s loop)
        run without running out of memory, set it on the model (or datamodule) as `batch_arg_name`, and restore the
        model and trainer.

        Args:
            model: The model; its (or the datamodule's) dataloader must read `batch_arg_name`.
            train_dataloaders: Refused: the batch size can only change in loaders the model or datamodule builds.
            val_dataloaders: Refused, for the same reason.
            dataloaders: Refused, for the same reason.
            datamodule: A LightningDataModule providing the data (and possibly the attribute).
            method: ``"fit"`` (training steps), or ``"validate"``, ``"test"`` or ``"predict"`` (batches of that loop).
            mode: ``"power"`` (double until OOM) or ``"binsearch"`` (then bisect between the last fit and the OOM).
            steps_per_trial: Training steps per tried size.
            init_val: First size tried.
            max_trials: Most sizes tried.
            batch_arg_name: The attribute holding the batch size.
            margin: Fraction taken off the size found in binsearch mode, as a safety buffer.
            max_val: Largest batch size considered.

        Returns:
            The batch size found, or None under `fast_dev_run`.
        """
        check_tuner_method(method, train_dataloaders, val_dataloaders, dataloaders)
        if not 0.0 <= margin < 1.0:
            raise ValueError(f"`margin` should be between 0 and 1. Found margin={margin}")
        check_batch_size_mode(mode)
        if any(loader is not None for loader in (train_dataloaders, val_dataloaders, dataloaders)):
            raise MisconfigurationException(passed_loaders_message(method))
        trainer = self._trainer
        if trainer.fast_dev_run:
            rank_zero_warn("Skipping batch size scaler since `fast_dev_run` is enabled.")
            return None
        owner = batch_size_owner(model, datamodule, batch_arg_name)
        _warn_if_attribute_and_hparam(owner, batch_arg_name)

        def trial(size: int) -> bool:
            set_attr(owner, batch_arg_name, size)
            try:
                _short_run(trainer, model, method, steps_per_trial, datamodule)
            except RuntimeError as error:
                if not is_oom_error(error):
                    raise
                _free_memory()
                return False
            return True

        with _kept_weights(trainer, model):
            size = search_batch_size(trial, mode, init_val, max_trials, margin, max_val)
        set_attr(owner, batch_arg_name, size)
        rank_zero_info(f"Finished batch size finder, will continue with full run using batch size {size}")
        return size


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


_TUNER_METHODS = ("fit", "validate", "test", "predict")
BATCH_SIZE_MODES = ("power", "binsearch")


def check_tuner_method(method: str, train_dataloaders: Any, val_dataloaders: Any, dataloaders: Any) -> None:
    """Lightning's checks of a tuner call: a known `method`, and only the dataloader arguments that method takes."""
    if method not in _TUNER_METHODS:
        raise ValueError(f"method {method!r} is invalid. Should be one of {_TUNER_METHODS}.")
    if method == "fit" and dataloaders is not None:
        raise MisconfigurationException(
            f"In tuner with method={method!r}, `dataloaders` argument should be None,"
            " please consider setting `train_dataloaders` and `val_dataloaders` instead."
        )
    if method != "fit" and (train_dataloaders is not None or val_dataloaders is not None):
        raise MisconfigurationException(
            f"In tuner with `method`={method!r}, `train_dataloaders` and `val_dataloaders`"
            " arguments should be None, please consider setting `dataloaders` instead."
        )


def check_batch_size_mode(mode: str) -> None:
    """Refuse a batch-size search mode other than "power" and "binsearch"."""
    if mode not in BATCH_SIZE_MODES:
        raise ValueError(f"`mode` should be either of {BATCH_SIZE_MODES}, got {mode!r}.")


def passed_loaders_message(method: str) -> str:
    """Why the batch size cannot be searched for dataloaders the user built (their batch size is fixed)."""
    return (
        f"The Batch size finder cannot be used with dataloaders passed directly to `.{method}()`. Please disable the"
        " feature or incorporate the dataloader into your LightningModule or LightningDataModule."
    )


def _warn_if_attribute_and_hparam(owner: Any, name: str) -> None:
    hparams = getattr(owner, "hparams", None)
    if (name in vars(owner) or hasattr(type(owner), name)) and hparams is not None and name in hparams:
        rank_zero_warn(
            f"Field `model.{name}` and `model.hparams.{name}` are mutually exclusive! `model.{name}` will be used as"
            " the initial batch size for scaling. If this is not the intended behavior, please remove either one."
        )


def search_batch_size(
    trial: Callable[[int], bool], mode: str, init_val: int, max_trials: int, margin: float = 0.0, max_val: int = 8192
) -> int:
    """The largest size `trial` accepts: doubling from `init_val` until a failure; in binsearch mode, then bisecting
    between the largest success and the smallest failure (and taking `margin` off). A failure before any success
    halves the size. Sizes never exceed `max_val`; reaching it ends the search without trying it."""
    size, low, high = init_val, 0, 0  # low: largest success, high: smallest failure (0: none yet)
    for _ in range(max_trials):
        if size >= max_val:
            rank_zero_info(f"Reached the maximum batch size limit of {max_val}. Stopping search.")
            low = size
            break
        succeeded = trial(size)
        if succeeded:
            low = size
        else:
            high = size
        done = bool(low and high and (mode == "power" or high - low <= 1)) or size == high == 1
        if not high:
            new = min(size * 2, max_val)
        elif not low:
            new = max(size // 2, 1)
        else:
            new = low if mode == "power" else (low + high) // 2
        rank_zero_info(f"Batch size {size} {'succeeded' if succeeded else 'failed'}, trying batch size {new}")
        if done:
            break
        size = new
    found = low or size
    if mode == "binsearch" and margin > 0 and max(1, int(found * (1 - margin))) != found:
        reduced = max(1, int(found * (1 - margin)))
        rank_zero_info(f"Applying margin of {margin:.1%}, reducing batch size from {found} to {reduced}")
        found = reduced
    return found


def is_oom_error(error: BaseException) -> bool:
    """Whether `error` is an out-of-memory error (CUDA, cuDNN's variant, or the CPU allocator)."""
    message = str(error)
    return isinstance(error, RuntimeError) and any(
        text in message
        for text in (
            "CUDA out of memory.",
            "CUDA error: out of memory",
            "cuDNN error: CUDNN_STATUS_NOT_SUPPORTED.",
            "DefaultCPUAllocator: can't allocate memory",
        )
    )


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


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


def batch_size_owner(model: LightningModule, datamodule: Any, name: str) -> Any:
    """The object whose attribute (or hparams entry) `name` the dataloaders read: the model, else the datamodule."""
    for owner in (model, datamodule):
        if owner is not None and _has_attr(owner, name):
            return owner
    raise MisconfigurationException(
        f"Field {name} not found in `model`, `datamodule`, nor their `hparams` attributes. Add `self.{name}` (or pass"
        " `batch_arg_name=`) so the batch size finder can change it."
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


@contextmanager
def _kept_weights(trainer: Trainer, model: LightningModule) -> Iterator[None]:
    """Run the body, then put the model's weights back as they were (saved to a temporary file meanwhile), even when
    the body fails."""
    path = os.path.join(trainer.default_root_dir, f".tuner_{uuid.uuid4()}.ckpt")
    os.makedirs(trainer.default_root_dir, exist_ok=True)
    torch.save(model.state_dict(), path)
    try:
        yield
    finally:
        model.load_state_dict(torch.load(path, weights_only=True))
        os.remove(path)


def _short_fit(
    trainer: Trainer,
    model: LightningModule,
    callback: Callback | None,
    steps: int,
    train_dataloaders: Any,
    datamodule: Any,
) -> None:
    """`steps` optimizer steps of `fit` on a trial copy of `trainer` (zero counters, only `callback`): no loggers,
    checkpoints, progress bar or validation."""
    callbacks = [callback] if callback is not None else []
    # The learning-rate range test drives the loss to diverge on purpose: the non-finite guard is off in the trials.
    settings = {"max_steps": steps, "limit_val_batches": 0, "num_sanity_val_steps": 0, "non_finite": "off"}
    with tuning_trial(trainer, model, callbacks, **settings) as trial:
        trial.fit(model, train_dataloaders, datamodule=datamodule)


# Per evaluation method: the limit flag a trial sets, and the Trainer attribute holding its batch counts.
_EVAL_LIMITS = {
    "validate": ("limit_val_batches", "num_val_batches"),
    "test": ("limit_test_batches", "num_test_batches"),
    "predict": ("limit_predict_batches", "num_predict_batches"),
}


def _short_run(trainer: Trainer, model: LightningModule, method: str, steps: int, datamodule: Any) -> None:
    """One trial of the batch-size search: `steps` training steps of fit, or `steps` batches of validate, test or
    predict (one dataloader only: the size found would not fit several)."""
    if method == "fit":
        _short_fit(trainer, model, None, steps, None, datamodule)
        return
    limit, counts = _EVAL_LIMITS[method]
    with tuning_trial(trainer, model, [], **{limit: steps, "non_finite": "off"}) as trial:
        if method == "predict":
            trial.predict(model, datamodule=datamodule, return_predictions=False)
        else:
            getattr(trial, method)(model, datamodule=datamodule, verbose=False)
        batches = getattr(trial, counts)
    if isinstance(batches, list) and len(batches) > 1:
        prefix = "val" if method == "validate" else method
        raise MisconfigurationException(f"The Batch size finder cannot be used with multiple {prefix} dataloaders.")


def fit_training_data(trainer: Trainer) -> tuple[Any, Any]:
    """`(train_dataloaders, datamodule)` of the running fit, for a tuner callback's search (one device only)."""
    if trainer.world_size > 1:
        raise MisconfigurationException("The tuner callbacks run on one device only; tune before launching DDP.")
    return training_data_of(trainer)
