"""Shared pytest setup: tests/ on sys.path (so `from helpers.boring import ...` works from any test), and every
test runs in its own temporary directory, so a Trainer without `default_root_dir` writes nothing into the repo."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _run_in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def _rank_zero_after_each_test() -> Iterator[None]:
    """A test that plays another rank (launcher variables, a cluster environment) must not silence the rank-zero output
    of the tests after it: fulgor's `rank_zero_only.rank` (and the oracle's copy, which it sets) go back to 0."""
    from fulgor import rank

    yield
    rank.set_global_rank(0)


@pytest.fixture(autouse=True)
def _fresh_warn_once() -> None:
    """`fulgor.rank.warn_once` warns once per process; each test must see its own first occurrence."""
    from fulgor import rank

    rank._warned.clear()


@pytest.fixture(params=["fulgor", pytest.param("pytorch_lightning", id="lightning", marks=pytest.mark.oracle)])
def lib(request: pytest.FixtureRequest) -> Any:
    """fulgor, then (oracle) pytorch-lightning 2.6.6, for differential tests: the same test body runs on both. Imported
    when the test starts: a test elsewhere may have re-imported pytorch_lightning since collection, and a test's
    classes must all come from one import. Test files may still define their own `lib`."""
    return pytest.importorskip(request.param)
