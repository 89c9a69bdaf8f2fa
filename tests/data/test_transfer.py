"""move_data_to_device: containers keep their types, tensors and `.to` objects move, the rest is untouched;
results agree with Lightning's move_data_to_device."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict, defaultdict, namedtuple
from functools import cached_property
from typing import Any
from unittest import mock

import pytest
import torch

from fulgor.data.transfer import move_data_to_device

Pair = namedtuple("Pair", ["x", "y"])


@dataclasses.dataclass
class Batch:
    x: torch.Tensor
    label: str
    extra: list[Any] = dataclasses.field(default_factory=list)
    cache: int = dataclasses.field(default=0, init=False)

    @cached_property
    def total(self) -> float:
        return float(self.x.sum())


@dataclasses.dataclass(frozen=True)
class Frozen:
    x: torch.Tensor


class Movable:
    def __init__(self) -> None:
        self.devices: list[torch.device] = []

    def to(self, device: torch.device) -> Movable:
        self.devices.append(device)
        return self


class ForgetsReturn:
    def to(self, device: torch.device) -> None:
        pass


def _batch() -> dict[str, Any]:
    return {
        "t": torch.ones(2),
        "list": [torch.zeros(1), 3, "s"],
        "tuple": (torch.zeros(1), None),
        "pair": Pair(torch.ones(1), [torch.ones(1)]),
        "ordered": OrderedDict(a=torch.ones(1)),
        "dd": defaultdict(list, {"k": torch.ones(1)}),
        "bytes": b"ab",
    }


def test_structure_and_types_preserved() -> None:
    out = move_data_to_device(_batch(), "cpu")
    assert type(out) is dict
    assert list(out) == ["t", "list", "tuple", "pair", "ordered", "dd", "bytes"]
    assert out["list"][1:] == [3, "s"]
    assert out["tuple"][1] is None
    assert type(out["tuple"]) is tuple
    assert type(out["pair"]) is Pair
    assert type(out["ordered"]) is OrderedDict
    assert type(out["dd"]) is defaultdict
    assert out["dd"].default_factory is list
    assert out["bytes"] == b"ab"
    assert torch.equal(out["pair"].y[0], torch.ones(1))


def test_to_objects_and_dataclasses() -> None:
    movable = Movable()
    assert move_data_to_device([movable], torch.device("cpu"))[0] is movable
    assert movable.devices == [torch.device("cpu")]
    forgets = ForgetsReturn()
    assert move_data_to_device(forgets, "cpu") is forgets

    batch = Batch(torch.ones(2), "a", [torch.zeros(1)])
    batch.cache = 5
    assert batch.total == 2.0
    out = move_data_to_device(batch, "cpu")
    assert out is not batch
    assert (out.label, out.cache) == ("a", 5)
    assert "total" not in vars(out)  # cached values are recomputed
    assert torch.equal(out.extra[0], torch.zeros(1))
    frozen = move_data_to_device(Frozen(torch.ones(1)), "cpu")
    assert type(frozen) is Frozen


def test_non_blocking_only_for_accelerators() -> None:
    calls: list[dict[str, Any]] = []
    real_to = torch.Tensor.to

    def spy(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        calls.append(kwargs)
        return real_to(self, "cpu")  # stay on CPU: only the arguments matter here

    with mock.patch.object(torch.Tensor, "to", spy):
        move_data_to_device([torch.ones(1)], "cpu")
        move_data_to_device([torch.ones(1)], torch.device("cuda", 0))
        move_data_to_device(torch.ones(1), "mps")
    assert calls == [{}, {"non_blocking": True}, {}]


@pytest.mark.oracle
def test_same_as_lightning() -> None:
    apply_func = pytest.importorskip("lightning_fabric.utilities.apply_func")
    ours = move_data_to_device(_batch(), "cpu")
    theirs = apply_func.move_data_to_device(_batch(), "cpu")
    assert repr(ours) == repr(theirs)
    assert type(ours["pair"]) is type(theirs["pair"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_moves_to_cuda() -> None:
    out = move_data_to_device(_batch(), "cuda")
    assert out["t"].device.type == "cuda"
    assert out["pair"].y[0].device.type == "cuda"
    assert out["dd"]["k"].device.type == "cuda"
