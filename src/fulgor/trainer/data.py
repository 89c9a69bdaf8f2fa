"""Dataloaders: where they come from (arguments, datamodule, module), how a collection of them is combined (training:
one `max_size_cycle` CombinedLoader; evaluation: one loader after another), how many batches each stage runs, and the
samplers fulgor swaps in (overfitting now; distributed and resumable samplers build on `rebuild_dataloader`)."""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator
from functools import partial
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from torch.utils.data import DataLoader, Dataset, IterableDataset, RandomSampler, SequentialSampler
from torch.utils.data.dataloader import _MultiProcessingDataLoaderIter

from fulgor.combined_loader import MODES, CombinedLoader, Mode, combined_length, flatten
from fulgor.data.sizes import has_len_all_ranks
from fulgor.datamodule import LightningDataModule, dataloader_is_defined
from fulgor.errors import MisconfigurationException, PossibleUserWarning
from fulgor.hook_signature import is_param_in_hook_signature
from fulgor.module import LightningModule
from fulgor.overridden import is_overridden
from fulgor.rank import rank_zero_warn, warn_once
from fulgor.seed import pl_worker_init_function
from fulgor.trainer.dispatch import call_module
from fulgor.trainer.loader_warnings import check_workers
from fulgor.trainer.preemption import shield_workers
from fulgor.trainer.state import RunningStage

if TYPE_CHECKING:
    from fulgor.trainer.run import Run


class DataSource:
    """Where one stage's dataloaders come from: the argument given to fit/validate/..., else a method."""

    def __init__(self, instance: Any, name: str) -> None:
        self.instance = instance  # dataloader(s), a LightningModule or a LightningDataModule
        self.name = name  # e.g. "train_dataloader"

    def is_defined(self) -> bool:
        if not _is_module_or_dm(self.instance):
            return self.instance is not None
        if isinstance(self.instance, LightningModule):
            return is_overridden(self.name, self.instance, LightningModule)
        return dataloader_is_defined(self.instance, self.name)

    def request(self, run: Run) -> Any:
        if isinstance(self.instance, LightningModule):
            return call_module(run, self.name)
        if _is_module_or_dm(self.instance):
            return getattr(self.instance, self.name)()
        return self.instance


def _is_module_or_dm(obj: Any) -> bool:
    return isinstance(obj, (LightningModule, LightningDataModule))


def select_source(module: LightningModule, datamodule: Any, given: Any, name: str) -> DataSource:
    """Explicit loaders win, then the datamodule's method, then the module's."""
    if given is not None:
        return DataSource(given, name)
    if datamodule is not None:
        return DataSource(datamodule, name)
    return DataSource(module, name)


_LIMIT_FLAGS = {
    "train": "limit_train_batches",
    "val": "limit_val_batches",
    "test": "limit_test_batches",
    "predict": "limit_predict_batches",
}


def as_combined(loaders: Any, mode: Mode) -> CombinedLoader | None:
    """The CombinedLoader that Lightning would read `loaders` through: the given one, or a collection of loaders in
    `mode`; None for a single loader (read directly: the same batches, without a wrapper on every step)."""
    if isinstance(loaders, CombinedLoader):
        return loaders
    return None if flatten(loaders)[1] is None else CombinedLoader(loaders, mode)


def epoch_batches(loader: Any, iterator: Iterator[Any]) -> Iterator[Any]:
    """The batches of a pass over `loader`: a CombinedLoader's items are (batch, batch_idx, dataloader_idx)."""
    if isinstance(loader, CombinedLoader):
        # Through `__next__` only: `iter()` of a CombinedLoader starts a new pass.
        return map(itemgetter(0), iter(iterator.__next__, _NEVER))
    return iterator


_NEVER = object()


def member_loaders(loader: Any) -> list[Any]:
    """The loaders inside `loader` (itself, unless it is a CombinedLoader)."""
    return list(loader.flattened) if isinstance(loader, CombinedLoader) else [loader]


