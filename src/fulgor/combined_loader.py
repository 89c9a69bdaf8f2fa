"""CombinedLoader (Lightning's `utilities.combined_loader`): a collection of iterables (a list, tuple, dict, or any
nesting of them) read together in one of four modes. The fit loop wraps a collection of training loaders in one
(`max_size_cycle`); evaluation and prediction read their loaders one after another (`sequential`)."""

from __future__ import annotations

from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any, Literal

from torch.utils.data.dataloader import _BaseDataLoaderIter

__all__ = ["CombinedLoader", "combined_length"]

Mode = Literal["min_size", "max_size_cycle", "max_size", "sequential"]
# What iterating a CombinedLoader yields: (batch, batch_idx, dataloader_idx).
Triple = tuple[Any, int, int]

# ---------------------------------------------------------------------------------------------------------------------
# the collection's shape: which containers hold the iterables, so per-iterable values can be put back the same way


class _Shape:
    """One container of the collection: how to rebuild it from its children's values, and each child's shape with
    how many iterables that child holds. A shape of None stands for one iterable."""

    __slots__ = ("children", "rebuild")

    def __init__(self, rebuild: Callable[[list[Any]], Any], children: list[tuple[_Shape | None, int]]) -> None:
        self.rebuild = rebuild
        self.children = children


def _zip_keys(container: Callable[..., Any], keys: list[Any], values: list[Any]) -> Any:
    return container(zip(keys, values))


def _as_namedtuple(cls: type, values: list[Any]) -> Any:
    return cls(*values)


def _as_deque(maxlen: int | None, values: list[Any]) -> deque[Any]:
    return deque(values, maxlen=maxlen)


def _split(obj: Any) -> tuple[Callable[[list[Any]], Any], list[Any]] | None:
    """(how to rebuild it, its children) for the containers torch's pytree knows (exact types: a subclass of list or
    dict is one iterable, as there), None for anything else."""
    kind = type(obj)
    if kind is list:
        return list, obj
    if kind is tuple:
        return tuple, list(obj)
    if kind is dict or kind is OrderedDict:
        return partial(_zip_keys, kind, list(obj)), list(obj.values())
    if kind is defaultdict:
        return partial(_zip_keys, partial(defaultdict, obj.default_factory), list(obj)), list(obj.values())
    if kind is deque:
        return partial(_as_deque, obj.maxlen), list(obj)
    if issubclass(kind, tuple) and isinstance(getattr(kind, "_fields", None), tuple):  # a namedtuple
        return partial(_as_namedtuple, kind), list(obj)
    return None


def flatten(collection: Any) -> tuple[list[Any], _Shape | None]:
    """The iterables of `collection` in order, and its shape. A container of numbers and strings only (`[1, 2, 3]`,
    `[]`) is itself one iterable, as in Lightning."""
    split = _split(collection)
    if split is None or all(isinstance(child, (int, float, str)) for child in split[1]):
        return [collection], None
    rebuild, children = split
    leaves: list[Any] = []
    shapes: list[tuple[_Shape | None, int]] = []
    for child in children:
        child_leaves, child_shape = flatten(child)
        leaves.extend(child_leaves)
        shapes.append((child_shape, len(child_leaves)))
    return leaves, _Shape(rebuild, shapes)


def unflatten(values: list[Any], shape: _Shape | None) -> Any:
    """`values` (one per iterable) in the collection's shape."""
    if shape is None:
        return values[0]
    rebuilt: list[Any] = []
    start = 0
    for child_shape, count in shape.children:
        rebuilt.append(unflatten(values[start : start + count], child_shape))
        start += count
    return shape.rebuild(rebuilt)


# ---------------------------------------------------------------------------------------------------------------------
# the modes


def _length(iterable: Any) -> int | float:
    """`len(iterable)`, inf when it has none."""
    try:
        return len(iterable)
    except (TypeError, NotImplementedError):
        return float("inf")


def _capped_lengths(iterables: list[Any], limits: list[int | float] | None) -> list[int | float]:
    lengths = [_length(iterable) for iterable in iterables]
    if limits is None:
        return lengths
    return [min(length, limit) for length, limit in zip(lengths, limits)]


