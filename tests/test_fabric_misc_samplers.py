"""DistributedSamplerWrapper passes `set_epoch` on to the sampler it wraps (a shuffling sampler then reshuffles each
epoch), as Lightning's does since 2.6; checked against the real lightning_fabric where it is installed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch.utils.data import Sampler

from fulgor.samplers import DistributedSamplerWrapper, UnrepeatedDistributedSamplerWrapper


class EpochShuffle(Sampler[int]):
    """Shuffles 0..n-1 with a generator seeded by the epoch it was given; counts the `set_epoch` calls."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.epoch = 0
        self.calls: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.calls.append(epoch)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.epoch)
        return iter(torch.randperm(self.n, generator=generator).tolist())

    def __len__(self) -> int:
        return self.n


class NoEpoch(Sampler[int]):
    def __init__(self, n: int, set_epoch: Any = None) -> None:
        self.n = n
        if set_epoch is not None:
            self.set_epoch = set_epoch  # not callable: must be left alone

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.n))

    def __len__(self) -> int:
        return self.n


def test_set_epoch_reaches_the_wrapped_sampler() -> None:
    inner = EpochShuffle(10)
    wrapper = DistributedSamplerWrapper(inner, num_replicas=2, rank=0, shuffle=False)
    first = list(wrapper)
    wrapper.set_epoch(5)
    assert wrapper.epoch == 5
    assert inner.calls == [5]
    second = list(wrapper)
    assert first != second  # the inner sampler reshuffled with the new epoch
    generator = torch.Generator().manual_seed(5)
    assert second == torch.randperm(10, generator=generator).tolist()[0::2]
    wrapper.set_epoch(7)
    assert inner.calls == [5, 7]


def test_set_epoch_without_a_sampler_epoch() -> None:
    plain = DistributedSamplerWrapper(NoEpoch(6), num_replicas=2, rank=1, shuffle=False)
    plain.set_epoch(3)
    assert plain.epoch == 3
    assert list(plain) == [1, 3, 5]
    odd = NoEpoch(6, set_epoch="not a method")
    wrapper = DistributedSamplerWrapper(odd, num_replicas=2, rank=0, shuffle=False)
    wrapper.set_epoch(3)
    assert wrapper.epoch == 3
    assert odd.set_epoch == "not a method"


def test_unrepeated_wrapper_keeps_lightning_behaviour() -> None:
    # Lightning's unrepeated wrapper (prediction) only records the epoch; the wrapped sampler is not told.
    inner = EpochShuffle(5)
    wrapper = UnrepeatedDistributedSamplerWrapper(inner, num_replicas=2, rank=0, shuffle=False)
    wrapper.set_epoch(4)
    assert wrapper.epoch == 4
    assert inner.calls == []


@pytest.mark.oracle
def test_same_shards_per_epoch_as_lightning() -> None:
    distributed = pytest.importorskip("lightning_fabric.utilities.distributed")
    for rank in (0, 1, 2):
        ours = DistributedSamplerWrapper(EpochShuffle(11), num_replicas=3, rank=rank, shuffle=True, seed=3)
        theirs = distributed.DistributedSamplerWrapper(
            EpochShuffle(11), num_replicas=3, rank=rank, shuffle=True, seed=3
        )
        for epoch in (0, 1, 2):
            ours.set_epoch(epoch)
            theirs.set_epoch(epoch)
            assert list(ours) == list(theirs)