def set_sampler_epoch(loader: Any, epoch: int) -> None:
    """Tell the samplers of `loader` (each member of a CombinedLoader) that shuffle per epoch, e.g.
    DistributedSampler, which epoch this is: its `sampler` and its batch sampler's `sampler`, each once."""
    for member in member_loaders(loader):
        samplers = [getattr(member, "sampler", None), getattr(getattr(member, "batch_sampler", None), "sampler", None)]
        for i, sampler in enumerate(samplers):
            set_epoch = getattr(sampler, "set_epoch", None)
            if callable(set_epoch) and not any(sampler is other for other in samplers[:i]):
                set_epoch(epoch)


def shutdown_workers(run: Run) -> None:
    """As a run ends (finished or failed): stop the worker processes of every loader it read, persistent ones
    included, and drop their iterators, as Lightning does (a later run starts them again)."""
    run.live_iterators.clear()
    loaders = [run.train_loader, *(loader for stage in run.loaders.values() for loader in stage)]
    for loader in loaders:
        for member in member_loaders(loader) if loader is not None else ():
            iterator = getattr(member, "_iterator", None) if isinstance(member, DataLoader) else None
            if isinstance(iterator, _MultiProcessingDataLoaderIter):
                iterator._shutdown_workers()
            if iterator is not None:
                member._iterator = None


def check_iterable(loader: Any, source: DataSource, fn: str) -> None:
    """Fail early, naming the method, when a stage's data cannot be iterated (Lightning's test: `iter()` works, so a
    Dataset with `__getitem__` is read item by item, as Lightning reads it)."""
    if isinstance(loader, DataLoader):
        return  # always iterable; `iter()` on it would start its workers
    if isinstance(loader, Dataset):  # Lightning reads it silently; almost always a forgotten DataLoader
        where = f"`{type(source.instance).__name__}.{source.name}()`" if _is_module_or_dm(source.instance) else fn
        rank_zero_warn(
            f"The data of {where} is a `{type(loader).__name__}` (a Dataset, not a DataLoader): it is read one item at"
            " a time, without batching. Wrap it: `DataLoader(dataset, batch_size=...)`.",
            category=PossibleUserWarning,
        )
    try:
        iter(loader)
    except TypeError:
        help_ = " It cannot be read because it is not iterable: pass a `torch.utils.data.DataLoader`."
        if _is_module_or_dm(source.instance):
            raise TypeError(
                f"An invalid dataloader was returned from `{type(source.instance).__name__}.{source.name}()`."
                f" Found {loader}.{help_}"
            ) from None
        prefix = "train_" if fn == "fit" else ""  # Lightning's wording, for the validation data of fit too
        raise TypeError(
            f"An invalid dataloader was passed to `Trainer.{fn}({prefix}dataloaders=...)`. Found {loader}.{help_}"
        ) from None


def loader_length(loader: Any, strategy: Any) -> int | float:
    """`len(loader)`, or inf for iterables without a length; checked over the ranks with Lightning's warnings (an
    empty loader, an `IterableDataset` that defines `__len__`)."""
    return len(loader) if has_len_all_ranks(loader, strategy) else float("inf")


def num_batches(stage: RunningStage, length: int | float, limit: int | float) -> int | float:
    """How many batches of a loader of `length` a stage runs under `limit_*_batches` (Lightning's rule)."""
    if length == 0:
        return 0
    prefix = stage.dataloader_prefix
    result: int | float = length
    if isinstance(limit, int):
        result = min(length, limit)
    elif isinstance(limit, float) and length != float("inf"):
        result = int(length * limit)
    elif limit != 1.0:
        raise MisconfigurationException(
            f"When using an `IterableDataset`, `Trainer(limit_{prefix}_batches)` must be"
            f" `1.0` or an int. An int specifies `num_{prefix}_batches` to use."
        )
    if result == 0 and limit > 0.0 and isinstance(limit, float) and length != float("inf"):
        raise MisconfigurationException(
            f"You requested to check {limit} of the `{prefix}_dataloader` but"
            f" {limit} * {length} < 1. Please increase the"
            f" `limit_{prefix}_batches` argument. Try at least"
            f" `limit_{prefix}_batches={1.0 / length}`"
        )
    return result


