"""The utility names fulgor writes for Lightning's paths behave as Lightning's do: each is run beside the oracle's
function on the same inputs (differential), plus the fulgor-only cases."""

from __future__ import annotations

import argparse
import copy
import inspect
import re
import warnings
from collections import OrderedDict, namedtuple
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset

from fulgor import (
    available_packages,
    dict_merging,
    enums,
    grad_norm,
    hook_signature,
    hparams_parsing,
    hparams_tags,
    lightning_errors,
    loop_names,
    memory,
    parameter_tying,
    rank_messages,
    runif,
)
from fulgor.data import conversion, sizes

pytest.importorskip("pytorch_lightning")
pytestmark = pytest.mark.oracle

from lightning_fabric.utilities import apply_func as pl_apply_func  # noqa: E402
from lightning_fabric.utilities import data as pl_fabric_data  # noqa: E402
from lightning_fabric.utilities import testing as pl_testing  # noqa: E402
from lightning_fabric.utilities import warnings as pl_fabric_warnings  # noqa: E402
from lightning_utilities.core import rank_zero as lu_rank_zero  # noqa: E402
from pytorch_lightning.core import saving as pl_saving  # noqa: E402
from pytorch_lightning.loggers import logger as pl_logger  # noqa: E402
from pytorch_lightning.loops import evaluation_loop, fit_loop, training_epoch_loop  # noqa: E402
from pytorch_lightning.loops import utilities as pl_loop_utilities  # noqa: E402
from pytorch_lightning.utilities import enums as pl_enums  # noqa: E402
from pytorch_lightning.utilities import grads as pl_grads  # noqa: E402
from pytorch_lightning.utilities import imports as pl_imports  # noqa: E402
from pytorch_lightning.utilities import memory as pl_memory  # noqa: E402
from pytorch_lightning.utilities import parameter_tying as pl_tying  # noqa: E402
from pytorch_lightning.utilities import parsing as pl_parsing  # noqa: E402
from pytorch_lightning.utilities import signature_utils as pl_signature  # noqa: E402


def same(a: Any, b: Any) -> bool:
    """Equal values, types and (for tensors) dtypes, through nested collections."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return type(a) is type(b) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    """What a call gives: ("ok", the result) or ("raise", the exception type's name)."""
    try:
        return "ok", fn(*args)
    except Exception as error:
        return "raise", type(error).__name__


OOM_MESSAGES = [
    "CUDA out of memory. Tried to allocate 2 GiB",
    "CUDA error: out of memory",
    "cuDNN error: CUDNN_STATUS_NOT_SUPPORTED. This error may appear if you passed in a non-contiguous input.",
    "DefaultCPUAllocator: can't allocate memory: you tried to allocate 10 bytes.",
    "something else",
]
OOM_FNS = ["is_oom_error", "is_cuda_out_of_memory", "is_cudnn_snafu", "is_out_of_cpu_memory"]


@pytest.mark.parametrize("fn", OOM_FNS)
def test_out_of_memory_checks(fn: str) -> None:
    errors: list[BaseException] = [RuntimeError(m) for m in OOM_MESSAGES]
    errors += [ValueError(OOM_MESSAGES[0]), RuntimeError(OOM_MESSAGES[0], 2), torch.cuda.OutOfMemoryError("x")]
    assert [getattr(memory, fn)(e) for e in errors] == [getattr(pl_memory, fn)(e) for e in errors]


def test_recursive_detach() -> None:
    leaf = torch.ones(2, requires_grad=True) * 2
    batch = {"a": leaf, "b": {"c": leaf, "d": [leaf, 3]}, "e": "text", "f": (leaf,)}
    ours, theirs = memory.recursive_detach(batch, to_cpu=True), pl_memory.recursive_detach(batch, to_cpu=True)
    assert same(ours, theirs)
    assert not ours["a"].requires_grad
    assert not ours["b"]["c"].requires_grad
    memory.garbage_collection_cuda()  # no CUDA here: collects and returns


@pytest.mark.parametrize("norm_type", [1, 2, 2.5, "inf", float("inf")])
@pytest.mark.parametrize("separator", ["/", "."])
def test_grad_norm(norm_type: Any, separator: str) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    model(torch.randn(5, 3)).sum().backward()
    model[0].bias.grad = None
    ours = grad_norm.grad_norm(model, norm_type, separator)
    theirs = pl_grads.grad_norm(model, norm_type, separator)
    assert ours.keys() == theirs.keys()
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key])


def test_grad_norm_without_gradients_is_empty() -> None:
    model = torch.nn.Linear(2, 2)
    assert grad_norm.grad_norm(model, 2) == pl_grads.grad_norm(model, 2) == {}


