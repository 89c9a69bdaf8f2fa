"""The type aliases and protocols Lightning exports for annotations (`utilities.types` of pytorch_lightning and
lightning_fabric): step outputs, dataloader and scheduler types, configure_optimizers' return forms, and the
structural types of optimizers and process groups."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, NotRequired, Protocol, Required, TypeAlias, TypedDict, TypeVar, Union, runtime_checkable

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from fulgor.hook_defaults import STEP_OUTPUT
from fulgor.optimizer import LRSchedulerConfig

__all__ = [
    "EVAL_DATALOADERS",
    "STEP_OUTPUT",
    "TRAIN_DATALOADERS",
    "CollectibleGroup",
    "DistributedDataParallel",
    "LRSchedulerConfig",
    "LRSchedulerConfigType",
    "LRSchedulerPLType",
    "LRSchedulerType",
    "LRSchedulerTypeTuple",
    "LRSchedulerTypeUnion",
    "Optimizable",
    "OptimizerConfig",
    "OptimizerLRScheduler",
    "OptimizerLRSchedulerConfig",
    "Steppable",
]

_NUMBER: TypeAlias = int | float
_METRIC: TypeAlias = Any  # a torchmetrics Metric, a Tensor or a number (torchmetrics is optional: not imported here)
_EVALUATE_OUTPUT: TypeAlias = list[Mapping[str, float]]  # one dict per dataloader
_PREDICT_OUTPUT: TypeAlias = list[Any] | list[list[Any]]
_PATH: TypeAlias = str | Path
_DEVICE: TypeAlias = torch.device | str | int
_MAP_LOCATION_TYPE: TypeAlias = _DEVICE | Callable[[Any, str], Any] | dict[_DEVICE, _DEVICE] | None
_PARAMETERS: TypeAlias = Iterator[torch.nn.Parameter]
TRAIN_DATALOADERS: TypeAlias = Any  # any iterable, or collection of iterables
EVAL_DATALOADERS: TypeAlias = Any

LRSchedulerTypeTuple = (LRScheduler, ReduceLROnPlateau)
LRSchedulerTypeUnion: TypeAlias = LRScheduler | ReduceLROnPlateau
LRSchedulerType: TypeAlias = type[LRScheduler] | type[ReduceLROnPlateau]
LRSchedulerPLType: TypeAlias = LRScheduler | ReduceLROnPlateau


@runtime_checkable
class DistributedDataParallel(Protocol):
    """The structural type of torch's DistributedDataParallel (what `no_sync` code relies on)."""

    def no_sync(self) -> AbstractContextManager[Any]: ...


class LRSchedulerConfigType(TypedDict, total=False):
    """The `lr_scheduler` dict `configure_optimizers` may return."""

    scheduler: Required[LRSchedulerTypeUnion]
    name: str | None
    interval: str
    frequency: int
    reduce_on_plateau: bool
    monitor: str | None
    strict: bool


class OptimizerConfig(TypedDict):
    """`{"optimizer": ...}`."""

    optimizer: Optimizer


class OptimizerLRSchedulerConfig(TypedDict):
    """`{"optimizer": ..., "lr_scheduler": ..., "monitor": ...}`."""

    optimizer: Optimizer
    lr_scheduler: LRSchedulerTypeUnion | LRSchedulerConfigType
    monitor: NotRequired[str]


OptimizerLRScheduler: TypeAlias = Union[  # noqa: UP007 (a long union reads better one form per line)
    Optimizer,
    Sequence[Optimizer],
    tuple[Sequence[Optimizer], Sequence[LRSchedulerTypeUnion | LRSchedulerConfig]],
    OptimizerConfig,
    OptimizerLRSchedulerConfig,
    Sequence[OptimizerConfig],
    Sequence[OptimizerLRSchedulerConfig],
    None,
]


@runtime_checkable
class CollectibleGroup(Protocol):
    """A process group: something with a size and this process's rank in it."""

    def size(self) -> int: ...

    def rank(self) -> int: ...


@runtime_checkable
class Steppable(Protocol):
    """Anything with `step(closure=None)`, like an optimizer."""

    def step(self, closure: Callable[[], float] | None = ...) -> float | None: ...


@runtime_checkable
class Optimizable(Steppable, Protocol):
    """The structural type of a torch optimizer."""

    param_groups: list[dict[Any, Any]]
    defaults: dict[Any, Any]
    state: Any

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: dict[str, Any]) -> None: ...


_DictKey = TypeVar("_DictKey")


@runtime_checkable
class _Stateful(Protocol[_DictKey]):
    """Anything with `state_dict()` / `load_state_dict()` (`isinstance(obj, _Stateful)`)."""

    def state_dict(self) -> dict[_DictKey, Any]: ...

    def load_state_dict(self, state_dict: dict[_DictKey, Any]) -> None: ...
