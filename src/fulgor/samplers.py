"""Distributed samplers Lightning exports: `DistributedSamplerWrapper` (shard any sampler's indices across ranks),
`UnrepeatedDistributedSampler` (shards of uneven size, no index repeated: for prediction) and its wrapper form."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sized
from typing import Any

import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

__all__ = ["DistributedSamplerWrapper", "UnrepeatedDistributedSampler", "UnrepeatedDistributedSamplerWrapper"]


class _SamplerIndices(Dataset[Any]):
    """The indices one pass of a sampler yields, as a dataset: position i -> the sampler's i-th index. Re-read at the
    start of every pass, so a shuffling sampler shuffles each epoch."""

    def __init__(self, sampler: Sampler[Any] | Iterable[Any]) -> None:
        self._sampler = sampler
        self._indices: list[Any] | None = None

    def refresh(self) -> None:
        self._indices = list(self._sampler)

    def set_epoch(self, epoch: int) -> None:
        """Pass the epoch on to the wrapped sampler when it takes one (a shuffling sampler reseeds from it)."""
        set_epoch = getattr(self._sampler, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)

    def __getitem__(self, position: int) -> Any:
        if self._indices is None:
            self.refresh()
        assert self._indices is not None
        return self._indices[position]

    def __len__(self) -> int:
        return len(self._sampler)  # type: ignore[arg-type]


class DistributedSamplerWrapper(DistributedSampler[Any]):
    """Any sampler, sharded across ranks: each rank gets its share of the positions of the wrapped sampler's indices
    (as DistributedSampler shards a dataset). The wrapped sampler decides order and randomness; `shuffle`/`seed` of
    this wrapper only permute positions.

    Args:
        sampler: the sampler (or any sized iterable of indices) to shard.
        *args: DistributedSampler's arguments (`num_replicas`, `rank`, `shuffle`, `seed`, `drop_last`).
        **kwargs: the same by name.
    """

    def __init__(self, sampler: Sampler[Any] | Iterable[Any], *args: Any, **kwargs: Any) -> None:
        super().__init__(_SamplerIndices(sampler), *args, **kwargs)

    def __iter__(self) -> Iterator[Any]:
        indices: _SamplerIndices = self.dataset  # type: ignore[assignment]
        indices.refresh()
        return (indices[position] for position in super().__iter__())

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch of this wrapper and of the wrapped sampler, when that sampler has a `set_epoch`."""
        super().set_epoch(epoch)
        indices: _SamplerIndices = self.dataset  # type: ignore[assignment]
        indices.set_epoch(epoch)


class UnrepeatedDistributedSampler(DistributedSampler[Any]):
    """A DistributedSampler that never repeats an index to even out the shards: rank r gets positions r, r + n, ...,
    so shard sizes differ by at most one. Safe for prediction (no gradient sync), not for training.

    `shuffle=True` permutes the positions with a generator seeded by the epoch (`set_epoch`), the same order on every
    rank.

    Raises:
        TypeError: the dataset has no length.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.dataset, Sized):
            raise TypeError("The given dataset must implement the `__len__` method.")
        self.total_size = len(self.dataset)
        self.num_samples = len(range(self.rank, self.total_size, self.num_replicas))
        if self.total_size > 0 and self.num_samples < 1:
            raise ValueError(
                f"UnrepeatedDistributedSampler: rank {self.rank} of {self.num_replicas} gets no sample of a dataset of"
                f" {self.total_size}; every rank needs at least one (use fewer processes or more data)."
            )

    def __iter__(self) -> Iterator[Any]:
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(self.epoch)
            order = torch.randperm(self.total_size, generator=generator).tolist()
        else:
            order = list(range(self.total_size))
        return iter(order[self.rank : self.total_size : self.num_replicas])


class UnrepeatedDistributedSamplerWrapper(UnrepeatedDistributedSampler):
    """`UnrepeatedDistributedSampler` over any sampler's indices (what `DistributedSamplerWrapper` is to
    DistributedSampler)."""

    def __init__(self, sampler: Sampler[Any] | Iterable[Any], *args: Any, **kwargs: Any) -> None:
        super().__init__(_SamplerIndices(sampler), *args, **kwargs)

    def __iter__(self) -> Iterator[Any]:
        indices: _SamplerIndices = self.dataset  # type: ignore[assignment]
        indices.refresh()
        return (indices[position] for position in super().__iter__())
