"""Collective operations as objects (Lightning's `plugins.collectives`): `Collective`, the interface and the process
group it owns; `TorchCollective`, over torch.distributed; `SingleDeviceCollective`, the one-process stand-in where
every operation returns its input."""

from __future__ import annotations

import datetime
import os
from abc import ABC, abstractmethod
from typing import Any, Self

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["Collective", "ReduceOp", "SingleDeviceCollective", "TorchCollective"]

ReduceOp = dist.ReduceOp  # the reduction names collectives accept (Lightning re-exports torch's)


class Collective(ABC):
    """Broadcast, reduce, gather, scatter and point-to-point operations over one process group.

    `setup()` initializes the default group if needed; `create_group()` makes a group this object owns; `teardown()`
    destroys it. The class methods (`init_group`, `new_group`, `destroy_group`) are the backend's.
    """

    def __init__(self) -> None:
        self._group: Any = None

    @property
    def group(self) -> Any:
        """The process group the operations run on."""
        if self._group is None:
            raise RuntimeError(
                f"`{type(self).__name__}` does not own a group. HINT: try `collective.create_group().group`"
            )
        return self._group

    @property
    @abstractmethod
    def rank(self) -> int:
        """This process's rank in the group."""

    @property
    @abstractmethod
    def world_size(self) -> int:
        """The number of processes in the group."""

    @abstractmethod
    def broadcast(self, tensor: Tensor, src: int) -> Tensor: ...
    @abstractmethod
    def all_reduce(self, tensor: Tensor, op: Any) -> Tensor: ...
    @abstractmethod
    def reduce(self, tensor: Tensor, dst: int, op: Any) -> Tensor: ...
    @abstractmethod
    def all_gather(self, tensor_list: list[Tensor], tensor: Tensor) -> list[Tensor]: ...
    @abstractmethod
    def gather(self, tensor: Tensor, gather_list: list[Tensor], dst: int = 0) -> list[Tensor]: ...
    @abstractmethod
    def scatter(self, tensor: Tensor, scatter_list: list[Tensor], src: int = 0) -> Tensor: ...
    @abstractmethod
    def reduce_scatter(self, output: Tensor, input_list: list[Tensor], op: Any) -> Tensor: ...
    @abstractmethod
    def all_to_all(self, output_tensor_list: list[Tensor], input_tensor_list: list[Tensor]) -> list[Tensor]: ...
    @abstractmethod
    def send(self, tensor: Tensor, dst: int, tag: int = 0) -> None: ...
    @abstractmethod
    def recv(self, tensor: Tensor, src: int | None = None, tag: int = 0) -> Tensor: ...
    @abstractmethod
    def barrier(self, device_ids: list[int] | None = None) -> None: ...

    @classmethod
    @abstractmethod
    def is_available(cls) -> bool: ...
    @classmethod
    @abstractmethod
    def is_initialized(cls) -> bool: ...
    @classmethod
    @abstractmethod
    def init_group(cls, **kwargs: Any) -> None: ...
    @classmethod
    @abstractmethod
    def new_group(cls, **kwargs: Any) -> Any: ...
    @classmethod
    @abstractmethod
    def destroy_group(cls, group: Any) -> None: ...
    @classmethod
    @abstractmethod
    def _convert_to_native_op(cls, op: Any) -> Any: ...

    def setup(self, **kwargs: Any) -> Self:
        """Initialize the default group with `kwargs` (the backend's `init_group`) unless it already is."""
        if not self.is_initialized():
            self.init_group(**kwargs)
        return self

    def create_group(self, **kwargs: Any) -> Self:
        """Make a new group (the backend's `new_group(**kwargs)`) that this collective owns and runs on.

        Raises:
            RuntimeError: it owns a group already.
        """
        if self._group is not None:
            raise RuntimeError(f"`{type(self).__name__}` already owns a group.")
        self._group = self.new_group(**kwargs)
        return self

    def teardown(self) -> Self:
        """Destroy the group this collective owns.

        Raises:
            RuntimeError: it owns none.
        """
        if self._group is None:
            raise RuntimeError(f"`{type(self).__name__}` does not own a group to destroy.")
        self.destroy_group(self._group)
        self._group = None
        return self