def _tied() -> torch.nn.Module:
    model = torch.nn.ModuleDict({"a": torch.nn.Linear(2, 2), "b": torch.nn.Linear(2, 2), "c": torch.nn.Linear(2, 2)})
    model["b"].weight = model["a"].weight
    model["c"].bias = model["a"].bias
    return model


def test_find_and_set_shared_parameters() -> None:
    model = _tied()
    shared = parameter_tying.find_shared_parameters(model)
    assert shared == pl_tying.find_shared_parameters(model) == [["a.weight", "b.weight"], ["a.bias", "c.bias"]]
    copy_ = copy.deepcopy(model)
    copy_["b"].weight = torch.nn.Parameter(copy_["b"].weight.detach().clone())  # sharing broken
    assert parameter_tying.find_shared_parameters(copy_) == [["a.bias", "c.bias"]]
    assert parameter_tying.set_shared_parameters(copy_, shared) is copy_
    assert copy_["b"].weight is copy_["a"].weight


class _Hooks:
    def plain(self, batch, batch_idx): ...
    def with_idx(self, batch, batch_idx, dataloader_idx=0): ...
    def var(self, *args): ...
    def kw(self, batch, **kwargs): ...


SIGNATURE_CASES = [
    ("dataloader_idx", False, None),
    ("dataloader_idx", True, None),
    ("batch_idx", False, 3),
    ("x", False, 2),
]


@pytest.mark.parametrize("hook", ["plain", "with_idx", "var", "kw"])
@pytest.mark.parametrize(("param", "explicit", "min_args"), SIGNATURE_CASES)
def test_is_param_in_hook_signature(hook: str, param: str, explicit: bool, min_args: int | None) -> None:
    fn = getattr(_Hooks, hook)
    ours = hook_signature.is_param_in_hook_signature(fn, param, explicit, min_args)
    assert ours == pl_signature.is_param_in_hook_signature(fn, param, explicit, min_args)


class _Iterable(IterableDataset):  # type: ignore[type-arg]
    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(range(3))


class _IterableWithLen(_Iterable):
    def __len__(self) -> int:
        return 3


LOADERS = [[1, 2], iter([1]), DataLoader([]), DataLoader(list(range(4)), batch_size=2), DataLoader(_Iterable())]


@pytest.mark.parametrize("loader", [*LOADERS, DataLoader(_IterableWithLen())], ids=range(6))
def test_lengths_and_their_warnings(loader: Any) -> None:
    results = []
    for module in (sizes, pl_fabric_data):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = (module.sized_len(loader), module.has_len(loader), module.has_iterable_dataset(loader))
        results.append((got, [str(w.message) for w in caught]))
    assert results[0] == results[1]


@pytest.mark.parametrize("local_world_size", [1, 2, 3, 64])
def test_suggested_max_num_workers(local_world_size: int) -> None:
    ours = sizes.suggested_max_num_workers(local_world_size)
    assert ours == pl_fabric_data.suggested_max_num_workers(local_world_size)
    with pytest.raises(ValueError, match=re.escape("`local_world_size` should be >= 1, got 0.")):
        sizes.suggested_max_num_workers(0)


class _Strategy:
    """A two-rank strategy seen from one rank: `reduce` sums this rank's length with the other's."""

    root_device = torch.device("cpu")

    def __init__(self, other: int) -> None:
        self.other = other

    def reduce(self, tensor: torch.Tensor, reduce_op: str = "mean") -> torch.Tensor:
        assert reduce_op == "sum"
        return tensor + self.other


ALL_RANKS_CASES = [
    (DataLoader([1, 2]), 3, False),
    (DataLoader([]), 0, False),
    (DataLoader([]), 2, True),
    (iter([1]), 0, False),
]


@pytest.mark.parametrize(("loader", "other", "allow"), ALL_RANKS_CASES)
def test_has_len_all_ranks(loader: Any, other: int, allow: bool) -> None:
    from pytorch_lightning.utilities.data import has_len_all_ranks

    results = []
    for fn in (sizes.has_len_all_ranks, has_len_all_ranks):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            results.append((fn(loader, _Strategy(other), allow), [str(w.message) for w in caught]))
    assert results[0] == results[1]


def test_has_len_all_ranks_refuses_an_empty_rank() -> None:
    with pytest.raises(RuntimeError, match="`DataLoader` within local rank has zero length"):
        sizes.has_len_all_ranks(DataLoader([]), _Strategy(2))


Point = namedtuple("Point", ["x", "y"])
DATA = [
    {"a": 1.5, "b": [2, np.float64(3.0), np.array([1, 2])], "c": "text", "d": True},
    (1, 2.0, False),
    Point(1, np.array([1.0])),
    OrderedDict(k=torch.tensor([1.0]), n=None),
]