class _ModeIterator(Iterator[Triple]):
    """One pass over the iterables in a mode. Iterators are created by `__iter__`, as a DataLoader's are (worker
    processes start and random samplers draw their seeds then)."""

    def __init__(self, iterables: list[Any], limits: list[int | float] | None = None) -> None:
        if limits is not None and len(limits) != len(iterables):
            raise ValueError(f"Mismatch in number of limits ({len(limits)}) and number of iterables ({len(iterables)})")
        self.iterables = iterables
        self.limits = limits
        self.iterators: list[Iterator[Any]] = []
        self.batch_idx = 0

    def __iter__(self) -> _ModeIterator:
        self.iterators = [iter(iterable) for iterable in self.iterables]
        self.batch_idx = 0
        return self

    def __next__(self) -> Triple:
        raise NotImplementedError

    def __len__(self) -> int:
        return _as_len(self.length())

    def length(self) -> int | float:
        """How many items one pass yields (inf when an iterable has no length and no finite limit)."""
        return self.combine(_capped_lengths(self.iterables, self.limits))

    def combine(self, lengths: list[int | float]) -> int | float:
        """The pass's length from each iterable's (capped) length: the longest one's, unless a mode says otherwise."""
        return max(lengths)

    def reset(self) -> None:
        self.iterators = []
        self.batch_idx = 0

    def _emit(self, values: Any, dataloader_idx: int = 0) -> Triple:
        index = self.batch_idx
        self.batch_idx += 1
        return values, index, dataloader_idx

    def __getstate__(self) -> dict[str, Any]:
        # A DataLoader's live iterator cannot be pickled (nor is it worth sending to another process): drop those.
        state = self.__dict__.copy()
        state["iterators"] = [None if isinstance(it, _BaseDataLoaderIter) else it for it in self.iterators]
        return state


def _as_len(length: int | float) -> int:
    if isinstance(length, float):
        raise TypeError(
            f"This CombinedLoader has no length ({length}): an iterable without `__len__` (e.g. an IterableDataset)"
            " and no finite limit, or a limit that is not an int."
        )
    return length


class _MaxSizeCycle(_ModeIterator):
    """Until the longest iterable is done; shorter ones start over when they run out."""

    def __init__(self, iterables: list[Any], limits: list[int | float] | None = None) -> None:
        super().__init__(iterables, limits)
        self.exhausted: list[bool] = []

    def __iter__(self) -> _MaxSizeCycle:
        super().__iter__()
        self.exhausted = [False] * len(self.iterables)
        return self

    def __next__(self) -> Triple:
        values = []
        for i, iterator in enumerate(self.iterators):
            try:
                values.append(next(iterator))
            except StopIteration:
                self.exhausted[i] = True
                if all(self.exhausted):
                    raise
                self.iterators[i] = iter(self.iterables[i])  # this one starts over
                values.append(next(self.iterators[i]))
        return self._emit(values)

    def reset(self) -> None:
        super().reset()
        self.exhausted = []


class _MinSize(_ModeIterator):
    """Until the shortest iterable is done."""

    def combine(self, lengths: list[int | float]) -> int | float:
        return min(lengths)

    def __next__(self) -> Triple:
        return self._emit([next(iterator) for iterator in self.iterators])


class _MaxSize(_ModeIterator):
    """Until the longest iterable is done; iterables that ran out give None."""

    def __next__(self) -> Triple:
        values = [next(iterator, _DONE) for iterator in self.iterators]
        if all(value is _DONE for value in values):
            raise StopIteration
        return self._emit([None if value is _DONE else value for value in values])


_DONE = object()


class _Sequential(_ModeIterator):
    """Each iterable to its end (or its limit), one after the other; the third item is the iterable's index."""

    def combine(self, lengths: list[int | float]) -> int | float:
        return sum(lengths)

    def __init__(self, iterables: list[Any], limits: list[int | float] | None = None) -> None:
        super().__init__(iterables, limits)
        self.current = 0  # the index of the iterable being read

    def __iter__(self) -> _Sequential:
        self.current = 0
        self.batch_idx = 0
        # One iterator at a time, so one loader's workers run at a time.
        self.iterators = [iter(self.iterables[0])] if self.iterables else []
        return self

    def __next__(self) -> Triple:
        while self.current < len(self.iterables):
            limit = self.limits[self.current] if self.limits is not None else float("inf")
            if self.batch_idx < limit:
                value = next(self.iterators[0], _DONE)
                if value is not _DONE:
                    return self._emit(value, self.current)
            self._next_iterable()
        raise StopIteration

    def _next_iterable(self) -> None:
        self.current += 1
        self.batch_idx = 0
        self.iterators = [iter(self.iterables[self.current])] if self.current < len(self.iterables) else []

    def reset(self) -> None:
        super().reset()
        self.current = 0


MODES: dict[str, type[_ModeIterator]] = {
    "min_size": _MinSize,
    "max_size_cycle": _MaxSizeCycle,
    "max_size": _MaxSize,
    "sequential": _Sequential,
}


# ---------------------------------------------------------------------------------------------------------------------
# the loader


