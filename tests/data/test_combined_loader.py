"""CombinedLoader against Lightning 2.6.6's: the same collections iterated in every mode, with and without limits,
must give the same flattened iterables, items (batch, batch_idx, dataloader_idx), lengths, stopping points and
errors. Plus the parts the oracle is not needed for: nesting round trips, reset, pickling."""

from __future__ import annotations

import inspect
import pickle
from collections import OrderedDict, defaultdict, deque, namedtuple
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset

from fulgor.combined_loader import CombinedLoader, combined_length, flatten, unflatten
from fulgor.module import LightningModule
from fulgor.trainer.trainer import Trainer

# Lightning's own CombinedLoader warns about a torch pytree API it uses.
pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec")
MODES = ("min_size", "max_size_cycle", "max_size", "sequential")
Pair = namedtuple("Pair", "left right")


class Unsized:
    """An iterable without `__len__` (an iterable dataset's loader looks like this to CombinedLoader)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self) -> Iterator[int]:
        return iter(range(100, 100 + self.n))


class Stream(IterableDataset[torch.Tensor]):
    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(torch.arange(self.n, dtype=torch.float32) * 10)


# Each case builds a fresh collection (iterators are consumed); the same builder feeds both libraries.
CASES: dict[str, Callable[[], Any]] = {
    "lightning_docstring": lambda: {"a": DataLoader(range(6), batch_size=4), "b": DataLoader(range(15), batch_size=5)},
    "list": lambda: [range(3), range(5), range(1)],
    "tuple": lambda: (range(2), range(4)),
    "dict_insertion_order": lambda: {"b": range(2), "a": range(3)},
    "nested": lambda: {"a": [range(2), range(4)], "b": (range(3),), "c": {"x": range(5), "y": [range(1)]}},
    "namedtuple": lambda: Pair(range(2), DataLoader(range(7), batch_size=3)),
    "ordered_dict": lambda: OrderedDict([("z", range(3)), ("y", range(1))]),
    "defaultdict": lambda: defaultdict(list, {"p": range(2), "q": range(3)}),
    "deque": lambda: deque([range(2), range(3)], maxlen=4),
    "single_loader": lambda: DataLoader(range(5), batch_size=2),
    "single_range": lambda: range(4),
    "lists_of_numbers": lambda: [[1, 2, 3], [4]],
    "list_of_numbers_is_one_iterable": lambda: [1, 2, 3],
    "empty_list_is_one_iterable": lambda: [],
    "empty_member": lambda: [range(0), range(3)],
    "unsized_member": lambda: [Unsized(3), range(5)],
    "iterable_dataset": lambda: {"s": DataLoader(Stream(5), batch_size=2), "m": DataLoader(range(4), batch_size=2)},
    "none_member": lambda: [None, range(2)],
}
LIMITS: dict[str, Callable[[int], Any]] = {
    "none": lambda n: None,
    "int_2": lambda n: 2,
    "zero": lambda n: 0,
    "per_iterable": lambda n: [(i % 3) + 1 for i in range(n)],
    "with_inf": lambda n: [float("inf")] + [1] * (n - 1),
}
MAX_ITEMS = 40  # max_size_cycle never stops on some inputs in Lightning either: compare the first items


def plain(value: Any) -> Any:
    """A comparable form of a batch: tensors as lists, containers tagged with their type's name."""
    if isinstance(value, torch.Tensor):
        return ("tensor", value.tolist())
    if isinstance(value, (list, tuple, deque)):
        return (type(value).__name__, [plain(v) for v in value])
    if isinstance(value, dict):
        return (type(value).__name__, [(k, plain(v)) for k, v in value.items()])
    return value


def describe(value: Any) -> Any:
    """A comparable form of an iterable collection: DataLoaders by their dataset, ranges by themselves."""
    if isinstance(value, DataLoader):
        return ("DataLoader", describe(value.dataset), value.batch_size)
    if isinstance(value, (list, tuple, deque)):
        return (type(value).__name__, [describe(v) for v in value])
    if isinstance(value, dict):
        return (type(value).__name__, [(k, describe(v)) for k, v in value.items()])
    if isinstance(value, (Unsized, Stream)):
        return (type(value).__name__, value.n)
    return value