def prepare_loader(run: Run, loader: Any, stage: RunningStage) -> Any:
    """Per-loader adjustments: overfitting samplers, the shuffling warning, and worker seeding."""
    if not isinstance(loader, DataLoader):
        return loader
    if stage != RunningStage.TRAINING and isinstance(loader.sampler, RandomSampler):
        rank_zero_warn(
            f"Your `{stage.dataloader_prefix}_dataloader`'s sampler has shuffling enabled,"
            " it is strongly recommended that you turn shuffling off for val/test dataloaders.",
            PossibleUserWarning,
        )
    config = run.config
    overfitting = config.overfit_batches > 0 and stage in (RunningStage.TRAINING, RunningStage.VALIDATING)
    if overfitting and isinstance(loader.sampler, RandomSampler):
        if stage == RunningStage.TRAINING:
            rank_zero_warn(
                "You requested to overfit but enabled train dataloader shuffling."
                " We are turning off the train dataloader shuffling for you."
            )
        loader = rebuild_dataloader(loader, SequentialSampler(loader.dataset))  # type: ignore[arg-type]
    sampler_kwargs = run.strategy.distributed_sampler_kwargs
    if config.use_distributed_sampler and sampler_kwargs is not None and _can_distribute(loader):
        from torch.utils.data import DistributedSampler

        # Lightning's rule: the training sampler always shuffles (seeded by PL_GLOBAL_SEED), evaluation never does.
        shuffle = stage == RunningStage.TRAINING and not config.overfit_batches
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        replicas, rank = sampler_kwargs["num_replicas"], sampler_kwargs["rank"]
        sampler: DistributedSampler[Any] = DistributedSampler(loader.dataset, replicas, rank, shuffle, seed)
        loader = rebuild_dataloader(loader, sampler)
    if os.environ.get("PL_SEED_WORKERS") == "1" and loader.num_workers > 0 and loader.worker_init_fn is None:
        loader.worker_init_fn = partial(pl_worker_init_function, rank=run.strategy.global_rank)
    shield_workers(loader)  # workers ignore the stop signals: a signal to the process group stops at a safe point
    name = f"{stage.dataloader_prefix}_dataloader"
    check_workers(loader, name, run.trainer.num_devices, config.reload_dataloaders_every_n_epochs)
    if not run.fitting:  # (fit sets it as each epoch or validation starts) some shuffle by the training epoch
        set_sampler_epoch(loader, run.state.epoch)
    return loader


def _can_distribute(loader: DataLoader[Any]) -> bool:
    """A DistributedSampler replaces Random/Sequential samplers only: user distributed or custom samplers, custom
    batch samplers and iterable datasets are left as they are."""
    from torch.utils.data import BatchSampler

    if isinstance(loader.dataset, IterableDataset) or type(loader.sampler) not in (RandomSampler, SequentialSampler):
        return False
    return loader.batch_sampler is None or type(loader.batch_sampler) is BatchSampler


_LOADER_ARGS = (
    "batch_size", "num_workers", "collate_fn", "pin_memory", "drop_last", "timeout", "worker_init_fn",
    "multiprocessing_context", "generator", "prefetch_factor", "persistent_workers", "pin_memory_device", "in_order",
)  # fmt: skip