class CombinedLoader(Iterable[Any]):
    """Iterates several iterables together.

    Iterating yields ``(batch, batch_idx, dataloader_idx)``. In every mode but ``sequential`` the batch has the shape
    of ``iterables`` (a dict of loaders gives dicts of batches) and ``dataloader_idx`` is 0.

    Args:
        iterables: one iterable, or a list, tuple, dict (or any nesting of them) of iterables.
        mode: how they are combined:

            * ``min_size``: until the shortest iterable is done.
            * ``max_size_cycle``: until the longest is done; the shorter ones start over when they run out.
            * ``max_size``: until the longest is done; iterables that ran out give ``None``.
            * ``sequential``: each iterable to its end, one after the other; ``dataloader_idx`` says which.

    Raises:
        ValueError: ``mode`` is not one of the four.

    Example::

        loaders = {"a": DataLoader(range(6), batch_size=4), "b": DataLoader(range(15), batch_size=5)}
        for batch, batch_idx, dataloader_idx in CombinedLoader(loaders, "max_size_cycle"):
            ...  # batch == {"a": tensor([0, 1, 2, 3]), "b": tensor([0, 1, 2, 3, 4])}, then ...
    """

    def __init__(self, iterables: Any, mode: Mode = "min_size") -> None:
        if mode not in MODES:
            raise ValueError(f"Unsupported mode {mode!r}, please select one of: {list(MODES)}.")
        self._iterables = iterables
        self._flattened, self._shape = flatten(iterables)
        self._mode = mode
        self._iterator: _ModeIterator | None = None
        self._limits: list[int | float] | None = None

    @property
    def mode(self) -> str:
        """The combination mode (read-only)."""
        return self._mode

    @property
    def iterables(self) -> Any:
        """The collection of iterables, as given (or as last set through ``flattened``)."""
        return self._iterables

    @property
    def sampler(self) -> Any:
        """Each iterable's ``sampler`` (None where it has none), in the collection's shape."""
        return unflatten([getattr(it, "sampler", None) for it in self._flattened], self._shape)

    @property
    def batch_sampler(self) -> Any:
        """Each iterable's ``batch_sampler`` (None where it has none), in the collection's shape."""
        return unflatten([getattr(it, "batch_sampler", None) for it in self._flattened], self._shape)

    @property
    def flattened(self) -> list[Any]:
        """The iterables as a flat list, in the collection's order."""
        return self._flattened

    @flattened.setter
    def flattened(self, flattened: list[Any]) -> None:
        if len(flattened) != len(self._flattened):
            raise ValueError(
                f"Mismatch in flattened length ({len(flattened)}) and existing length ({len(self._flattened)})"
            )
        self._iterables = unflatten(flattened, self._shape)
        self._flattened = flattened

    @property
    def limits(self) -> list[int | float] | None:
        """How many items to take from each iterable at most (None: no limits). A number sets the same limit for all.

        Only the ``sequential`` mode stops an iterable at its limit; in the other modes the limits cap the length.
        """
        return self._limits

    @limits.setter
    def limits(self, limits: int | float | list[int | float] | None) -> None:
        if isinstance(limits, (int, float)):
            limits = [limits] * len(self._flattened)
        elif isinstance(limits, list) and len(limits) != len(self._flattened):
            raise ValueError(
                f"Mismatch in number of limits ({len(limits)}) and number of iterables ({len(self._flattened)})"
            )
        self._limits = limits

    def __iter__(self) -> CombinedLoader:
        iterator = MODES[self._mode](self._flattened, self._limits)
        self._iterator = iter(iterator)
        return self

    def __next__(self) -> Triple:
        if self._iterator is None:
            raise RuntimeError("Please call `iter(combined_loader)` first.")
        values, batch_idx, dataloader_idx = next(self._iterator)
        if self._mode == "sequential":
            return values, batch_idx, dataloader_idx
        return unflatten(values, self._shape), batch_idx, dataloader_idx

    def __len__(self) -> int:
        """How many items a pass yields, with the limits applied.

        Raises:
            RuntimeError: before ``iter(combined_loader)``.
            TypeError: an iterable has no length and no finite limit.
        """
        if self._iterator is None:
            raise RuntimeError("Please call `iter(combined_loader)` first.")
        return len(self._iterator)

    def reset(self) -> None:
        """Drop the running pass and stop the workers of DataLoaders that keep theirs (``persistent_workers``)."""
        if self._iterator is not None:
            self._iterator.reset()
            self._iterator = None
        for iterable in self._flattened:
            _shutdown_workers(iterable)


def _shutdown_workers(iterable: Any) -> None:
    # A DataLoader with persistent workers keeps its iterator (and its worker processes) in `_iterator`.
    iterator = getattr(iterable, "_iterator", None)
    if iterator is None:
        return
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if callable(shutdown):
        shutdown()
    iterable._iterator = None


def combined_length(loader: CombinedLoader) -> int | float:
    """How many items a pass of `loader` yields with its current limits (inf when unbounded), without starting one.

    Args:
        loader: the combined loader.
    """
    return MODES[loader.mode](loader.flattened, loader.limits).length()