def outcome(fn: Callable[[], Any]) -> Any:
    try:
        return ("ok", fn())
    except Exception as err:
        return ("error", type(err).__name__, str(err))


def observe(cls: type, build: Callable[[], Any], mode: str, limits: Callable[[int], Any]) -> dict[str, Any]:
    """Everything a user can see of one combined loader: structure, lengths, every item until StopIteration."""
    loader = cls(build(), mode)
    seen: dict[str, Any] = {"flattened": describe(loader.flattened), "iterables": describe(loader.iterables)}
    seen["len_before_iter"] = outcome(lambda: len(loader))
    seen["set_limits"] = outcome(lambda: setattr(loader, "limits", limits(len(loader.flattened))))
    seen["limits"] = loader.limits
    seen["iter_is_self"] = outcome(lambda: iter(loader) is loader)
    if seen["iter_is_self"][0] == "error":  # e.g. a member that is not iterable
        return seen
    seen["len"] = outcome(lambda: len(loader))
    items, stopped = [], False
    for _ in range(MAX_ITEMS):
        try:
            batch, batch_idx, dataloader_idx = next(loader)
        except StopIteration:
            stopped = True
            break
        items.append((plain(batch), batch_idx, dataloader_idx))
    seen["items"], seen["stopped"] = items, stopped
    if stopped:  # exhausted iterators keep raising
        seen["after_stop"] = outcome(lambda: next(loader))
    seen["second_pass"] = [(plain(b), i, d) for b, i, d in _take(loader, MAX_ITEMS)]
    return seen


def _take(loader: Any, n: int) -> list[Any]:
    out = []
    for item in loader:
        out.append(item)
        if len(out) == n:
            break
    return out


@pytest.fixture(scope="module")
def oracle() -> type:
    module = pytest.importorskip("pytorch_lightning.utilities.combined_loader")
    return module.CombinedLoader  # type: ignore[no-any-return]


@pytest.mark.oracle
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
@pytest.mark.parametrize("limits", list(LIMITS))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", list(CASES))
def test_iteration_matches_lightning(oracle: type, case: str, mode: str, limits: str) -> None:
    ours = observe(CombinedLoader, CASES[case], mode, LIMITS[limits])
    theirs = observe(oracle, CASES[case], mode, LIMITS[limits])
    # Lightning's `len()` of an unbounded loader fails inside Python's `len` ("'float' object cannot be interpreted
    # as an integer"); fulgor raises the same TypeError with a message that says why.
    if "len" in theirs and theirs["len"][:2] == ("error", "TypeError"):
        assert ours["len"][:2] == ("error", "TypeError"), ours["len"]
        ours["len"] = theirs["len"]
    assert ours == theirs


@pytest.mark.oracle
@pytest.mark.parametrize("case", list(CASES))
def test_samplers_match_lightning(oracle: type, case: str) -> None:
    def shape(cls: type) -> Any:
        loader = cls(CASES[case](), "max_size_cycle")
        as_names = [None if s is None else type(s).__name__ for s in flatten(loader.sampler)[0]]
        batch = [None if s is None else type(s).__name__ for s in flatten(loader.batch_sampler)[0]]
        return describe(loader.sampler is None), as_names, batch, type(loader.sampler).__name__

    assert shape(CombinedLoader) == shape(oracle)


@pytest.mark.oracle
def test_errors_match_lightning(oracle: type) -> None:
    def errors(cls: type) -> list[Any]:
        loader = cls([range(2), range(3)], "max_size")
        found = [
            outcome(lambda: cls([range(2)], "foo")),
            outcome(lambda: setattr(loader, "limits", [1])),
            outcome(lambda: setattr(loader, "flattened", [range(1)])),
            outcome(lambda: len(loader)),
        ]
        loader.limits = 3  # a number sets every limit
        found.append(loader.limits)
        loader.limits = None
        found.append(loader.limits)
        return found

    assert errors(CombinedLoader) == errors(oracle)
    assert errors(CombinedLoader)[0] == (
        "error",
        "ValueError",
        "Unsupported mode 'foo', please select one of: ['min_size', 'max_size_cycle', 'max_size', 'sequential'].",
    )


