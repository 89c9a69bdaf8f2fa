"""save_hyperparameters (every form of the spec and the seed notes), AttributeDict, hparams.yaml, and the
module/datamodule merge; the collection rules are also compared with Lightning's on identical classes."""

from __future__ import annotations

import dataclasses
import enum
import inspect
import threading
import warnings
from argparse import Namespace
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

import fulgor.hparams
from fulgor.hparams import (
    AttributeDict,
    hparams_initial_of,
    hparams_of,
    load_hparams_from_yaml,
    merge_module_and_datamodule_hparams,
    save_hparams_to_yaml,
)


class Base:
    """Stands in for LightningModule: the same call pattern the real one uses."""

    def __init__(self) -> None:
        super().__init__()
        self._log_hyperparams = False

    def save_hyperparameters(self, *args: Any, ignore: Any = None, frame: Any = None, logger: bool = True) -> None:
        fulgor.hparams.save_hyperparameters(
            self,
            *args,
            ignore=ignore,
            frame=frame or inspect.currentframe().f_back,
            logger=logger,  # type: ignore[union-attr]
        )

    @property
    def hparams(self) -> AttributeDict:
        return hparams_of(self)

    @property
    def hparams_initial(self) -> AttributeDict:
        return hparams_initial_of(self)


def scenarios(base: type) -> dict[str, Callable[[], Any]]:
    """The same class bodies on top of `base` (ours or Lightning's HyperparametersMixin)."""

    class LitMNIST(base):  # type: ignore[valid-type,misc]
        def __init__(self, layer_1_dim: int = 128, learning_rate: float = 1e-2) -> None:
            super().__init__()
            self.save_hyperparameters()

    class LitMNISTNames(base):  # type: ignore[valid-type,misc]
        def __init__(self, layer_1_dim: int = 128, learning_rate: float = 1e-2) -> None:
            super().__init__()
            self.save_hyperparameters("layer_1_dim", "learning_rate")

    class Excluding(base):  # type: ignore[valid-type,misc]
        def __init__(self, loss_fx: Any, generator_network: Any, layer_1_dim: int = 128) -> None:
            super().__init__()
            self.layer_1_dim = layer_1_dim
            self.loss_fx = loss_fx
            self.save_hyperparameters("layer_1_dim")

    class ExcludingIgnore(base):  # type: ignore[valid-type,misc]
        def __init__(self, loss_fx: Any, generator_network: Any, layer_1_dim: int = 128) -> None:
            super().__init__()
            self.save_hyperparameters(ignore=["loss_fx", "generator_network"])

    class Parent(base):  # type: ignore[valid-type,misc]
        def __init__(self, p: int = 1, extra: str = "x") -> None:
            super().__init__()
            self.save_hyperparameters()

    class Child(Parent):
        def __init__(self, q: int = 2, p: int = 7) -> None:
            super().__init__(p=p, extra="e")

    class ChildSaves(Parent):
        def __init__(self, q: int = 2, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.save_hyperparameters(ignore="extra")

    class Kwargs(base):  # type: ignore[valid-type,misc]
        def __init__(self, a: int, *args: Any, b: int = 3, **kwargs: Any) -> None:
            super().__init__()
            a = 100  # noqa: F841  (reassigned before the call: the new value is saved)
            self.save_hyperparameters()

    class Config(base):  # type: ignore[valid-type,misc]
        def __init__(self, cfg: Any, other: int = 1) -> None:
            super().__init__()
            self.save_hyperparameters(cfg)

    class Empty(base):  # type: ignore[valid-type,misc]
        def __init__(self) -> None:
            super().__init__()
            self.save_hyperparameters()

    class Twice(base):  # type: ignore[valid-type,misc]
        def __init__(self, a: int = 1, b: int = 2) -> None:
            super().__init__()
            self.save_hyperparameters("a")
            self.save_hyperparameters({"c": 3})

    class WithModule(base):  # type: ignore[valid-type,misc]
        def __init__(self, net: nn.Module, lr: float = 0.1) -> None:
            super().__init__()
            self.save_hyperparameters(logger=False)

    class Helper(base):  # type: ignore[valid-type,misc]
        def __init__(self, a: int = 5) -> None:
            super().__init__()
            self._helper()

        def _helper(self) -> None:
            self.save_hyperparameters()

    class Inner(base):  # type: ignore[valid-type,misc]
        def __init__(self, dropout: float = 0.1, init: str = "xavier", p: int = 0) -> None:
            super().__init__()
            self.save_hyperparameters(ignore=["dropout", "batch_size"])

    class Outer(base):  # type: ignore[valid-type,misc]
        def __init__(self, batch_size: int = 64, p: int = 5, **kwargs: Any) -> None:
            super().__init__()
            self.inner = Inner(dropout=0.2, init="orthogonal", p=1)

    class OuterOfOuter(base):  # type: ignore[valid-type,misc]
        def __init__(self, top: str = "t") -> None:
            super().__init__()
            self.outer = Outer(batch_size=8, extra="x")

    class OuterHelper(base):  # type: ignore[valid-type,misc]
        def __init__(self, batch_size: int = 64) -> None:
            super().__init__()
            self.inner = self._build()

        def _build(self) -> Any:
            return Inner()

    class PlainOuter:  # not a hyperparameters class: its arguments stay out
        def __init__(self, run_id: str = "abc", seed: int = 42) -> None:
            self.outer = Outer(batch_size=16)

    return {
        "composition": lambda: Outer(batch_size=32).inner,
        "composition three levels": lambda: OuterOfOuter().outer.inner,
        "composition built in a helper": lambda: OuterHelper().inner,
        "composition under a plain object": lambda: PlainOuter().outer.inner,
        "seed plain": lambda: LitMNIST(),
        "seed names": lambda: LitMNISTNames(64),
        "seed excluding": lambda: Excluding(nn.MSELoss(), object()),
        "seed ignore": lambda: ExcludingIgnore(nn.MSELoss(), object(), 32),
        "child/parent": lambda: Child(),
        "child saves": lambda: ChildSaves(q=4, p=9, extra="zz"),
        "kwargs": lambda: Kwargs(1, 2, 3, b=4, z="zz", y=[1]),
        "dict config": lambda: Config({"lr": 0.5, "layers": 2}),
        "namespace config": lambda: Config(Namespace(lr=0.5, layers=2), other=3),
        "empty": lambda: Empty(),
        "twice": lambda: Twice(),
        "module value": lambda: WithModule(nn.Linear(1, 1)),
        "helper": lambda: Helper(),
    }


def _describe(obj: Any) -> tuple[Any, ...]:
    return (
        dict(obj.hparams),
        list(obj.hparams),
        getattr(obj, "_hparams_name", "unset"),
        dict(obj.hparams_initial),
        obj._log_hyperparams,
        repr(obj.hparams),
    )


OURS = scenarios(Base)


def _build(factory: Callable[[], Any]) -> tuple[Any, list[str]]:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        obj = factory()
    return obj, [str(w.message) for w in record]


@pytest.mark.oracle
@pytest.mark.parametrize("name", list(OURS))
def test_same_as_lightning(name: str) -> None:
    mixins = pytest.importorskip("pytorch_lightning.core.mixins")
    ours, ours_warnings = _build(OURS[name])
    theirs, their_warnings = _build(scenarios(mixins.HyperparametersMixin)[name])
    # reprs, because module values are distinct (but identically printed) objects
    assert repr(_describe(ours)) == repr(_describe(theirs))
    assert ours_warnings == their_warnings


def test_seed_notes_examples() -> None:
    model = OURS["seed plain"]()
    assert model.hparams == {"layer_1_dim": 128, "learning_rate": 0.01}
    assert model.hparams.layer_1_dim == 128
    assert model._hparams_name == "kwargs"
    assert OURS["seed names"]().hparams == {"layer_1_dim": 64, "learning_rate": 0.01}
    assert OURS["seed excluding"]().hparams == {"layer_1_dim": 128}
    assert OURS["seed ignore"]().hparams == {"layer_1_dim": 32}


def test_child_parent_order_and_values() -> None:
    child = OURS["child/parent"]()
    assert list(child.hparams.items()) == [("p", 7), ("extra", "e"), ("q", 2)]
    # the child's second call accumulates, and `ignore` also drops what the parent stored
    assert dict(OURS["child saves"]().hparams) == {"p": 9, "q": 4}


def test_kwargs_and_call_time_values() -> None:
    obj = OURS["kwargs"]()
    assert list(obj.hparams.items()) == [("a", 100), ("b", 4), ("z", "zz"), ("y", [1])]


def test_single_config_object_sets_hparams_name() -> None:
    obj = OURS["dict config"]()
    assert obj.hparams == {"lr": 0.5, "layers": 2}
    assert obj._hparams_name == "cfg"
    assert isinstance(obj.hparams, AttributeDict)
    ns = OURS["namespace config"]()
    assert (dict(ns.hparams), ns._hparams_name) == ({"lr": 0.5, "layers": 2}, "cfg")


def test_initial_is_a_frozen_deep_copy() -> None:
    obj = OURS["dict config"]()
    obj.hparams.lr = 9.0
    obj.hparams_initial["lr"] = 7.0
    assert obj.hparams.lr == 9.0
    assert obj.hparams_initial == {"lr": 0.5, "layers": 2}


def test_empty_and_unsaved() -> None:
    empty = OURS["empty"]()
    assert (empty.hparams, empty._hparams_name, empty._log_hyperparams) == ({}, None, True)
    fresh = Base()
    assert fresh.hparams == {}
    assert fresh.hparams_initial == {}
    assert fresh._log_hyperparams is False


def test_errors() -> None:
    class Prim(Base):
        def __init__(self, value: Any) -> None:
            super().__init__()
            self.save_hyperparameters(value)

    with pytest.raises(ValueError) as err:
        Prim(5)
    assert (
        str(err.value) == "Primitives (<class 'bool'>, <class 'int'>, <class 'float'>, <class 'str'>) are not allowed."
    )
    with pytest.raises(ValueError) as err:
        Prim([1, 2])
    assert str(err.value) == "Unsupported config type of <class 'list'>."
    Prim({})  # an empty container saves nothing

    class Missing(Base):
        def __init__(self, a: int = 1) -> None:
            super().__init__()
            self.save_hyperparameters("b")

    with pytest.raises(KeyError, match=r"'b'.*not an argument of `Missing.__init__`.*\['a'\]"):
        Missing()


def test_module_warning_text() -> None:
    with pytest.warns(UserWarning, match="nn.Module") as record:
        obj = OURS["module value"]()
    assert [str(w.message) for w in record] == [
        "Attribute 'net' is an instance of `nn.Module` and is already saved during checkpointing."
        " It is recommended to ignore them using `self.save_hyperparameters(ignore=['net'])`."
    ]
    assert obj._log_hyperparams is False


def test_dataclass_module() -> None:
    @dataclasses.dataclass
    class Data(Base):
        lr: float = 0.1
        hidden: int = 4
        cache: list[int] = dataclasses.field(default_factory=list, init=False)

        def __post_init__(self) -> None:
            super().__init__()
            self.save_hyperparameters()

    assert dict(Data(hidden=8).hparams) == {"lr": 0.1, "hidden": 8}


def test_nested_construction_collects_only_hparams_owners() -> None:
    class Inner(Base):
        def __init__(self, x: int = 1) -> None:
            super().__init__()
            self.save_hyperparameters()

    class Outer(Base):
        def __init__(self, y: int = 2) -> None:
            super().__init__()
            self.inner = Inner()

    class NotHparams:
        def __init__(self, z: int = 3) -> None:
            self.inner = Inner()

    def helper(w: int = 4) -> Any:
        return Inner()

    # As in Lightning: an enclosing object that saves hyperparameters adds its `__init__` arguments (`y`); any other
    # object's `__init__`, or a function, up the stack does not.
    assert dict(Outer().inner.hparams) == {"x": 1, "y": 2}
    assert dict(NotHparams().inner.hparams) == {"x": 1}
    assert dict(helper().hparams) == {"x": 1}


def test_attribute_dict() -> None:
    ad = AttributeDict({"key1": 1, "key2": "abc"})
    ad.update({"my-key": 3.14})
    ad.update(new_key=42)
    ad.key1 = 2
    assert repr(ad) == '"key1":    2\n"key2":    abc\n"my-key":  3.14\n"new_key": 42'
    assert repr(AttributeDict()) == ""
    with pytest.raises(AttributeError, match="'AttributeDict' object has no attribute 'nope'"):
        ad.nope  # noqa: B018
    del ad.key2
    with pytest.raises(KeyError):
        del ad.key2
    import copy
    import pickle

    assert copy.deepcopy(ad) == ad
    assert pickle.loads(pickle.dumps(ad)) == ad


class Color(enum.Enum):
    RED = 1


def test_yaml_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "hparams.yaml"
    # the plain writer (Lightning's without omegaconf) sorts the keys; tests/loggers/test_hparams_yaml_order.py
    # covers the omegaconf writer
    hparams = Namespace(batch_size=32, learning_rate=0.001, data_root="./any/path/here")
    save_hparams_to_yaml(path, hparams, use_omegaconf=False)
    assert path.read_text() == "batch_size: 32\ndata_root: ./any/path/here\nlearning_rate: 0.001\n"
    assert load_hparams_from_yaml(path) == {"batch_size": 32, "learning_rate": 0.001, "data_root": "./any/path/here"}
    save_hparams_to_yaml(path, AttributeDict(b=[1, 2], a={"x": 1.5}, c=Color.RED), use_omegaconf=False)
    assert path.read_text() == "a:\n  x: 1.5\nb:\n- 1\n- 2\nc: RED\n"


def test_yaml_skips_unrepresentable_values(tmp_path: Path) -> None:
    path = tmp_path / "hparams.yaml"
    with pytest.warns(
        UserWarning, match="Skipping 'lock' parameter because it is not possible to safely dump to YAML."
    ):
        save_hparams_to_yaml(path, {"lock": threading.Lock(), "a": 1})
    assert path.read_text() == "a: 1\n"


@pytest.mark.oracle
def test_yaml_bytes_same_as_lightning(tmp_path: Path) -> None:
    saving = pytest.importorskip("pytorch_lightning.core.saving")
    values = {"z": 1, "a": [1, {"b": None}], "t": (1, 2), "s": "x y", "f": 1e-8, "e": Color.RED, "bool": True}
    save_hparams_to_yaml(tmp_path / "ours.yaml", values)
    saving.save_hparams_to_yaml(tmp_path / "theirs.yaml", dict(values))
    assert (tmp_path / "ours.yaml").read_bytes() == (tmp_path / "theirs.yaml").read_bytes()


def test_yaml_errors(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="Missing folder: "):
        save_hparams_to_yaml(tmp_path / "nope" / "h.yaml", {})
    with pytest.warns(RuntimeWarning, match="Missing Tags: "):
        assert load_hparams_from_yaml(tmp_path / "absent.yaml") == {}


def _holder(hp: dict[str, Any] | None) -> Any:
    obj = SimpleNamespace()
    if hp is not None:
        obj._log_hyperparams = True
        obj._hparams_initial = AttributeDict(hp)
    return obj


def test_merge() -> None:
    assert merge_module_and_datamodule_hparams(_holder(None), None) is None
    assert merge_module_and_datamodule_hparams(_holder({"a": 1}), None) == {"a": 1}
    assert merge_module_and_datamodule_hparams(_holder(None), _holder({"b": 2})) == {"b": 2}
    merged = merge_module_and_datamodule_hparams(_holder({"a": 1, "c": 3}), _holder({"c": 3, "b": 2}))
    assert merged == {"a": 1, "c": 3, "b": 2}
    assert merge_module_and_datamodule_hparams(_holder({"_class_path": "x", "a": 1}), None) == {"a": 1}
    with pytest.raises(RuntimeError) as err:
        merge_module_and_datamodule_hparams(_holder({"lr": 0.1, "a": 1}), _holder({"lr": 0.2, "a": 1}))
    assert str(err.value) == (
        "Error while merging hparams: the keys ['lr'] are present in both the LightningModule's and"
        " LightningDataModule's hparams but have different values."
    )
    with pytest.raises(RuntimeError, match=r"\['n'\]"):  # same value, different type
        merge_module_and_datamodule_hparams(_holder({"n": 1}), _holder({"n": 1.0}))
    # Tensors are compared by value (Lightning compares the ids of deep copies, so it always raises here).
    t = torch.tensor(1.0)
    assert merge_module_and_datamodule_hparams(_holder({"t": t}), _holder({"t": t})) == {"t": t}
    with pytest.raises(RuntimeError, match=r"\['t'\]"):
        merge_module_and_datamodule_hparams(_holder({"t": t}), _holder({"t": torch.tensor(2.0)}))