class TorchCollective(Collective):
    """Collectives over torch.distributed; without `create_group()` they run on the default (world) group. Operations
    work in place and return their output argument.

    Raises:
        RuntimeError: torch.distributed is not available in this build of torch.
    """

    manages_default_group = False  # whether some TorchCollective initialized the default group (then it destroys it)
    addr_key = "MASTER_ADDR"
    port_key = "MASTER_PORT"

    def __init__(self) -> None:
        if not dist.is_available():
            raise RuntimeError("Torch distributed is not available.")
        super().__init__()

    @property
    def group(self) -> Any:
        if self._group is None:
            self._group = dist.GroupMember.WORLD
        return super().group

    @property
    def rank(self) -> int:
        return dist.get_rank(self.group)

    @property
    def world_size(self) -> int:
        return dist.get_world_size(self.group)

    def broadcast(self, tensor: Tensor, src: int) -> Tensor:
        dist.broadcast(tensor, src, group=self.group)
        return tensor

    def all_reduce(self, tensor: Tensor, op: Any = "sum") -> Tensor:
        dist.all_reduce(tensor, op=self._convert_to_native_op(op), group=self.group)
        return tensor

    def reduce(self, tensor: Tensor, dst: int, op: Any = "sum") -> Tensor:
        dist.reduce(tensor, dst, op=self._convert_to_native_op(op), group=self.group)
        return tensor

    def all_gather(self, tensor_list: list[Tensor], tensor: Tensor) -> list[Tensor]:
        dist.all_gather(tensor_list, tensor, group=self.group)
        return tensor_list

    def gather(self, tensor: Tensor, gather_list: list[Tensor], dst: int = 0) -> list[Tensor]:
        dist.gather(tensor, gather_list, dst, group=self.group)
        return gather_list

    def scatter(self, tensor: Tensor, scatter_list: list[Tensor], src: int = 0) -> Tensor:
        dist.scatter(tensor, scatter_list, src, group=self.group)
        return tensor

    def reduce_scatter(self, output: Tensor, input_list: list[Tensor], op: Any = "sum") -> Tensor:
        dist.reduce_scatter(output, input_list, op=self._convert_to_native_op(op), group=self.group)
        return output

    def all_to_all(self, output_tensor_list: list[Tensor], input_tensor_list: list[Tensor]) -> list[Tensor]:
        dist.all_to_all(output_tensor_list, input_tensor_list, group=self.group)
        return output_tensor_list

    def send(self, tensor: Tensor, dst: int, tag: int = 0) -> None:
        dist.send(tensor, dst, group=self.group, tag=tag)

    def recv(self, tensor: Tensor, src: int | None = None, tag: int = 0) -> Tensor:
        dist.recv(tensor, src, group=self.group, tag=tag)
        return tensor

    def all_gather_object(self, object_list: list[Any], obj: Any) -> list[Any]:
        dist.all_gather_object(object_list, obj, group=self.group)
        return object_list

    def broadcast_object_list(self, object_list: list[Any], src: int, device: torch.device | None = None) -> list[Any]:
        dist.broadcast_object_list(object_list, src, group=self.group, device=device)
        return object_list

    def gather_object(self, obj: Any, object_gather_list: list[Any], dst: int = 0) -> list[Any]:
        dist.gather_object(obj, object_gather_list, dst, group=self.group)
        return object_gather_list

    def scatter_object_list(
        self, scatter_object_output_list: list[Any], scatter_object_input_list: list[Any], src: int = 0
    ) -> list[Any]:
        # The argument names are torch.distributed's (and Lightning's), so calls by keyword carry over.
        dist.scatter_object_list(scatter_object_output_list, scatter_object_input_list, src, group=self.group)
        return scatter_object_output_list

    def barrier(self, device_ids: list[int] | None = None) -> None:
        if self.group is not dist.GroupMember.NON_GROUP_MEMBER:  # a process outside the group has nothing to wait for
            dist.barrier(group=self.group, device_ids=device_ids)

    def monitored_barrier(self, timeout: datetime.timedelta | None = None, wait_all_ranks: bool = False) -> None:
        dist.monitored_barrier(group=self.group, timeout=timeout, wait_all_ranks=wait_all_ranks)

    def setup(self, main_address: str | None = None, main_port: str | None = None, **kwargs: Any) -> Self:
        """Initialize the default group (`init_process_group(**kwargs)`) unless it already is; `main_address` and
        `main_port` fill MASTER_ADDR / MASTER_PORT for that call when they are not set."""
        if self.is_initialized():
            return self
        added = []
        for key, value in ((self.addr_key, main_address), (self.port_key, main_port)):
            if value is not None and key not in os.environ:
                os.environ[key] = str(value)
                added.append(key)
        try:
            super().setup(**kwargs)
        finally:
            for key in added:
                os.environ.pop(key, None)
        TorchCollective.manages_default_group = True
        return self

    def teardown(self) -> Self:
        """Destroy the owned group, then the default group if a TorchCollective created it and no other group is
        left."""
        member = self.group is not dist.GroupMember.NON_GROUP_MEMBER
        super().teardown()
        world = dist.GroupMember.WORLD
        if TorchCollective.manages_default_group and world is None:
            TorchCollective.manages_default_group = False
        elif member and TorchCollective.manages_default_group and len(dist.distributed_c10d._pg_map) == 1:
            self.destroy_group(world)
            TorchCollective.manages_default_group = False
        return self

    @classmethod
    def is_available(cls) -> bool:
        return dist.is_available()

    @classmethod
    def is_initialized(cls) -> bool:
        return dist.is_available() and dist.is_initialized()

    @classmethod
    def init_group(cls, **kwargs: Any) -> None:
        dist.init_process_group(**kwargs)

    @classmethod
    def new_group(cls, **kwargs: Any) -> Any:
        return dist.new_group(**kwargs)

    @classmethod
    def destroy_group(cls, group: Any) -> None:
        if group in dist.distributed_c10d._pg_map:  # a process outside the group holds a placeholder, not a group
            dist.destroy_process_group(group)

    @classmethod
    def _convert_to_native_op(cls, op: Any) -> Any:
        """`"sum"`/`"max"`/... (any case) -> torch's ReduceOp; a ReduceOp passes through."""
        if isinstance(op, (dist.ReduceOp, dist.ReduceOp.RedOpType)):
            return op
        if not isinstance(op, str):
            raise ValueError(f"Unsupported op {op!r} of type {type(op).__name__}")
        native = getattr(dist.ReduceOp, op.upper(), None)
        if native is None:
            raise ValueError(f"op {op.upper()!r} is not a member of `ReduceOp`")
        return native