@pytest.mark.oracle
def test_flattened_setter_rebuilds_iterables_like_lightning(oracle: type) -> None:
    def rebuilt(cls: type) -> Any:
        loader = cls({"a": [range(2)], "b": (range(3), range(4)), "c": range(1)}, "max_size_cycle")
        loader.flattened = [range(10), range(11), range(12), range(13)]
        iter(loader)
        return describe(loader.iterables), describe(loader.flattened), plain(next(loader))

    assert rebuilt(CombinedLoader) == rebuilt(oracle)


def test_default_mode_is_min_size() -> None:
    loader = CombinedLoader([range(2), range(5)])
    assert loader.mode == "min_size"
    assert [b for b, _, _ in loader] == [[0, 0], [1, 1]]


def test_round_trip_keeps_container_types() -> None:
    collection = {"a": Pair(range(1), [range(2), range(3)]), "b": deque([range(4)], maxlen=2)}
    leaves, shape = flatten(collection)
    assert leaves == [range(1), range(2), range(3), range(4)]
    rebuilt = unflatten([1, 2, 3, 4], shape)
    assert rebuilt == {"a": Pair(1, [2, 3]), "b": deque([4], maxlen=2)}
    assert type(rebuilt["a"]) is Pair
    assert rebuilt["b"].maxlen == 2


def test_subclasses_of_containers_are_one_iterable() -> None:
    """Like torch's pytree: only the exact container types are opened (a list subclass may be a dataset)."""

    class Batches(list):  # type: ignore[type-arg]
        pass

    loader = CombinedLoader(Batches([range(2), range(3)]), "max_size")
    assert len(loader.flattened) == 1
    assert [b for b, _, _ in loader] == [range(2), range(3)]


def test_combined_length_needs_no_iterator() -> None:
    loader = CombinedLoader({"a": range(3), "b": range(7)}, "max_size_cycle")
    assert combined_length(loader) == 7
    loader.limits = [3, 5]
    assert combined_length(loader) == 5
    assert combined_length(CombinedLoader([Unsized(2), range(4)], "sequential")) == float("inf")
    assert combined_length(CombinedLoader([Unsized(2), range(4)], "min_size")) == 4
    with pytest.raises(RuntimeError, match="call `iter"):
        len(loader)  # Lightning's rule: len() only once a pass has started


def test_len_of_unbounded_loader_explains() -> None:
    loader = CombinedLoader([Unsized(2), range(4)], "max_size_cycle")
    iter(loader)
    with pytest.raises(TypeError, match=r"no length .*IterableDataset"):
        len(loader)


def test_next_before_iter_is_a_clear_error() -> None:
    loader = CombinedLoader([range(2)])
    with pytest.raises(RuntimeError, match=r"call `iter\(combined_loader\)` first"):
        next(loader)


def test_reset_drops_the_pass_and_persistent_worker_iterators() -> None:
    class Persistent:
        def __init__(self) -> None:
            self.shut = 0
            self._iterator: Any = self

        def _shutdown_workers(self) -> None:
            self.shut += 1

        def __iter__(self) -> Iterator[int]:
            return iter(range(3))

    member = Persistent()
    loader = CombinedLoader([member, range(2)], "max_size")
    iter(loader)
    next(loader)
    loader.reset()
    assert member.shut == 1
    assert member._iterator is None
    with pytest.raises(RuntimeError):
        next(loader)
    iter(loader)
    assert next(loader) == ([0, 0], 0, 0)  # a new pass starts from the beginning


def test_pickles_mid_pass_without_dataloader_iterators() -> None:
    loader = CombinedLoader({"a": DataLoader(range(4), batch_size=2), "b": [1, 2, 3]}, "max_size")
    iter(loader)
    next(loader)
    copy = pickle.loads(pickle.dumps(loader))
    assert copy.mode == "max_size"
    assert plain(next(iter(copy))[0]) == ("dict", [("a", ("tensor", [0, 1])), ("b", 1)])


