"""fulgor's own scalar event writer: CRC-32C, the protobuf bytes compared with tensorboard's generated classes, and
files read back with tensorboard's EventFileLoader."""

from __future__ import annotations

import gc
import math
import os
import random
import re
import socket
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as tb_masked_crc32c
from tensorboard.util import tensor_util

from fulgor.loggers import tb_events
from fulgor.loggers.tb_events import (
    ScalarEventWriter,
    crc32c,
    encode_event,
    encode_scalar_summary,
    index_sorting_after,
    masked_crc32c,
)


def _events(path: str | Path) -> list[Any]:
    return list(EventFileLoader(str(path)).Load())


def _scalars(path: str | Path) -> list[tuple[str, int, float]]:
    # EventFileLoader turns `simple_value` into a float32 scalar tensor, as TensorBoard's scalar plugin reads it.
    out = []
    for event in _events(path):
        for v in event.summary.value:
            assert v.metadata.plugin_data.plugin_name == "scalars"
            out.append((v.tag, event.step, float(tensor_util.make_ndarray(v.tensor).item())))
    return out


def _f32(value: float) -> float:
    return (
        float(np.float32(value)) if abs(value) <= 3.4028235e38 or math.isnan(value) else math.copysign(math.inf, value)
    )


def test_crc32c_check_values() -> None:
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    assert crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 test vectors
    assert crc32c(bytes(range(32))) == 0x46DD794E
    rng = random.Random(0)
    for size in (0, 1, 8, 33, 200):
        data = bytes(rng.randrange(256) for _ in range(size))
        assert masked_crc32c(data) == tb_masked_crc32c(data)


WALL_TIMES = [0.0, -0.0, 1.5, 1_700_000_000.123456, -3.25, 1e300]
STEPS = [0, 1, 127, 128, 300, 2**31, 2**63 - 1, -1, -(2**63)]
TAGS = ["loss", "", "train/acc", "größe/λ", "🙂" * 40]
VALUES = [0.0, -0.0, 1.0, -2.5, 0.1, 1e-45, 1e-50, 3.4e38, 1e39, -1e300, math.inf, -math.inf, math.nan]


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("wall_time", WALL_TIMES)
def test_event_bytes_equal_protobuf(wall_time: float, step: int) -> None:
    for tag, value in zip(TAGS * 3, VALUES):
        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)])
        expected = event_pb2.Event(wall_time=wall_time, step=step, summary=summary).SerializeToString()
        assert encode_event(wall_time, step, summary=encode_scalar_summary(tag, value)) == expected
    header = event_pb2.Event(wall_time=wall_time, step=step, file_version="brain.Event:2").SerializeToString()
    assert encode_event(wall_time, step, file_version="brain.Event:2") == header


def test_step_out_of_int64_range() -> None:
    with pytest.raises(ValueError, match="does not fit an int64"):
        encode_event(0.0, 2**63)


def test_written_file_reads_back(tmp_path: Path) -> None:
    writer = ScalarEventWriter(tmp_path / "run", filename_suffix=".sfx")
    logged: list[tuple[str, int, float]] = []
    for step, value in zip([0, 5, 10**12, -3], VALUES):
        for tag in TAGS[:4]:
            writer.add_scalar(tag, value, step)
            logged.append((tag, step, _f32(value)))
    writer.add_scalar("wall", 2.0, None, walltime=1234.5)
    writer.add_scalar("types", np.float64(0.25), 1)
    writer.add_scalar("types", np.array([0.5], dtype=np.float32), 2)
    writer.add_scalar("types", torch.tensor(0.75), 3)
    writer.add_scalar("types", True, 4)
    writer.close()
    writer.close()  # idempotent
    name = os.path.basename(writer.path)
    pattern = rf"events\.out\.tfevents\.\d{{10}}\.{re.escape(socket.gethostname())}\.{os.getpid()}\.\d+\.sfx"
    assert re.fullmatch(pattern, name)
    events = _events(writer.path)
    assert events[0].file_version == "brain.Event:2"
    assert not events[0].HasField("summary")
    got = _scalars(writer.path)
    for (tag, step, value), (tag2, step2, value2) in zip(logged, got):
        assert (tag, step) == (tag2, step2)
        assert value2 == value or (math.isnan(value) and math.isnan(value2))
    tail = [("wall", 0, 2.0), ("types", 1, 0.25), ("types", 2, 0.5), ("types", 3, 0.75), ("types", 4, 1.0)]
    assert got[len(logged) :] == tail
    assert events[len(logged) + 1].wall_time == 1234.5
    assert events[1].wall_time > 1e9


