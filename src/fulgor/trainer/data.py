"""Dataloaders: where they come from (arguments, datamodule, module), how a collection of them is combined (training:
one `max_size_cycle` CombinedLoader; evaluation: one loader after another), how many batches each stage runs, and the
samplers fulgor swaps in (overfitting now; distributed and resumable samplers build on `rebuild_dataloader`)."""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterable, Iterator
from functools import partial
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from torch.utils.data import DataLoader, IterableDataset, RandomSampler, SequentialSampler

from fulgor.combined_loader import MODES, CombinedLoader, Mode, combined_length, flatten
from fulgor.datamodule import LightningDataModule, dataloader_is_defined
from fulgor.errors import MisconfigurationException, PossibleUserWarning
from fulgor.module import LightningModule, is_overridden
from fulgor.rank import rank_zero_warn
from fulgor.seed import pl_worker_init_function
from fulgor.trainer.dispatch import call_module
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


def check_iterable(loader: Any, source: DataSource, stage: RunningStage) -> None:
    """Fail early, naming the method, when a stage's data is not iterable."""
    if isinstance(loader, Iterable):
        return
    origin = (
        f"`{type(source.instance).__name__}.{source.name}()`"
        if _is_module_or_dm(source.instance)
        else f"`Trainer.{_trainer_fn_name(stage)}({_arg_name(stage)}=...)`"
    )
    raise TypeError(
        f"An invalid dataloader was passed to {origin}. Found {loader!r}: it is not iterable."
        " Return a `torch.utils.data.DataLoader` (or any iterable of batches)."
    )


def _trainer_fn_name(stage: RunningStage) -> str:
    return {"train": "fit", "sanity_check": "fit"}.get(stage.value, stage.value)


def _arg_name(stage: RunningStage) -> str:
    return {"train": "train_dataloaders", "sanity_check": "val_dataloaders"}.get(stage.value, "dataloaders")


def loader_length(loader: Any) -> int | float:
    """`len(loader)`, or inf for iterables without a length."""
    if isinstance(loader, DataLoader) and isinstance(loader.dataset, IterableDataset):
        try:
            return len(loader)
        except TypeError:
            return float("inf")
    try:
        return len(loader)
    except (TypeError, NotImplementedError):
        return float("inf")


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


def resolve_batch_transfer(run: Run) -> Any:
    """The object whose batch-transfer hooks run: the datamodule's when it overrides them (with a warning)."""
    module = run.module
    datamodule = run.datamodule
    if datamodule is None:
        return module
    owner: Any = module
    for hook in ("on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer"):
        if is_overridden(hook, datamodule, LightningDataModule):
            if is_overridden(hook, module, LightningModule):
                rank_zero_warn(
                    f"You have overridden `{hook}` in both `LightningModule` and `LightningDataModule`."
                    " It will use the implementation from `LightningDataModule` instance."
                )
            owner = datamodule
    return owner


def accepts_batch_idx(step: Any) -> bool:
    """Whether a `*_step` takes `batch_idx` (a parameter of that name, `*args`, or a second positional one)."""
    params = inspect.signature(step).parameters.values()
    if any(p.name == "batch_idx" or p.kind is p.VAR_POSITIONAL for p in params):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2


def step_accepts_dataloader_idx(step: Any) -> tuple[bool, bool]:
    """(has a `dataloader_idx` parameter, that parameter has no default)."""
    params = inspect.signature(step).parameters
    if "dataloader_idx" not in params:
        return False, False
    return True, params["dataloader_idx"].default is inspect.Parameter.empty


def check_dataloader_idx(module: LightningModule, step_name: str, num_loaders: int, loader_name: str) -> None:
    """Lightning's signature checks for `*_step(..., dataloader_idx)` against the number of loaders."""
    has_arg, required = step_accepts_dataloader_idx(getattr(module, step_name))
    cls = type(module).__name__
    if num_loaders > 1 and not has_arg:
        raise RuntimeError(
            f"You provided multiple `{loader_name}`, but no `dataloader_idx` argument in `{cls}.{step_name}()`."
            " Try adding `dataloader_idx=0` to its signature."
        )
    if num_loaders == 1 and required:
        raise RuntimeError(
            f"You provided only a single `{loader_name}`, but have included `dataloader_idx` in"
            f" `{cls}.{step_name}()`. Either remove the argument or give it a default value i.e."
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
        check_iterable(requested, source, RunningStage.TRAINING)
        run.train_loader = prepare_loader(run, requested, RunningStage.TRAINING)
        length = loader_length(run.train_loader)
        run.num_training_batches = num_batches(RunningStage.TRAINING, length, config.limit_train_batches)
    else:
        run.train_loader = combined
        run.num_training_batches = _prepare_combined(run, combined, source, RunningStage.TRAINING)
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
        check_iterable(loader, source, stage)
        loaders.append(prepare_loader(run, loader, stage))
    combined.flattened = loaders
    limit = getattr(run.config, _LIMIT_FLAGS[stage.dataloader_prefix])
    combined.limits = [num_batches(stage, loader_length(loader), limit) for loader in loaders]
    return combined_length(combined)


def check_train_mode(loader: Any) -> None:
    """Training reads batches side by side: a `sequential` CombinedLoader is refused (as Lightning does, once the
    epoch has started)."""
    if isinstance(loader, CombinedLoader) and loader.mode == "sequential":
        raise ValueError(
            '`Trainer.fit` does not support the `CombinedLoader(mode="sequential")` mode.'
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
        check_iterable(requested, source, stage)
        loader = prepare_loader(run, requested, stage)
        run.loaders[stage], run.limits[stage] = [loader], [num_batches(stage, loader_length(loader), limit)]
        run.loader_views[stage] = loader
    else:
        _prepare_combined(run, combined, source, stage)
        sequential = combined.mode == "sequential"
        run.loaders[stage] = list(combined.flattened) if sequential else [combined]
        run.limits[stage] = list(combined.limits or [])
        run.loader_views[stage] = combined.iterables  # `trainer.val_dataloaders` & co. show the collection given
    if stage == RunningStage.VALIDATING:
        run.last_val_reload_epoch = run.state.epoch


def check_predict_mode(loaders: list[Any]) -> None:
    """Prediction reads its loaders one after the other: a CombinedLoader in another mode is refused, as Lightning
    does."""
    if loaders and isinstance(loaders[0], CombinedLoader):
        raise ValueError('`trainer.predict()` only supports the `CombinedLoader(mode="sequential")` mode.')


def setup_val_data_for_fit(run: Run) -> None:
    """Request the validation loaders before `on_train_start` if the sanity check did not (progress bar totals)."""
    if validation_enabled(run) and RunningStage.VALIDATING not in run.loaders:
        _request_eval_loaders(run, RunningStage.VALIDATING)


def reload_val_data_if_due(run: Run) -> None:
    every = run.config.reload_dataloaders_every_n_epochs
    last = run.last_val_reload_epoch
    if every and last is not None and run.state.epoch - last >= every:
        run.loaders.pop(RunningStage.VALIDATING, None)
