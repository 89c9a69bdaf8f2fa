"""The `self.log` store: per-hook defaults and checks, on-device step values and epoch accumulators, and the
metric dictionaries (callback, logger, progress bar) built from them. Nothing here reads a value to the host."""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor

from fulgor.errors import MisconfigurationException
from fulgor.hooks import LOG_RULES
from fulgor.rank import warn_once

DATALOADER_SUFFIX = "/dataloader_idx_{}"


class LogOptions(NamedTuple):
    """The options of one `self.log` call, as the user passed them (None: the hook's default)."""

    prog_bar: bool
    logger: bool
    on_step: bool | None
    on_epoch: bool | None
    reduce_fx: Any
    enable_graph: bool
    add_dataloader_idx: bool
    sync_dist: bool
    rank_zero_only: bool


class ResolvedOptions(NamedTuple):
    """One entry's options with the hook's defaults applied and the reduction named, for the loader it logs from."""

    prog_bar: bool
    logger: bool
    on_step: bool
    on_epoch: bool
    reduce: str  # mean, max, min or sum
    enable_graph: bool
    add_dataloader_idx: bool
    sync_dist: bool
    rank_zero_only: bool
    dataloader_idx: int | None


_REDUCE_NAMES = {"mean": "mean", "avg": "mean", "max": "max", "min": "min", "sum": "sum"}
# Python's own max/min/sum are accepted as in Lightning (`self.log(..., reduce_fx=max)`).
_REDUCE_FNS = {
    torch.mean: "mean",
    torch.max: "max",
    torch.min: "min",
    torch.sum: "sum",
    max: "max",
    min: "min",
    sum: "sum",
}


def parse_reduce_fx(reduce_fx: Any) -> str:
    """Map `reduce_fx` ("mean", "max", torch.sum, ...) to one of mean/max/min/sum."""
    if isinstance(reduce_fx, str) and reduce_fx.lower() in _REDUCE_NAMES:
        return _REDUCE_NAMES[reduce_fx.lower()]
    if callable(reduce_fx) and reduce_fx in _REDUCE_FNS:
        return _REDUCE_FNS[reduce_fx]
    raise MisconfigurationException(
        "Only `self.log(..., reduce_fx={min,max,mean,sum})` are supported."
        " If you need a custom reduction, please log a `torchmetrics.Metric` instance instead."
        f" Found: {reduce_fx}"
    )


def check_loggable(name: str, value: Any) -> None:
    """Reject values `self.log` cannot store, with Lightning's messages: a number, a tensor or a metric only (a
    list, tuple or dict is refused as a whole, naming its type; a dict of dicts is named as nested first)."""
    if isinstance(value, (Tensor, numbers.Number)) or hasattr(value, "compute"):
        return
    if isinstance(value, Mapping) and any(isinstance(v, Mapping) for v in value.values()):
        raise ValueError(f"`self.log({name}, {value})` was called, but nested dictionaries cannot be logged")
    raise ValueError(f"`self.log({name}, {value})` was called, but `{type(value).__name__}` values cannot be logged")


def default_levels(fx: str, on_step: bool | None, on_epoch: bool | None) -> tuple[bool, bool]:
    """Resolve `on_step`/`on_epoch` for a `self.log` call made in hook `fx`, with Lightning's errors."""
    rule = LOG_RULES.get(fx)
    if rule is None:
        raise MisconfigurationException(
            f"You can't `self.log()` inside `{fx}`. HINT: You can still log directly to the logger by using"
            " `self.logger.experiment`."
        )
    on_step = rule.on_step if on_step is None else on_step
    on_epoch = rule.on_epoch if on_epoch is None else on_epoch
    if rule.fixed and on_step:
        raise MisconfigurationException(f"You can't `self.log(on_step=True)` inside `{fx}`, must be one of (False,).")
    if rule.fixed and not on_epoch:
        raise MisconfigurationException(f"You can't `self.log(on_epoch=False)` inside `{fx}`, must be one of (True,).")
    if not on_step and not on_epoch:
        raise MisconfigurationException("`self.log(on_step=False, on_epoch=False)` is not useful.")
    return on_step, on_epoch


def extract_batch_size(batch: Any) -> int:
    """The batch size Lightning infers: the first dimension of the first tensor found in the batch."""
    sizes: list[int] = []
    found_other = _collect_sizes(batch, sizes)
    if not sizes:
        raise MisconfigurationException(
            "We could not infer the batch_size from the batch. Either simplify its structure"
            " or provide the batch_size as `self.log(..., batch_size=batch_size)`."
        )
    if found_other or any(size != sizes[0] for size in sizes):
        warn_once(
            "Trying to infer the `batch_size` from an ambiguous collection. The batch size we"
            f" found is {sizes[0]}. To avoid any miscalculations, use `self.log(..., batch_size=batch_size)`."
        )
    return sizes[0]


