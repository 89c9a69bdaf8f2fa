"""Steps that fetch their own batches (`training_step(self, dataloader_iter)` and the validation, test and predict
steps likewise): how often each step runs, what `next(dataloader_iter)` gives, what the batch hooks receive, and
StopIteration raised by the step ending the epoch; fixed numbers, and the same under pytorch-lightning 2.6.6."""

from __future__ import annotations

import warnings
from collections import Counter
from types import ModuleType
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

import fulgor
from helpers.boring import boring_classes


class TensorRows(Dataset[torch.Tensor]):
    def __init__(self, rows: torch.Tensor) -> None:
        self.rows = rows

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.rows[index]

    def __len__(self) -> int:
        return len(self.rows)


QUIET: dict[str, Any] = {"enable_progress_bar": False, "enable_model_summary": False, "logger": False}


def _oracle() -> ModuleType:
    lib: ModuleType = pytest.importorskip("pytorch_lightning")
    return lib


def record_hooks(lib: ModuleType, root: Any, fn: str) -> dict[str, list[Any]]:
    """`fn` ("fit", "validate" or "predict") on two loaders {"a": [0, 1], "b": [2, 3]}: the batch hooks' arguments
    and what the step fetched."""
    seen: dict[str, list[Any]] = {"start": [], "step": [], "end": []}
    stage = {"fit": "train", "validate": "validation", "predict": "predict"}[fn]
    step_name = {"fit": "training_step", "validate": "validation_step", "predict": "predict_step"}[fn]

    class Model(boring_classes(lib).BoringModel):  # type: ignore[misc]
        pass

    def on_start(self: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        seen["start"].append((batch, batch_idx, dataloader_idx))

    def step(self: Any, dataloader_iter: Any) -> None:
        seen["step"].append(next(dataloader_iter))

    def on_end(self: Any, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        seen["end"].append((batch, batch_idx, dataloader_idx))

    setattr(Model, f"on_{stage}_batch_start", on_start)
    setattr(Model, step_name, step)
    setattr(Model, f"on_{stage}_batch_end", on_end)
    trainer = lib.Trainer(
        default_root_dir=root, max_epochs=1, limit_train_batches=3, limit_val_batches=1, num_sanity_val_steps=0,
        enable_checkpointing=False, **QUIET,
    )  # fmt: skip
    data = {"a": [0, 1], "b": [2, 3]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if fn == "fit":
            trainer.fit(Model(), train_dataloaders=data, val_dataloaders=[])
        else:
            getattr(trainer, fn)(Model(), data)
    return seen


EXPECTED = {
    # a dict of loaders trains as one combined loader: each fetch is ({"a": .., "b": ..}, batch_idx, 0)
    "fit": [(None, 0, 0), ({"a": 0, "b": 2}, 0, 0)],
    # evaluation reads the loaders in turn (limit_val_batches=1 each): the hooks see the batch fetched last
    "validate": [(None, 0, 0), (0, 0, 0)],
    "predict": [(None, 0, 0), (0, 0, 0), (1, 1, 0), (2, 0, 1)],
}


@pytest.mark.parametrize("fn", list(EXPECTED))
def test_batch_hooks_receive_the_batch_fetched_last(fn: str, tmp_path: Any) -> None:
    seen = record_hooks(fulgor, tmp_path, fn)
    assert seen["start"] == EXPECTED[fn]
    assert seen["end"] == seen["step"]
    assert seen["start"][1:] == seen["step"][:-1]


@pytest.mark.oracle
@pytest.mark.parametrize("fn", list(EXPECTED))
def test_batch_hooks_and_fetches_equal_lightnings(fn: str, tmp_path: Any) -> None:
    assert record_hooks(fulgor, tmp_path / "f", fn) == record_hooks(_oracle(), tmp_path / "pl", fn)


def count_fetches(lib: ModuleType, root: Any, limit: int | None) -> dict[str, dict[str, int]]:
    """Every stage with a step taking two batches per call from 8 batches (`limit` batches when set)."""
    record: dict[str, Counter[str]] = {s: Counter() for s in ("sanity", "training", "validation", "test", "predict")}

    class Model(boring_classes(lib).BoringModel):  # type: ignore[misc]
        def shared(self, dataloader_iter: Any, stage: str) -> Any:
            record[stage]["entered"] += 1
            batch = None
            for _ in range(2):
                try:
                    batch, _, _ = next(dataloader_iter)
                except StopIteration:
                    record[stage]["raised"] += 1
                    return None
                record[stage]["fetched"] += 1
            return self.layer(batch).sum()

        def training_step(self, dataloader_iter: Any) -> Any:
            return self.shared(dataloader_iter, "training")

        def validation_step(self, dataloader_iter: Any) -> Any:
            return self.shared(dataloader_iter, "sanity" if self.trainer.sanity_checking else "validation")

        def test_step(self, dataloader_iter: Any) -> Any:
            return self.shared(dataloader_iter, "test")

        def predict_step(self, dataloader_iter: Any) -> Any:
            return self.shared(dataloader_iter, "predict")

    data: DataLoader[torch.Tensor] = DataLoader(TensorRows(torch.randn(16, 32)), batch_size=2)
    limits = {"limit_train_batches": limit, "limit_val_batches": limit, "limit_test_batches": limit}
    trainer = lib.Trainer(
        default_root_dir=root, max_epochs=1, num_sanity_val_steps=2 if limit is None else limit,
        limit_predict_batches=limit, enable_checkpointing=False, **limits, **QUIET,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(Model(), data, data)
        trainer.test(Model(), data)
        trainer.predict(Model(), data)
    return {stage: dict(counts) for stage, counts in record.items()}


def test_each_step_runs_until_the_data_is_exhausted(tmp_path: Any) -> None:
    counts = count_fetches(fulgor, tmp_path, None)
    assert counts["sanity"] == {"entered": 1, "fetched": 2}  # one item read ahead: the step never meets the end
    for stage in ("training", "validation", "test", "predict"):
        assert counts[stage] == {"entered": 4, "fetched": 8}, stage
    limited = count_fetches(fulgor, tmp_path, 2)
    assert all(limited[stage] == {"entered": 1, "fetched": 2} for stage in limited)


@pytest.mark.oracle
@pytest.mark.parametrize("limit", [None, 2, 100])
def test_fetch_counts_equal_lightnings(limit: int | None, tmp_path: Any) -> None:
    assert count_fetches(fulgor, tmp_path / "f", limit) == count_fetches(_oracle(), tmp_path / "pl", limit)


def test_stop_iteration_from_the_step_ends_the_epoch(tmp_path: Any) -> None:
    steps: list[int] = []

    class Model(boring_classes(fulgor).BoringModel):  # type: ignore[misc]
        def training_step(self, dataloader_iter: Any) -> Any:
            batch, batch_idx, _ = next(dataloader_iter)
            steps.append(batch_idx)
            if batch_idx == 2:
                raise StopIteration
            return super().training_step(batch, batch_idx)

    trainer = fulgor.Trainer(default_root_dir=tmp_path, max_epochs=2, limit_val_batches=0, **QUIET)
    trainer.fit(Model())
    assert steps == [0, 1, 2, 0, 1, 2]
    assert trainer.current_epoch == 2
    assert trainer.global_step == 4  # the steps that raised did not step the optimizer