@pytest.mark.parametrize("data", DATA, ids=range(len(DATA)))
def test_convert_to_tensors(data: Any) -> None:
    assert same(conversion.convert_to_tensors(data, "cpu"), pl_apply_func.convert_to_tensors(data, "cpu"))


def test_convert_tensors_to_scalars() -> None:
    data = {"a": torch.tensor(1.5), "b": [torch.tensor([2]), 3], "c": (torch.tensor(True),)}
    assert same(conversion.convert_tensors_to_scalars(data), pl_apply_func.convert_tensors_to_scalars(data))
    message = "The metric `tensor([1, 2])` does not contain a single element, thus it cannot be converted to a scalar."
    with pytest.raises(ValueError, match=re.escape(message)):
        conversion.convert_tensors_to_scalars({"m": torch.tensor([1, 2])})


def test_merge_dicts() -> None:
    d1 = {"a": 1.7, "b": 2.0, "c": 1, "d": {"d1": 1, "d3": 3}}
    d2 = {"a": 1.1, "b": 2.2, "v": 1, "d": {"d1": 2, "d2": 3}}
    d3 = {"a": 1.1, "v": 2.3, "d": {"d3": 3, "d4": {"d5": 1}}, "n": None}
    funcs = {"a": np.mean, "v": max, "d": {"d1": sum}}
    cases = [([d1, d2, d3], funcs, min), ([d1, d2],), ([d1, d2, {"a": None, "b": 1.0}], None, max), ([{"n": None}],)]
    for args in cases:
        assert outcome(dict_merging.merge_dicts, *args) == outcome(pl_logger.merge_dicts, *args)


class _Config:
    def __init__(this, x, *rest, y=1, **extra):
        pass


class _Plain:
    def __init__(self, a, b=2):
        pass


@pytest.mark.parametrize("cls", [_Config, _Plain])
def test_parse_class_init_keys(cls: type) -> None:
    assert hparams_parsing.parse_class_init_keys(cls) == pl_parsing.parse_class_init_keys(cls)


class _Recorder:
    frames: list[Any] = []

    def __init__(self, a, b=2, *args, c=3, **kwargs):
        super().__init__()  # `super()` puts `__class__` in the frame, which get_init_args reads
        _Recorder.frames.append(inspect.currentframe())


def test_get_init_args() -> None:
    _Recorder(1, c=4, extra="e")
    frame = _Recorder.frames.pop()
    assert (
        hparams_parsing.get_init_args(frame)
        == pl_parsing.get_init_args(frame)
        == {"a": 1, "b": 2, "c": 4, "extra": "e"}
    )
    outer = inspect.currentframe()
    assert outer is not None
    assert hparams_parsing.get_init_args(outer) == pl_parsing.get_init_args(outer) == {}


@pytest.mark.parametrize("value", [1, "s", [1, 2], lambda: 1, torch.nn.Linear(1, 1), (x for x in [])])
def test_is_picklable_and_clean_namespace(value: Any) -> None:
    assert hparams_parsing.is_picklable(value) == pl_parsing.is_picklable(value)
    ours, theirs = {"v": value, "keep": 1}, {"v": value, "keep": 1}
    with warnings.catch_warnings(record=True) as caught_ours:
        warnings.simplefilter("always")
        hparams_parsing.clean_namespace(ours)
    with warnings.catch_warnings(record=True) as caught_theirs:
        warnings.simplefilter("always")
        pl_parsing.clean_namespace(theirs)
    assert ours.keys() == theirs.keys()
    assert [str(w.message) for w in caught_ours] == [str(w.message) for w in caught_theirs]


@pytest.mark.parametrize("text", ["3", "2.5", "True", "[1, 2]", "{'a': 1}", "plain", "1e-3", "None", "a b"])
def test_convert(text: str) -> None:
    assert same(hparams_tags.convert(text), pl_saving.convert(text))


def test_tags_csv_files_are_byte_identical_and_load_back(tmp_path: Path) -> None:
    hparams = argparse.Namespace(batch_size=32, learning_rate=0.001, data_root="./any/path", flag=True, dims=[1, 2])
    hparams_tags.save_hparams_to_tags_csv(tmp_path / "ours.csv", hparams)
    pl_saving.save_hparams_to_tags_csv(tmp_path / "theirs.csv", hparams)
    assert (tmp_path / "ours.csv").read_bytes() == (tmp_path / "theirs.csv").read_bytes()
    assert hparams_tags.load_hparams_from_tags_csv(tmp_path / "theirs.csv") == vars(hparams)
    with pytest.warns(RuntimeWarning, match="Missing Tags"):
        assert hparams_tags.load_hparams_from_tags_csv(tmp_path / "none.csv") == {}
    with pytest.raises(RuntimeError, match="Missing folder"):
        hparams_tags.save_hparams_to_tags_csv(tmp_path / "no" / "x.csv", {})