def test_rejects_what_is_not_one_number(tmp_path: Path) -> None:
    writer = ScalarEventWriter(tmp_path)
    for bad in ([1, 2], None, {"a": 1}, "abc"):
        with pytest.raises((TypeError, ValueError)):
            writer.add_scalar("bad", bad, 0)
    with pytest.raises((TypeError, ValueError)):
        writer.add_scalar("bad", np.array([1.0, 2.0]), 0)
    writer.close()
    with pytest.raises(ValueError, match="is closed"):
        writer.add_scalar("late", 1.0, 0)
    writer.flush()  # a no-op once closed
    assert _scalars(writer.path) == []


def test_names_never_collide(tmp_path: Path) -> None:
    writers = [ScalarEventWriter(tmp_path) for _ in range(3)]
    assert len({w.path for w in writers}) == 3
    # A file already there under the next name (e.g. a SummaryWriter's) is skipped, not overwritten.
    taken = re.sub(r"\.\d+$", f".{ScalarEventWriter.last_index + 1}", writers[-1].path)
    Path(taken).write_bytes(b"keep")
    writer = ScalarEventWriter(tmp_path)
    assert writer.path != taken
    assert Path(taken).read_bytes() == b"keep"
    for w in [*writers, writer]:
        w.close()


def test_index_sorting_after() -> None:
    for last in [0, 1, 5, 9, 10, 12, 19, 99, 100, 999, 12345]:
        for lo in [0, 1, 5, 9, 10, 11, 15, 50, 95, 99, 100, 120, 950, 999, 1000, 5000, 100000]:
            want = next(v for v in range(max(lo, last + 1), 10**7) if str(v) > str(last))
            assert index_sorting_after(last, lo) == want, (last, lo)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_flush_secs_with_a_fake_clock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock()
    monkeypatch.setattr(tb_events, "_now", clock)
    writer = ScalarEventWriter(tmp_path, max_queue=0, flush_secs=10)
    header_only = os.path.getsize(writer.path)
    assert [e.file_version for e in _events(writer.path)] == ["brain.Event:2"]  # the header is written at once
    for step in range(20):
        clock.now += 0.375
        writer.add_scalar("x", step, step)  # up to 7.5 s after the last flush: still in memory
    assert os.path.getsize(writer.path) == header_only
    clock.now += 2.5
    writer.add_scalar("x", 20, 20)  # 10 s: this add writes everything pending
    assert [s[1] for s in _scalars(writer.path)] == list(range(21))
    clock.now += 100.0
    writer.add_scalar("x", 21, 21)
    assert len(_scalars(writer.path)) == 22
    writer.add_scalar("x", 22, 22)
    writer.flush()
    assert len(_scalars(writer.path)) == 23
    writer.close()


def test_max_queue_writes_every_n_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tb_events, "_now", _Clock())  # time stands still: only the queue length flushes
    writer = ScalarEventWriter(tmp_path, max_queue=3)
    seen = []
    for step in range(7):
        writer.add_scalar("x", step, step)
        seen.append(len(_scalars(writer.path)))
    assert seen == [0, 0, 3, 3, 3, 6, 6]
    writer.close()
    assert len(_scalars(writer.path)) == 7


def test_pending_records_reach_the_file_when_collected(tmp_path: Path) -> None:
    writer = ScalarEventWriter(tmp_path)
    writer.add_scalar("x", 1.0, 7)
    path = writer.path
    del writer
    gc.collect()
    assert _scalars(path) == [("x", 7, 1.0)]


def test_record_framing(tmp_path: Path) -> None:
    writer = ScalarEventWriter(tmp_path)
    writer.close()
    data = Path(writer.path).read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    assert struct.unpack("<I", data[8:12])[0] == tb_masked_crc32c(data[:8])
    assert len(data) == 8 + 4 + length + 4
    assert struct.unpack("<I", data[-4:])[0] == tb_masked_crc32c(data[12:-4])