def rebuild_dataloader(loader: DataLoader[Any], sampler: Any, batch_sampler: Any = None) -> DataLoader[Any]:
    """A copy of `loader` (same dataset and arguments) that draws indices from `sampler` or `batch_sampler`."""
    accepted = inspect.signature(DataLoader.__init__).parameters
    kwargs = {name: getattr(loader, name) for name in _LOADER_ARGS if name in accepted and hasattr(loader, name)}
    if loader.batch_sampler is None:  # batch_size=None: samples are batches
        kwargs["batch_size"] = None
    if kwargs.get("num_workers", 0) == 0:
        kwargs.pop("prefetch_factor", None)
        kwargs["persistent_workers"] = False
    if batch_sampler is not None:
        # batch_size/drop_last belong to the batch sampler; DataLoader refuses them next to one.
        kwargs.pop("batch_size", None)
        kwargs.pop("drop_last", None)
        kwargs["batch_sampler"] = batch_sampler
    else:
        kwargs["sampler"] = sampler
    return DataLoader(loader.dataset, **kwargs)


BATCH_TRANSFER_HOOKS = ("on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer")


def batch_transfer_owners(run: Run) -> list[Any]:
    """For each batch-transfer hook, the object whose method runs (Lightning's rule, hook by hook): the datamodule's
    where it overrides the hook, else the module's; a module override next to a datamodule gets Lightning's
    warning."""
    module, datamodule = run.module, run.datamodule
    if datamodule is None:
        return [module] * len(BATCH_TRANSFER_HOOKS)
    owners: list[Any] = []
    for hook in BATCH_TRANSFER_HOOKS:
        in_module = is_overridden(hook, module)
        if is_overridden(hook, datamodule):
            if in_module:
                warn_once(
                    f"You have overridden `{hook}` in both `LightningModule` and `LightningDataModule`."
                    " It will use the implementation from `LightningDataModule` instance."
                )
            owners.append(datamodule)
            continue
        if in_module:
            warn_once(
                f"You have overridden `{hook}` in `LightningModule` but have passed in a"
                " `LightningDataModule`. It will use the implementation from `LightningModule` instance."
            )
        owners.append(module)
    return owners


def accepts_batch_idx(step: Any) -> bool:
    """Whether a `*_step` takes `batch_idx` (a parameter of that name, `*args`, or a second positional one)."""
    return is_param_in_hook_signature(step, "batch_idx", min_args=2)


def check_dataloader_idx(module: LightningModule, hooks: tuple[str, ...], several: bool, loader_name: str) -> None:
    """Lightning's signature checks of `hooks` (a `*_step`, `on_*_batch_start/end`) against the number of loaders:
    several loaders need a `dataloader_idx` parameter (or `*args`); a single one must not require it."""
    cls = type(module).__name__
    for hook in hooks:
        fn = getattr(module, hook)
        present = is_param_in_hook_signature(fn, "dataloader_idx")
        if several and not present:
            raise RuntimeError(
                f"You provided multiple `{loader_name}`, but no `dataloader_idx` argument in `{cls}.{hook}()`."
                " Try adding `dataloader_idx=0` to its signature."
            )
        if not several and present:
            params = inspect.signature(fn).parameters
            if "dataloader_idx" in params and params["dataloader_idx"].default is inspect.Parameter.empty:
                raise RuntimeError(
                    f"You provided only a single `{loader_name}`, but have included `dataloader_idx` in"
                    f" `{cls}.{hook}()`. Either remove the argument or give it a default value i.e."
                    " `dataloader_idx=0`."
                )


def validation_enabled(run: Run) -> bool:
    """Whether fit will validate: a validation_step, validation data, and `limit_val_batches` > 0."""
    source = run.sources.get("val")
    return bool(
        source is not None
        and source.is_defined()
        and is_overridden("validation_step", run.module)
        and run.config.limit_val_batches > 0
    )


def setup_train_data(run: Run) -> None:
    """Request the training data (once), count its batches and derive the validation interval. The epoch iterators
    are created later (the first before `on_train_start`, the others at each epoch start), as Lightning does, so
    random samplers draw their seeds at the same moments."""
    if run.config.limit_train_batches == 0 or not is_overridden("training_step", run.module):
        run.num_training_batches = 0
        return
    if run.train_loader is None:
        _request_train_loader(run)