def _collect_sizes(batch: Any, sizes: list[int]) -> bool:
    """Append the first-dimension size of every tensor; return True if a non-tensor leaf was met."""
    if isinstance(batch, Tensor):
        sizes.append(1 if batch.ndim == 0 else batch.size(0))
        return False
    if isinstance(batch, (str, bytes)) or batch is None:
        return True
    if isinstance(batch, Mapping):
        children: Iterable[Any] = batch.values()
    elif dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        children = [getattr(batch, f.name) for f in dataclasses.fields(batch)]
    elif isinstance(batch, Iterable):
        children = batch
    else:
        return True
    found_other = False
    for child in children:  # visit every child: all sizes are needed for the ambiguity check
        found_other |= _collect_sizes(child, sizes)
    return found_other


class Entry:
    """One logged key of one hook: its options, its last step value and its epoch accumulator (all on device)."""

    __slots__ = (
        "acc",
        "base",
        "computed",
        "count",
        "dataloader_idx",
        "epoch_name",
        "fx",
        "logger",
        "metric",
        "name",
        "on_epoch",
        "on_step",
        "options",
        "prog_bar",
        "reduce",
        "step_name",
        "step_value",
        "suffix",
        "sync",
        "valid",
    )  # fmt: skip

    def __init__(self, base: str, fx: str, options: ResolvedOptions) -> None:
        dataloader_idx, suffix = options.dataloader_idx, options.add_dataloader_idx
        self.base = base
        self.suffix = DATALOADER_SUFFIX.format(dataloader_idx) if suffix and dataloader_idx is not None else ""
        self.name = base + self.suffix
        self.fx = fx
        self.dataloader_idx = dataloader_idx
        self.options = options
        self.prog_bar, self.logger, self.on_step, self.on_epoch, self.reduce = options[:5]  # read per step: copied
        forked = self.on_step and self.on_epoch  # the names are fixed per entry: computed once, not per step
        self.step_name = base + "_step" + self.suffix if forked else self.name
        self.epoch_name = base + "_epoch" + self.suffix if forked else self.name
        self.sync: Callable[[Tensor, str], Tensor] | None = None
        self.metric: Any = None  # a torchmetrics.Metric logged as an object
        self.step_value: Tensor | None = None
        self.acc: Tensor | None = None
        self.count = 0
        self.computed: Tensor | None = None
        self.valid = False

    def forked_name(self, on_step: bool) -> str:
        """`name_step`/`name_epoch` when logged both per step and per epoch, then the dataloader suffix."""
        return self.step_name if on_step else self.epoch_name

    def update(self, value: Tensor, batch_size: int) -> None:
        if self.on_step:
            self.step_value = value
        if self.on_epoch:
            acc = self.acc
            if self.reduce == "mean":
                self.acc = value * batch_size if acc is None else acc.add_(value, alpha=batch_size)
                self.count += batch_size
            elif acc is None:
                self.acc = value.clone()
            elif self.reduce == "sum":
                acc.add_(value)
            elif self.reduce == "max":
                torch.maximum(acc, value, out=acc)
            else:
                torch.minimum(acc, value, out=acc)
        self.computed = None
        self.valid = True

    def step(self) -> Tensor | None:
        if self.metric is not None:
            return self._metric_tensor(getattr(self.metric, "_forward_cache", None))
        value = self.step_value
        return value if self.sync is None or value is None else self.sync(value.clone(), self.reduce)

    def epoch(self) -> Tensor | None:
        if self.computed is None:
            if self.metric is not None:
                self.computed = self._metric_tensor(self.metric.compute())
            elif self.acc is not None:
                acc = self.acc if self.sync is None else self.sync(self.acc.clone(), self.reduce)
                if self.reduce == "mean":
                    # Numerator and denominator get the same reduction, so the ratio is the global weighted mean.
                    count = float(self.count) if self.sync is None else self.sync(self._count_tensor(acc), "mean")
                    acc = acc / count
                self.computed = acc
        return self.computed

    def _metric_tensor(self, value: Any) -> Tensor | None:
        """`value` (a logged Metric's forward or compute result) if it is a tensor: anything else is an error."""
        if value is None or isinstance(value, Tensor):
            return value
        raise ValueError(
            f"The `.compute()` return of the metric logged as {self.base!r} must be a tensor. Found {value}"
        )

    def _count_tensor(self, like: Tensor) -> Tensor:
        return torch.tensor(float(self.count), device=like.device, dtype=like.dtype)

    def reset(self) -> None:
        self.step_value = self.acc = self.computed = None
        self.count = 0
        self.valid = False
        if self.metric is not None:
            self.metric.reset()