class SingleDeviceCollective(Collective):
    """The collective of a single process: rank 0 of 1, every operation returns (the first of) its input."""

    @property
    def rank(self) -> int:
        return 0

    @property
    def world_size(self) -> int:
        return 1

    def broadcast(self, tensor: Tensor, *_: Any, **__: Any) -> Tensor:
        return tensor

    def all_reduce(self, tensor: Tensor, *_: Any, **__: Any) -> Tensor:
        return tensor

    def reduce(self, tensor: Tensor, *_: Any, **__: Any) -> Tensor:
        return tensor

    def all_gather(self, tensor_list: list[Tensor], tensor: Tensor, **__: Any) -> list[Tensor]:
        return [tensor]

    def gather(self, tensor: Tensor, *_: Any, **__: Any) -> list[Tensor]:
        return [tensor]

    def scatter(self, tensor: Tensor, scatter_list: list[Tensor], *_: Any, **__: Any) -> Tensor:
        return scatter_list[0]

    def reduce_scatter(self, output: Tensor, input_list: list[Tensor], *_: Any, **__: Any) -> Tensor:
        return input_list[0]

    def all_to_all(
        self, output_tensor_list: list[Tensor], input_tensor_list: list[Tensor], *_: Any, **__: Any
    ) -> list[Tensor]:
        return input_tensor_list

    def send(self, *_: Any, **__: Any) -> None:
        """Nothing to send to."""

    def recv(self, tensor: Tensor, *_: Any, **__: Any) -> Tensor:
        return tensor

    def barrier(self, *_: Any, **__: Any) -> None:
        """Nothing to wait for."""

    @classmethod
    def is_available(cls) -> bool:
        return True

    @classmethod
    def is_initialized(cls) -> bool:
        return True

    @classmethod
    def init_group(cls, **_: Any) -> None:
        """Nothing to initialize."""

    @classmethod
    def new_group(cls, **_: Any) -> Any:
        return object()  # a token: there are no real groups in one process

    @classmethod
    def destroy_group(cls, group: Any) -> None:
        """Nothing to destroy."""

    @classmethod
    def _convert_to_native_op(cls, op: Any) -> Any:
        return op