def _request_train_loader(run: Run) -> None:
    source = run.sources["train"]
    requested = source.request(run)
    combined = as_combined(requested, "max_size_cycle")
    config = run.config
    if combined is None:
        check_iterable(requested, source, run.fn.value)
        run.train_loader = prepare_loader(run, requested, RunningStage.TRAINING)
        length = loader_length(run.train_loader, run.strategy)
        run.num_training_batches = num_batches(RunningStage.TRAINING, length, config.limit_train_batches)
    else:
        run.train_loader = combined
        run.num_training_batches = _prepare_combined(run, combined, source, RunningStage.TRAINING)
    run.state.batch_counts["train"] = run.num_training_batches
    run.last_train_reload_epoch = run.state.epoch
    # Lightning's rule: the loader is sized when its batch count is finite (an iterable dataset under an int limit is).
    run.val_check_batch = _val_check_batch(run, sized=run.num_training_batches != float("inf"))
    log_every = config.log_every_n_steps
    if run.trainer.loggers and run.num_training_batches < log_every and not config.fast_dev_run:
        rank_zero_warn(
            f"The number of training batches ({run.num_training_batches}) is smaller than the logging interval"
            f" Trainer(log_every_n_steps={log_every}). Set a lower value for log_every_n_steps if"
            " you want to see logs for the training epoch.",
            PossibleUserWarning,
        )


def _prepare_combined(run: Run, combined: CombinedLoader, source: DataSource, stage: RunningStage) -> int | float:
    """Prepare each loader of `combined` as a loader of its own, set each one's batch limit; return how many batches
    a pass over `combined` runs (Lightning's count: the mode's rule over the limited lengths)."""
    loaders = []
    for loader in combined.flattened:
        check_iterable(loader, source, run.fn.value)
        loaders.append(prepare_loader(run, loader, stage))
    combined.flattened = loaders
    limit = getattr(run.config, _LIMIT_FLAGS[stage.dataloader_prefix])
    combined.limits = [num_batches(stage, loader_length(loader, run.strategy), limit) for loader in loaders]
    return combined_length(combined)


def check_train_mode(loader: Any) -> None:
    """Training reads batches side by side: a `sequential` CombinedLoader is refused (as Lightning does, once the
    epoch has started)."""
    if isinstance(loader, CombinedLoader) and loader.mode == "sequential":
        raise ValueError(
            '`_FitLoop` does not support the `CombinedLoader(mode="sequential")` mode.'
            f" The available modes are: {[m for m in MODES if m != 'sequential']}"
        )


def _val_check_batch(run: Run, sized: bool) -> int | float:
    """Every how many training batches validation runs (inf: at the epoch's end or on a time interval)."""
    n = run.num_training_batches
    config = run.config
    interval = config.val_check_interval
    if config.val_check_time_interval is not None:
        return float("inf")
    if isinstance(interval, int):
        if interval > n and config.check_val_every_n_epoch is not None and config.limit_val_batches > 0:
            raise ValueError(
                f" `val_check_interval` ({interval}) must be less than or equal"
                f" to the number of the training batches ({n})."
                " If you want to disable validation set `limit_val_batches` to 0.0 instead."
                " If you want to validate based on the total training batches, set `check_val_every_n_epoch=None`."
            )
        return interval
    if not sized:
        if interval != 1.0:
            raise MisconfigurationException(
                "When using an IterableDataset for `train_dataloader`,"
                " `Trainer(val_check_interval)` must be time based, `1.0` or an int. An int k specifies"
                " checking validation every k training batches."
            )
        return float("inf")
    return max(1, int(n * interval))


def reload_train_data_if_due(run: Run) -> Any:
    """The training loader for this epoch, re-requested every `reload_dataloaders_every_n_epochs` epochs."""
    every = run.config.reload_dataloaders_every_n_epochs
    last = run.last_train_reload_epoch
    if every and last is not None and run.state.epoch - last >= every:
        _request_train_loader(run)
    return run.train_loader