class ResultStore:
    """Everything `self.log` stored during one loop (training, or one evaluation run)."""

    def __init__(self, training: bool, sync: Callable[[Tensor, str], Tensor] | None = None) -> None:
        self.training = training
        self.entries: dict[tuple[str, str, int | None], Entry] = {}
        self.touched: list[Entry] = []  # logged since the last flush into the metric dicts
        self._last_call: dict[tuple[str, str], tuple[LogOptions, int | None, Entry]] = {}
        self.batch: Any = None
        self.batch_size: int | None = None
        self.dataloader_idx: int | None = None
        self.in_epoch_phase = False  # True once the batches are done: metrics are epoch values
        self._sync = sync

    def start_batch(self, batch: Any, dataloader_idx: int | None = None) -> None:
        self.batch = batch
        self.batch_size = None
        self.dataloader_idx = dataloader_idx
        self.in_epoch_phase = False

    def log(self, fx: str, name: str, value: Any, options: LogOptions, batch_size: int | None) -> None:
        """Store one `self.log` value logged in hook `fx` with `options`."""
        cached = self._last_call.get((fx, name))
        # The same call as last time (the usual case, every step): skip validation and option resolution.
        if cached is not None and cached[0] == options and cached[1] == self.dataloader_idx:
            entry = cached[2]
        else:
            entry = self._entry_for(fx, name, options)
        if isinstance(value, Tensor) or not hasattr(value, "compute"):
            tensor = self._to_tensor(value, name, fx, options.enable_graph)
            entry.update(tensor, self._batch_size_for(entry, tensor, batch_size))
        else:  # a torchmetrics.Metric (duck-typed): computed and reset by the metric itself
            entry.metric = value
            entry.valid = True
            entry.computed = None
        self.touched.append(entry)

    def _entry_for(self, fx: str, name: str, options: LogOptions) -> Entry:
        """Validate the options of a `self.log` call and return the entry it writes to."""
        on_step, on_epoch = default_levels(fx, options.on_step, options.on_epoch)
        add_idx, dl_idx = options.add_dataloader_idx, self.dataloader_idx
        if add_idx and "/dataloader_idx_" in name:
            raise MisconfigurationException(
                f"You called `self.log` with the key `{name}`"
                " but it should not contain information about `dataloader_idx` when `add_dataloader_idx=True`"
            )
        # Without the suffix, one key serves every loader; logging it from two loaders is then an error.
        key = (fx, name, dl_idx if add_idx else None)
        resolved = ResolvedOptions(
            options.prog_bar, options.logger, on_step, on_epoch, parse_reduce_fx(options.reduce_fx),
            options.enable_graph, add_idx, options.sync_dist, options.rank_zero_only, dl_idx,
        )  # fmt: skip
        entry = self.entries.get(key)
        if entry is None:
            entry = self.entries[key] = Entry(name, fx, resolved)
            if options.sync_dist and self._sync is not None:
                entry.sync = self._sync
        elif entry.options != resolved:
            raise MisconfigurationException(
                f"You called `self.log({name}, ...)` twice in `{fx}` with different arguments. This is not allowed"
            )
        self._last_call[(fx, name)] = (options, dl_idx, entry)
        return entry

    def _to_tensor(self, value: Any, name: str, fx: str, enable_graph: bool) -> Tensor:
        if not isinstance(value, Tensor):
            return torch.tensor(float(value), dtype=torch.get_default_dtype())
        if value.numel() != 1:
            raise ValueError(
                f"`self.log({name}, {value})` was called, but the tensor must have a single element."
                f" You can try doing `self.log({name}, {value}.mean())`"
            )
        if not enable_graph:
            value = value.detach()
        if not value.is_floating_point():
            dtype = torch.get_default_dtype()
            warn_once(
                f"You called `self.log({name!r}, ...)` in your `{fx}` but the value needs to"
                f" be floating to be reduced. Converting it to {dtype}."
                " You can silence this warning by converting the value to floating point yourself."
                " If you don't intend to reduce the value (for instance when logging the global step or epoch) then"
                f" you can use `self.logger.log_metrics({{{name!r}: ...}})` instead."
            )
            value = value.to(dtype)
        elif value.dtype not in (torch.float32, torch.float64):
            value = value.to(torch.get_default_dtype())
        return value.reshape(()) if value.ndim else value  # type: ignore[no-any-return]  # detach() is untyped

    def _batch_size_for(self, entry: Entry, value: Tensor, batch_size: int | None) -> int:
        if batch_size is not None:
            return batch_size
        if self.batch_size is not None:
            return self.batch_size
        if not (entry.on_epoch and entry.reduce == "mean") or self.batch is None:
            return 1
        self.batch_size = extract_batch_size(self.batch)
        return self.batch_size

    # ------------------------------------------------------------------ metric dictionaries
    def flush(self, sink: MetricDicts) -> None:
        """Write the values logged since the last flush into `sink` (step phase), or all epoch values."""
        if self.in_epoch_phase:
            self.epoch_metrics(self.dataloader_idx, sink)
            return
        if not self.touched:
            return
        touched, self.touched = self.touched, []
        for entry in touched:
            if entry.on_step and entry.valid:
                _put(sink, entry, entry.step(), on_step=True, callback=self.training)

    def step_log_metrics(self, dataloader_idx: int | None = None) -> dict[str, Tensor]:
        """What loggers receive at a step: every valid on_step value, under its `_step` name when forked."""
        out: dict[str, Tensor] = {}
        for entry in self.entries.values():
            if entry.valid and entry.on_step and entry.logger and entry.dataloader_idx == dataloader_idx:
                value = entry.step()
                if value is not None:
                    out[entry.forked_name(True)] = value
        return out

    def epoch_metrics(self, dataloader_idx: int | None, sink: MetricDicts) -> dict[str, Tensor]:
        """Epoch values of the entries of one dataloader; written into `sink`; returns the logger part."""
        logged: dict[str, Tensor] = {}
        for entry in self.entries.values():
            if entry.valid and entry.on_epoch and entry.dataloader_idx == dataloader_idx:
                value = entry.epoch()
                if value is None:
                    continue
                _put(sink, entry, value, on_step=False, callback=True)
                if entry.logger:
                    logged[entry.forked_name(False)] = value
        self.touched.clear()
        return logged

    def reset(self) -> None:
        for entry in self.entries.values():
            entry.reset()
        self.touched.clear()
        self.batch = None
        self.in_epoch_phase = False


