"""The Tuner: `lr_find` (learning-rate range test, lr_finding.py) and `scale_batch_size` (the largest batch size that
runs), each searched with trial runs on copies of the Trainer (tuning_trials.py); the batch-size search is here."""

from __future__ import annotations

from collections.abc import Callable, MutableMapping, Sized
from typing import Any

from fulgor.combined_loader import CombinedLoader
from fulgor.errors import MisconfigurationException
from fulgor.lr_finding import _LRFinder, find_lr, lr_attr_name, set_attr
from fulgor.module import LightningModule
from fulgor.rank import log, rank_zero_info, rank_zero_warn
from fulgor.strategies.ddp import DDPStrategy
from fulgor.strategies.fsdp import FSDPStrategy
from fulgor.trainer.call_inputs import datamodule_in_place_of_loaders
from fulgor.trainer.trainer import Trainer, training_data_of
from fulgor.tuning_trials import (
    TUNER_METHODS,
    free_memory,
    kept_weights,
    load_data_only,
    probe_loaders,
    short_run,
)

__all__ = ["BatchSizeSearch", "Tuner", "is_oom_error", "lr_attr_name", "search_batch_size", "set_attr"]

BATCH_SIZE_MODES = ("power", "binsearch")


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
            raise MisconfigurationException("method='fit' is the only valid configuration to run lr finder.")
        check_tuner_method(method, train_dataloaders, val_dataloaders, dataloaders)
        _refuse_configured(self._trainer, "lr", "LearningRateFinder")
        train_dataloaders, datamodule = datamodule_in_place_of_loaders(train_dataloaders, datamodule)
        return find_lr(self._trainer, model, train_dataloaders, datamodule, min_lr, max_lr, num_training,
                       mode.lower(), early_stop_threshold, update_attr, attr_name)  # fmt: skip

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
        run without running out of memory, set it on the model (and datamodule) as `batch_arg_name`, and restore the
        model's weights. The Trainer is left as Lightning's: the `method`'s loaders built with the size found, the
        datamodule attached, nothing trained.

        Args:
            model: The model; its (or the datamodule's) dataloader must read `batch_arg_name`.
            train_dataloaders: Refused: the batch size can only change in loaders the model or datamodule builds.
            val_dataloaders: Refused, for the same reason.
            dataloaders: Refused, for the same reason.
            datamodule: A LightningDataModule providing the data (and possibly the attribute).
            method: ``"fit"`` (training steps), or ``"validate"``, ``"test"`` or ``"predict"`` (batches of that loop).
            mode: ``"power"`` (double until OOM) or ``"binsearch"`` (then bisect between the last fit and the OOM).
            steps_per_trial: Training steps (or batches) per tried size.
            init_val: First size tried.
            max_trials: Most sizes tried (in binsearch mode: most sizes that succeed).
            batch_arg_name: The attribute holding the batch size.
            margin: Fraction taken off the size found in binsearch mode, as a safety buffer.
            max_val: Largest batch size considered.

        Returns:
            The batch size found, or None under `fast_dev_run`.
        """
        trainer = self._trainer
        check_tuner_method(method, train_dataloaders, val_dataloaders, dataloaders)
        if is_distributed(trainer):
            raise ValueError("Tuning the batch size is currently not supported with distributed strategies.")
        _refuse_configured(trainer, "batch_size", "BatchSizeFinder")
        search = BatchSizeSearch(mode, steps_per_trial, init_val, max_trials, batch_arg_name, margin, max_val)
        train_dataloaders, datamodule = datamodule_in_place_of_loaders(train_dataloaders, datamodule)
        if any(loader is not None for loader in (train_dataloaders, val_dataloaders, dataloaders)):
            raise MisconfigurationException(passed_loaders_message(method))
        size = search.run(trainer, model, datamodule, method)
        if size is not None:
            load_data_only(trainer, model, method, datamodule)
        return size


def check_tuner_method(method: str, train_dataloaders: Any, val_dataloaders: Any, dataloaders: Any) -> None:
    """Lightning's checks of a tuner call: a known `method`, and only the dataloader arguments that method takes."""
    if method not in TUNER_METHODS:
        raise ValueError(f"method {method!r} is invalid. Should be one of {TUNER_METHODS}.")
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


def _refuse_configured(trainer: Trainer, kind: str, name: str) -> None:
    # The finder callbacks mark themselves with `_tunes` (their module imports this one, so no isinstance here).
    if any(getattr(callback, "_tunes", None) == kind for callback in trainer.callbacks):
        raise ValueError(
            f"Trainer is already configured with a `{name}` callback. Please remove it if you want to use the Tuner."
        )


def is_distributed(trainer: Trainer) -> bool:
    """Whether the Trainer runs a distributed strategy (the tuners search on one device only)."""
    return isinstance(trainer.strategy, (DDPStrategy, FSDPStrategy))


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


class BatchSizeSearch:
    """The batch-size search of `Tuner.scale_batch_size` and `BatchSizeFinder` (arguments as there)."""

    def __init__(
        self, mode: str, steps_per_trial: int, init_val: int, max_trials: int, batch_arg_name: str, margin: float,
        max_val: int,
    ) -> None:  # fmt: skip
        if not 0.0 <= margin < 1.0:
            raise ValueError(f"`margin` should be between 0 and 1. Found margin={margin}")
        mode = mode.lower()
        check_batch_size_mode(mode)
        self.mode = mode
        self.steps_per_trial = steps_per_trial
        self.init_val = init_val
        self.max_trials = max_trials
        self.batch_arg_name = batch_arg_name
        self.margin = margin
        self.max_val = max_val

    def run(self, trainer: Trainer, model: LightningModule, datamodule: Any, method: str) -> int | None:
        """Search on trial copies of `trainer`; set the size found on every holder of the attribute and return it
        (None under `fast_dev_run`). The model's weights are restored."""
        loaders = probe_loaders(trainer, model, method, datamodule)
        combined = _combined(loaders, method)
        if method != "fit" and combined is not None and len(combined.flattened) > 1:
            prefix = "val" if method == "validate" else method
            raise MisconfigurationException(f"The Batch size finder cannot be used with multiple {prefix} dataloaders.")
        attribute = _BatchSizeAttribute(model, datamodule, self.batch_arg_name)
        if trainer.fast_dev_run:
            rank_zero_warn("Skipping batch size scaler since `fast_dev_run` is enabled.")
            return None

        def trial(size: int) -> bool:
            attribute.set(size)
            try:
                short_run(trainer, model, method, self.steps_per_trial, datamodule)
            except RuntimeError as error:
                if not is_oom_error(error):
                    raise
                free_memory()
                return False
            return True

        with kept_weights(trainer, model):
            size = search_batch_size(trial, self.mode, self.init_val, self.max_trials, self.margin, self.max_val,
                                     length=_dataset_length(combined), current=attribute.get())  # fmt: skip
        attribute.set(size)
        log.info(f"Finished batch size finder, will continue with full run using batch size {size}")
        return size


class _BatchSizeAttribute:
    """The batch size wherever Lightning's tuner looks for it: the model, its hparams, the datamodule, its hparams.
    It is read from the last of them and written to all."""

    def __init__(self, model: LightningModule, datamodule: Any, name: str) -> None:
        self.name = name
        self.holders = [
            holder for owner in (model, datamodule) if owner is not None for holder in _holders(owner, name)
        ]
        if not self.holders:
            raise MisconfigurationException(
                f"Field {name} not found in `model`, `datamodule`, nor their `hparams` attributes. Add `self.{name}`"
                " (or pass `batch_arg_name=`) so the batch size finder can change it."
            )
        hparams = getattr(model, "hparams", None)
        if hasattr(model, name) and hparams is not None and name in hparams:
            rank_zero_warn(
                f"Field `model.{name}` and `model.hparams.{name}` are mutually exclusive! `model.{name}` will be used"
                " as the initial batch size for scaling. If this is not the intended behavior, please remove either"
                " one."
            )

    def get(self) -> Any:
        holder = self.holders[-1]
        return holder[self.name] if isinstance(holder, MutableMapping) else getattr(holder, self.name)

    def set(self, value: int) -> None:
        for holder in self.holders:
            if isinstance(holder, MutableMapping):
                holder[self.name] = value
            else:
                setattr(holder, self.name, value)


def _holders(owner: Any, name: str) -> list[Any]:
    holders = [owner] if hasattr(owner, name) else []
    hparams = getattr(owner, "hparams", None)
    if hparams is not None and name in hparams:
        holders.append(hparams)
    return holders


def _combined(loaders: Any, method: str) -> CombinedLoader | None:
    """`loaders` as the stage reads them (a CombinedLoader in the stage's default mode when not one already)."""
    if loaders is None or isinstance(loaders, CombinedLoader):
        return loaders
    return CombinedLoader(loaders, "max_size_cycle" if method == "fit" else "sequential")


def _dataset_length(combined: CombinedLoader | None) -> int | None:
    """The length Lightning compares the batch size with: the datasets' lengths combined by the loader's mode (sum
    when sequential, min for min_size, else max); None when no dataset has a length."""
    if combined is None:
        return None
    datasets = [getattr(loader, "dataset", None) for loader in combined.flattened]
    lengths = [len(dataset) for dataset in datasets if isinstance(dataset, Sized)]
    if not lengths:
        return None
    return (
        sum(lengths) if combined.mode == "sequential" else min(lengths) if combined.mode == "min_size" else max(lengths)
    )


class _Sizes:
    """The size being tried and the moves between sizes, with Lightning's messages: a size at least the dataset's
    length is not moved from (there is nothing larger to try)."""

    def __init__(self, length: int | None, current: int) -> None:
        self.length = length
        self.current = current

    def move(
        self, value: int | None = None, factor: float = 1.0, desc: str | None = None, max_val: int = 8192
    ) -> tuple[int, bool]:
        """(the next size, whether it differs from the current one)."""
        current = self.current
        if self.length is not None and current >= self.length:
            rank_zero_info(
                f"The batch size {current} is greater or equal than the length of your dataset: {self.length}."
            )
            return current, False
        new = value if value is not None else int(current * factor)
        if new > max_val:
            if desc:
                rank_zero_info(f"Batch size {new} exceeds max_val limit {max_val}, capping at {max_val}")
            new = max_val
        if desc:
            rank_zero_info(f"Batch size {current} {desc}, trying batch size {new}")
        self.current = new
        return new, new != current


def search_batch_size(
    trial: Callable[[int], bool], mode: str, init_val: int, max_trials: int, margin: float = 0.0, max_val: int = 8192,
    length: int | None = None, current: int | None = None,
) -> int:  # fmt: skip
    """Lightning's batch-size search over `trial` (True: the size ran; False: out of memory).

    "power" doubles from `init_val` until a failure (a failure before any success halves); "binsearch" then bisects
    between the largest success and the smallest failure, `max_trials` counting the successes, and takes `margin`
    off the result. Sizes are not moved beyond `length` (the dataset's) nor tried from `max_val` on. `current` is the
    attribute's value before the search: when it already reaches `length`, the search starts from it.
    """
    sizes = _Sizes(length, init_val if current is None else current)
    size, _ = sizes.move(value=init_val)
    if mode == "power":
        return _power(trial, sizes, size, max_trials, max_val)
    size = _binsearch(trial, sizes, size, max_trials, max_val)
    reduced = max(1, int(size * (1 - margin)))
    if margin > 0 and reduced != size:
        rank_zero_info(f"Applying margin of {margin:.1%}, reducing batch size from {size} to {reduced}")
        size = reduced
    return size


def _power(trial: Callable[[int], bool], sizes: _Sizes, size: int, max_trials: int, max_val: int) -> int:
    any_success = False
    for index in range(max_trials):
        free_memory()
        if size >= max_val:
            rank_zero_info(f"Reached the maximum batch size limit of {max_val}. Stopping search.")
            break
        if trial(size):
            if index + 1 >= max_trials:
                break
            size, changed = sizes.move(factor=2.0, desc="succeeded")
            if not changed:
                break
            any_success = True
        else:
            size, _ = sizes.move(factor=0.5, desc="failed")
            if any_success:
                break
    return size


def _binsearch(trial: Callable[[int], bool], sizes: _Sizes, size: int, max_trials: int, max_val: int) -> int:
    low, high, successes = 1, 0, 0  # high: the smallest size that failed (0: none yet)
    while True:
        free_memory()
        if size >= max_val:
            rank_zero_info(f"Reached the maximum batch size limit of {max_val}. Stopping search.")
            return size
        if trial(size):
            successes += 1
            if successes >= max_trials:
                return size
            low = size
            if high and high - low <= 1:
                return size
            target = (high + low) // 2 if high else None
            size, changed = sizes.move(value=target, factor=2.0, desc="succeeded", max_val=max_val)
            if not changed:
                return size
        else:
            high = size
            size, changed = sizes.move(value=(high + low) // 2, desc="failed")
            if high - low <= 1 or not changed:  # `changed`: a size that cannot move would be retried forever
                return size


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


def fit_training_data(trainer: Trainer) -> tuple[Any, Any]:
    """`(train_dataloaders, datamodule)` of the running fit, for a tuner callback's search (one device only)."""
    if trainer.world_size > 1:
        raise MisconfigurationException("The tuner callbacks run on one device only; tune before launching DDP.")
    return training_data_of(trainer)