def eval_loaders(run: Run, stage: RunningStage) -> tuple[list[Any], list[int | float]]:
    """The loaders of an evaluation stage, read one after the other, and how many batches each runs (requested once
    per run). A CombinedLoader in a mode other than `sequential` is one loader whose batches hold one batch of each
    of its loaders."""
    key = RunningStage.VALIDATING if stage == RunningStage.SANITY_CHECKING else stage
    if key not in run.loaders:
        _request_eval_loaders(run, key)
    loaders, limits = run.loaders[key], run.limits[key]
    if stage == RunningStage.SANITY_CHECKING:
        limits = [min(run.config.num_sanity_val_steps, n) for n in limits]
    if loaders and isinstance(loaders[0], CombinedLoader):  # `limits` are its members' (`trainer.num_val_batches`)
        loaders[0].limits = limits
        limits = [combined_length(loaders[0])]
    return loaders, limits


def _request_eval_loaders(run: Run, stage: RunningStage) -> None:
    prefix = stage.dataloader_prefix
    source = run.sources.get(prefix)
    limit = getattr(run.config, _LIMIT_FLAGS[prefix])
    if source is None or not source.is_defined() or limit == 0:
        run.loaders[stage], run.limits[stage] = [], []
        return
    requested = source.request(run)
    combined = as_combined(requested, "sequential")
    if combined is None:
        check_iterable(requested, source, run.fn.value)
        loader = prepare_loader(run, requested, stage)
        length = loader_length(loader, run.strategy)
        run.loaders[stage], run.limits[stage] = [loader], [num_batches(stage, length, limit)]
        run.loader_views[stage] = loader
    else:
        _prepare_combined(run, combined, source, stage)
        sequential = combined.mode == "sequential"
        run.loaders[stage] = list(combined.flattened) if sequential else [combined]
        run.limits[stage] = list(combined.limits or [])
        run.loader_views[stage] = combined.iterables  # `trainer.val_dataloaders` & co. show the collection given
    counts_key = "fit_val" if stage == RunningStage.VALIDATING and run.fitting else stage.value
    run.state.batch_counts[counts_key] = list(run.limits[stage])
    # Lightning's reload clock: a load by the sanity check counts only if this epoch validates (else the epoch that
    # validates first loads again).
    sanity = run.state.stage == RunningStage.SANITY_CHECKING
    if stage == RunningStage.VALIDATING and run.fitting and (not sanity or is_validation_epoch(run)):
        run.last_val_reload_epoch = run.state.epoch


def check_predict_mode(loaders: list[Any]) -> None:
    """Prediction reads its loaders one after the other: a CombinedLoader in another mode is refused, as Lightning
    does."""
    if loaders and isinstance(loaders[0], CombinedLoader):
        raise ValueError('`trainer.predict()` only supports the `CombinedLoader(mode="sequential")` mode.')


def setup_val_data_for_fit(run: Run) -> None:
    """Request the validation loaders before `on_train_start` if the sanity check did not and this epoch validates
    (progress bar totals), as Lightning does."""
    if is_validation_epoch(run) and RunningStage.VALIDATING not in run.loaders:
        _request_eval_loaders(run, RunningStage.VALIDATING)


def is_validation_epoch(run: Run) -> bool:
    """Whether fit validates in the current epoch (`check_val_every_n_epoch`)."""
    every = run.config.check_val_every_n_epoch
    return validation_enabled(run) and (every is None or (run.state.epoch + 1) % every == 0)


def reload_val_data_if_due(run: Run) -> None:
    """Drop the validation loaders when `reload_dataloaders_every_n_epochs` epochs passed since they were loaded
    (they are then requested again as the validation starts)."""
    every = run.config.reload_dataloaders_every_n_epochs
    last = run.last_val_reload_epoch
    if every and (last is None or run.state.epoch - last >= every):
        run.loaders.pop(RunningStage.VALIDATING, None)