def test_sequential_respects_limits_and_reports_the_iterable() -> None:
    loader = CombinedLoader({"x": range(5), "y": range(0), "z": range(3)}, "sequential")
    loader.limits = [2, 4, 1]
    iter(loader)
    assert len(loader) == 3
    assert list(loader) == [(0, 0, 0), (1, 1, 0), (0, 0, 2)]


# ------------------------------------------------------------------------------------- the Trainer (no oracle needed)
class _Recorder(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.seen: list[Any] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self.seen.append(("train", batch_idx, plain(batch)))
        return sum((self.layer(t.float().view(-1, 1)).mean() for t in batch.values() if t is not None), torch.zeros(()))

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = -1) -> None:
        self.seen.append(("val", batch_idx, dataloader_idx, plain(batch)))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _fit(train: Any, val: Any = None, **flags: Any) -> tuple[_Recorder, Any]:
    model = _Recorder()
    trainer = Trainer(
        max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, **flags,
    )  # fmt: skip
    trainer.fit(model, train, val)
    return model, trainer


def test_a_dict_of_training_loaders_is_read_side_by_side_cycling_the_shorter() -> None:
    model, trainer = _fit({"a": DataLoader(range(3), batch_size=2), "b": DataLoader(range(10, 15), batch_size=2)})
    assert trainer.num_training_batches == 3
    assert model.seen == [
        ("train", 0, ("dict", [("a", ("tensor", [0, 1])), ("b", ("tensor", [10, 11]))])),
        ("train", 1, ("dict", [("a", ("tensor", [2])), ("b", ("tensor", [12, 13]))])),
        ("train", 2, ("dict", [("a", ("tensor", [0, 1])), ("b", ("tensor", [14]))])),
    ]


def test_a_combined_loader_limits_each_member() -> None:
    loaders = {"a": DataLoader(range(8), batch_size=2), "b": DataLoader(range(10, 13))}
    model, trainer = _fit(CombinedLoader(loaders, "max_size"), limit_train_batches=2)
    assert trainer.num_training_batches == 2
    assert [batch for _, _, batch in model.seen] == [
        ("dict", [("a", ("tensor", [0, 1])), ("b", ("tensor", [10]))]),
        ("dict", [("a", ("tensor", [2, 3])), ("b", ("tensor", [11]))]),
    ]


def test_sequential_validation_loaders_pass_their_index() -> None:
    val = CombinedLoader([DataLoader(range(2)), DataLoader(range(5, 8), batch_size=2)], "sequential")
    model, trainer = _fit({"a": DataLoader(range(2))}, val)
    assert trainer.num_val_batches == [2, 2]
    assert [s for s in model.seen if s[0] == "val"] == [
        ("val", 0, 0, ("tensor", [0])),
        ("val", 1, 0, ("tensor", [1])),
        ("val", 0, 1, ("tensor", [5, 6])),
        ("val", 1, 1, ("tensor", [7])),
    ]


def test_sequential_mode_is_refused_for_training() -> None:
    with pytest.raises(ValueError, match=r'does not support the `CombinedLoader\(mode="sequential"\)` mode'):
        _fit(CombinedLoader({"a": DataLoader(range(2))}, "sequential"))


@pytest.mark.oracle
def test_public_api_matches_lightning(oracle: type) -> None:
    public = sorted(n for n in dir(oracle) if not n.startswith("_") or n in ("__init__", "__iter__", "__len__"))
    assert [n for n in public if not hasattr(CombinedLoader, n)] == []
    for name in ("__init__", "reset"):
        ours = [(p.name, p.default) for p in inspect.signature(getattr(CombinedLoader, name)).parameters.values()]
        theirs = [(p.name, p.default) for p in inspect.signature(getattr(oracle, name)).parameters.values()]
        assert ours == theirs, name
    settable = [n for n in public if isinstance(getattr(oracle, n, None), property) and getattr(oracle, n).fset]
    assert settable == ["flattened", "limits"]
    assert all(getattr(CombinedLoader, n).fset is not None for n in settable)