class MetricDicts:
    """The three dictionaries users read: `callback_metrics`, `logged_metrics` and `progress_bar_metrics`."""

    def __init__(self) -> None:
        self.callback: dict[str, Tensor] = {}
        self.logged: dict[str, Tensor] = {}
        self.pbar: dict[str, Tensor] = {}

    def clear(self) -> None:
        self.callback.clear()
        self.logged.clear()
        self.pbar.clear()


def _put(sink: MetricDicts, entry: Entry, value: Tensor | None, on_step: bool, callback: bool) -> None:
    if value is None:
        return
    forked = entry.step_name if on_step else entry.epoch_name
    if callback:
        sink.callback[entry.name] = value
        sink.callback[forked] = value
    if entry.logger:
        sink.logged[forked] = value
    if entry.prog_bar:
        sink.pbar[forked] = value


def attach_logging_functions(callbacks: Iterable[Any], module: Any) -> None:
    """Give every callback the module's `log`/`log_dict` (Lightning does this as each run starts, so a callback's hook
    can call `self.log(...)`)."""
    for callback in callbacks:
        callback.log = module.log
        callback.log_dict = module.log_dict


def check_metric_attribute(module: Any, name: str, value: Any, metric_attribute: str | None) -> None:
    """A logged torchmetrics `Metric` must be an attribute of the module (or be named by `metric_attribute`), so that
    its state is found again in checkpoints: Lightning's errors otherwise.

    Raises:
        MisconfigurationException: the module holds no metric at all, or not this one.
    """
    if metric_attribute is not None or not _is_torchmetrics_metric(value):
        return
    attributes = module.__dict__.get("_metric_attributes")
    if attributes is None:  # computed once per module, as Lightning does
        attributes = {id(m): n for n, m in module.named_modules() if _is_torchmetrics_metric(m)}
        if not attributes:
            raise MisconfigurationException(
                "Could not find the `LightningModule` attribute for the `torchmetrics.Metric` logged."
                " You can fix this by setting an attribute for the metric in your `LightningModule`."
            )
        module.__dict__["_metric_attributes"] = attributes
    if id(value) not in attributes:
        raise MisconfigurationException(
            "Could not find the `LightningModule` attribute for the `torchmetrics.Metric` logged."
            f" You can fix this by calling `self.log({name}, ..., metric_attribute=name)` where `name` is one"
            f" of {list(attributes.values())}"
        )


def _is_torchmetrics_metric(obj: Any) -> bool:
    # By class, so that torchmetrics is imported only by the user who logs its metrics.
    return any(cls.__name__ == "Metric" and cls.__module__.startswith("torchmetrics") for cls in type(obj).__mro__)
