"""seed_everything / reset_seed / isolate_rng / pl_worker_init_function: messages, env vars, and random streams
identical to Lightning's (in-process and in real DataLoader workers)."""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from fulgor.rank import log
from fulgor.seed import isolate_rng, pl_worker_init_function, reset_seed, seed_everything


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS", "RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        monkeypatch.delenv(key, raising=False)
    with isolate_rng():
        yield


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def messages() -> Iterator[list[str]]:
    handler = _Capture()
    old_level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    yield handler.messages
    log.removeHandler(handler)
    log.setLevel(old_level)


def _draw() -> tuple[list[float], float, list[float]]:
    return torch.rand(3).tolist(), random.random(), np.random.rand(3).tolist()


def test_seed_everything_seeds_all_generators(messages: list[str]) -> None:
    assert seed_everything(42) == 42
    drawn = _draw()
    torch.manual_seed(42)
    random.seed(42)
    np.random.seed(42)
    assert drawn == _draw()
    assert os.environ["PL_GLOBAL_SEED"] == "42"
    assert os.environ["PL_SEED_WORKERS"] == "0"
    assert messages == ["Seed set to 42"]


def test_seed_from_env_and_defaults(monkeypatch: pytest.MonkeyPatch, messages: list[str]) -> None:
    with pytest.warns(UserWarning, match="^No seed found, seed set to 0$"):
        assert seed_everything() == 0
    monkeypatch.setenv("PL_GLOBAL_SEED", "7")
    assert seed_everything(workers=True) == 7
    assert os.environ["PL_SEED_WORKERS"] == "1"
    assert seed_everything(3.9) == 3  # type: ignore[arg-type]
    monkeypatch.setenv("RANK", "1")
    seed_everything(5)
    assert seed_everything(6, verbose=False) == 6
    assert messages == ["Seed set to 0", "Seed set to 7", "Seed set to 3", "[rank: 1] Seed set to 5"]


def test_seed_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"^4294967296 is not in bounds, numpy accepts from 0 to 4294967295$"):
        seed_everything(2**32)
    with pytest.raises(ValueError, match=r"^-1 is not in bounds"):
        seed_everything(-1)
    monkeypatch.setenv("PL_GLOBAL_SEED", "abc")
    with pytest.raises(ValueError, match=r"^Invalid seed specified via PL_GLOBAL_SEED: 'abc'$"):
        seed_everything()


def test_reset_seed() -> None:
    reset_seed()  # no seed set: nothing happens
    assert "PL_GLOBAL_SEED" not in os.environ
    seed_everything(11, workers=True)
    first = _draw()
    reset_seed()
    assert _draw() == first
    assert os.environ["PL_SEED_WORKERS"] == "1"


def _draw_then_fail() -> None:
    with isolate_rng():
        _draw()
        raise RuntimeError("boom")


def test_isolate_rng_restores_state_even_on_error() -> None:
    torch.manual_seed(1)
    random.seed(1)
    np.random.seed(1)
    with isolate_rng(include_cuda=False):
        expected = _draw()
    with pytest.raises(RuntimeError, match="boom"):
        _draw_then_fail()
    assert _draw() == expected


@pytest.mark.oracle
def test_seed_everything_same_streams_as_lightning() -> None:
    seed_mod = pytest.importorskip("lightning_fabric.utilities.seed")
    seed_everything(1234, verbose=False)
    ours = _draw()
    seed_mod.seed_everything(1234, verbose=False)
    assert _draw() == ours


@pytest.mark.oracle
@pytest.mark.parametrize(("base", "worker_id", "rank"), [(0, 0, 0), (42, 1, 0), (42, 3, 2), (2**40 + 5, 7, 1)])
def test_worker_init_same_streams_as_lightning(base: int, worker_id: int, rank: int) -> None:
    seed_mod = pytest.importorskip("lightning_fabric.utilities.seed")
    results = []
    for init in (pl_worker_init_function, seed_mod.pl_worker_init_function):
        torch.manual_seed(base + worker_id)  # what a DataLoader worker sees: base seed + worker id
        random.seed(0)
        np.random.seed(0)
        init(worker_id, rank=rank)
        results.append(_draw())
    assert results[0] == results[1]
    torch.manual_seed(base + worker_id)
    pl_worker_init_function(worker_id, rank=rank + 1)
    assert _draw() != results[0]  # the rank changes every stream


class _RandomData(Dataset[Any]):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> tuple[float, float, float]:
        return torch.rand(1).item(), random.random(), float(np.random.rand())


def _worker_draws(init: Callable[[int], None]) -> list[list[float]]:
    loader = DataLoader(
        _RandomData(),
        batch_size=1,
        num_workers=2,
        worker_init_fn=init,
        generator=torch.Generator().manual_seed(5),
        multiprocessing_context="fork",
    )
    return [[float(x) for x in batch] for batch in loader]


@pytest.mark.oracle
def test_worker_init_in_real_workers_matches_lightning() -> None:
    seed_mod = pytest.importorskip("lightning_fabric.utilities.seed")
    ours = _worker_draws(pl_worker_init_function)
    assert ours == _worker_draws(seed_mod.pl_worker_init_function)
    assert ours[0] != ours[1]  # workers 0 and 1 get different streams
