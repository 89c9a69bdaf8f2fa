"""A small writer of TensorBoard event files holding scalars, so that logging scalars does not import tensorboard
(``torch.utils.tensorboard`` costs about 0.2 s per process). TensorBoard reads the files like ``SummaryWriter``'s.

An event file is a sequence of TFRecords (``uint64 length``, ``uint32 masked CRC-32C of the length``, the data,
``uint32 masked CRC-32C of the data``; little-endian) holding serialized ``Event`` protobufs, of which only what a
scalar needs is encoded: ``Event{wall_time=1, step=2, file_version=3, summary=5}``, ``Summary{value=1}``,
``Summary.Value{tag=1, simple_value=2}``."""

from __future__ import annotations

import os
import socket
import struct
import time
import weakref
from typing import IO, Any

__all__ = ["ScalarEventWriter", "crc32c", "encode_event", "encode_scalar_summary", "index_sorting_after"]

_table: list[int] = []
_now = time.monotonic  # the flush_secs clock (tests replace it)


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) of ``data``, table-driven."""
    table = _table or _build_table()
    crc = 0xFFFFFFFF
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _build_table() -> list[int]:
    for n in range(256):
        for _ in range(8):
            n = (n >> 1) ^ 0x82F63B78 if n & 1 else n >> 1
        _table.append(n)
    return _table


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC: the CRC-32C rotated right by 15 bits plus ``0xa282ead8`` (mod 2**32)."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # a negative int64 is its 64-bit two's complement: 10 bytes
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2) with a one-byte key (field numbers below 16)."""
    return bytes((tag << 3 | 2,)) + _varint(len(payload)) + payload


def _float32(value: float) -> bytes:
    try:
        return struct.pack("<f", value)
    except OverflowError:  # beyond float32's range: protobuf stores an infinity of the same sign
        return struct.pack("<f", float("inf") if value > 0 else float("-inf"))


def encode_scalar_summary(tag: str, value: float) -> bytes:
    """``Summary(value=[Summary.Value(tag=tag, simple_value=value)])`` serialized (``value`` rounded to float32)."""
    encoded = tag.encode("utf-8")
    return _field(1, (_field(1, encoded) if encoded else b"") + b"\x15" + _float32(value))


def encode_event(
    wall_time: float, step: int = 0, *, file_version: str | None = None, summary: bytes | None = None
) -> bytes:
    """An ``Event`` serialized as protobuf does (proto3: a zero ``wall_time``/``step`` is left out).

    Raises:
        ValueError: ``step`` does not fit an int64.
    """
    if not -(1 << 63) <= step < 1 << 63:
        raise ValueError(f"step {step} does not fit an int64")
    wall = struct.pack("<d", wall_time)
    out = b"\x09" + wall if wall != b"\0" * 8 else b""
    if step:
        out += b"\x10" + _varint(step)
    if file_version is not None:
        out += _field(3, file_version.encode("utf-8"))
    if summary is not None:
        out += _field(5, summary)
    return out


def _record(data: bytes) -> bytes:
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc32c(length)) + data + struct.pack("<I", masked_crc32c(data))


def _as_float(value: Any) -> float:
    if isinstance(value, (list, tuple, dict, set)) or value is None:
        raise TypeError(f"expected a number, got {type(value).__name__}")
    item = getattr(value, "item", None)  # numpy scalars and one-element arrays, tensors
    return float(item() if callable(item) else value)


def index_sorting_after(last: int, lo: int) -> int:
    """The smallest file index ``>= lo`` and ``> last`` whose digits sort after ``last``'s (last 9, lo 0 -> 90), so
    that a file opened in the same second is read after ours (TensorBoard sorts file names as strings)."""
    lo, digits = max(lo, last + 1), str(last)
    if str(lo) > digits:
        return lo
    # lo has more digits than last here; last followed by zeros is the first longer name sorting after last's
    extra = len(str(lo)) - len(digits)
    return int(digits + "0" * extra) if int(digits + "0" * extra) >= lo else int(digits + "0" * (extra + 1))


def _write_and_close(file: IO[bytes], pending: list[bytes]) -> None:
    file.write(b"".join(pending))
    pending.clear()
    file.close()


class ScalarEventWriter:
    """Writes scalars to a new event file in ``log_dir``, named as ``SummaryWriter`` names its files.

    Records wait in memory and reach the file (one ``write``, no ``fsync``) when ``max_queue`` of them are pending
    (``<= 0``: no limit), when ``flush_secs`` have passed since the last write (checked in :meth:`add_scalar`; no
    background thread), on :meth:`flush`, :meth:`close`, garbage collection or interpreter exit. So ``add_scalar``
    costs one small encode and CRC, and most calls no system call.
    """

    last_index = -1  # the <n> of the newest file name, per process (shared by all writers)

    def __init__(
        self, log_dir: str | os.PathLike[str], max_queue: int = 10, flush_secs: float = 120, filename_suffix: str = ""
    ) -> None:
        os.makedirs(log_dir, exist_ok=True)
        stem = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}"
        while True:  # never overwrite a file, e.g. one a SummaryWriter opened in the same second
            self.index = ScalarEventWriter.last_index = ScalarEventWriter.last_index + 1
            self.path = os.path.join(os.fspath(log_dir), f"{stem}.{self.index}{filename_suffix}")
            try:
                file = open(self.path, "xb")  # noqa: SIM115 - closed by close() or the finalizer
                break
            except FileExistsError:
                continue
        self._file, self._max_queue, self._flush_secs = file, int(max_queue), float(flush_secs)
        self._pending = [_record(encode_event(time.time(), file_version="brain.Event:2"))]
        self._finalizer = weakref.finalize(self, _write_and_close, file, self._pending)
        self.flush()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return not self._finalizer.alive

    def add_scalar(self, tag: str, value: Any, step: int | None = None, walltime: float | None = None) -> None:
        """Record ``value`` (a number, a one-element array or tensor) under ``tag`` at ``step`` (``None``: 0).

        Raises:
            TypeError: ``value`` is not a single number.
            ValueError: ``value`` has several elements, or the writer is closed.
        """
        if self.closed:
            raise ValueError(f"the event file {self.path} is closed")
        summary = encode_scalar_summary(tag, _as_float(value))
        event = encode_event(time.time() if walltime is None else walltime, int(step or 0), summary=summary)
        self._pending.append(_record(event))
        if 0 < self._max_queue <= len(self._pending) or _now() - self._last_flush >= self._flush_secs:
            self.flush()

    def flush(self) -> None:
        """Write the pending records to the file (a no-op once closed)."""
        if self._pending and not self.closed:
            self._file.write(b"".join(self._pending))
            self._file.flush()
            self._pending.clear()
        self._last_flush = _now()

    def close(self) -> None:
        """Write the pending records and close the file; later calls do nothing."""
        self._finalizer()