def test_update_hparams() -> None:
    for updates in ({"a": {"b": 2}, "c": 1}, {"a": {"b": 4}, "c": 7}, {"c": {"x": 1}}):
        ours, theirs = {"c": 4, "a": {"b": 0, "z": 1}}, {"c": 4, "a": {"b": 0, "z": 1}}
        assert outcome(hparams_tags.update_hparams, ours, updates) == outcome(pl_saving.update_hparams, theirs, updates)
        assert ours == theirs


def test_lightning_enum() -> None:
    ours, theirs = enums.GradClipAlgorithmType, pl_enums.GradClipAlgorithmType
    assert [(m.name, m.value) for m in ours] == [(m.name, m.value) for m in theirs]
    assert ours.NORM == "NORM" and ours.NORM == theirs.NORM and ours.VALUE != "norm"  # noqa: PT018
    assert hash(ours.NORM) == hash(theirs.NORM)
    for value, source in (("value", "key"), ("NORM", "any"), ("norm", "value")):
        assert ours.from_str(value, source).name == theirs.from_str(value, source).name
    with pytest.raises(ValueError, match=r"Invalid match: expected one of \['VALUE', 'NORM'\], but got x."):
        ours.from_str("x")
    with pytest.warns(UserWarning, match="Invalid string"):
        assert ours.try_from_str("x") is None


def test_loop_names() -> None:
    for ours, theirs in (
        (loop_names.FitRestartStage, fit_loop.RestartStage),
        (loop_names.EpochRestartStage, training_epoch_loop.RestartStage),
        (loop_names.EvaluationRestartStage, evaluation_loop.RestartStage),
    ):
        assert {k: v for k, v in vars(ours).items() if k.isupper()} == {
            k: v for k, v in vars(theirs).items() if k.isupper()
        }
    for loss in (torch.tensor(1.0), None):
        loop_names.check_finite_loss(loss)
    for loss in (torch.tensor(float("nan")), torch.tensor([1.0, float("inf")])):
        with pytest.raises(ValueError) as ours_error:
            loop_names.check_finite_loss(loss)
        with pytest.raises(ValueError) as theirs_error:
            pl_loop_utilities.check_finite_loss(loss)
        assert str(ours_error.value) == str(theirs_error.value)
    assert loop_names.do_nothing_closure() is None


def test_rank_messages() -> None:
    for rank in (None, 0, 3):
        ours = rank_messages.rank_prefixed_message("hi", rank)
        assert ours == lu_rank_zero.rank_prefixed_message("hi", rank)
    cache = rank_messages.WarningCache()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cache.warn("once")
        cache.warn("once")
        cache.deprecation("old")
        rank_messages.rank_zero_deprecation("older")
    assert [(str(w.message), w.category) for w in caught] == [
        ("once", UserWarning),
        ("old", lightning_errors.LightningDeprecationWarning),
        ("older", lightning_errors.LightningDeprecationWarning),
    ]
    assert cache == {"once", "old"}


def test_disable_possible_user_warnings() -> None:
    from fulgor.errors import PossibleUserWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lightning_errors.disable_possible_user_warnings()
        warnings.warn("hidden", PossibleUserWarning, stacklevel=1)
        warnings.warn("shown", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["shown"]
    ours = inspect.signature(lightning_errors.disable_possible_user_warnings).parameters
    assert list(ours) == list(inspect.signature(pl_fabric_warnings.disable_possible_user_warnings).parameters)


def test_sigterm_exception_is_lightnings_kind() -> None:
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    assert lightning_errors.SIGTERMException.__mro__[1:] == SIGTERMException.__mro__[1:]


def test_availability_flags_agree_with_lightnings() -> None:
    for module in (pl_imports, __import__("lightning_fabric.utilities.imports", fromlist=["x"])):
        flags = {k: v for k, v in vars(module).items() if k.startswith("_") and k.isupper() and "_" in k[1:]}
        ours = {k: getattr(available_packages, k) for k in flags}
        assert ours == {k: bool(v) for k, v in flags.items()}, module.__name__
        assert all(isinstance(v, bool) for v in ours.values())


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"min_cuda_gpus": 1},
        {"min_torch": "99.0"},
        {"max_torch": "2.0"},
        {"min_python": "3.9"},
        {"min_python": "9.0"},
        {"tpu": True},
        {"mps": False},
        {"mps": True},
        {"standalone": True},
        {"skip_windows": True},
        {"linux_only": True},
        {"bf16_cuda": True},
    ],
)
def test_runif_reasons(kwargs: dict[str, Any]) -> None:
    assert runif._runif_reasons(**kwargs) == pl_testing._runif_reasons(**kwargs)
