"""EarlyStopping's rank-aware log line and WeightAveraging resumed from an epoch-end checkpoint, against the real
Lightning: which ranks log what, `fit_loop.restarting` after the resume, the swaps around validation, the weights."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest.mock import Mock

import pytest
import torch
from torch.optim.swa_utils import get_ema_multi_avg_fn
from torch.utils.data import DataLoader

import fulgor
from fulgor.callbacks import EarlyStopping


@pytest.mark.parametrize(("rank_zero_only", "world_size", "rank", "expected"), [
    (False, 1, 0, "bar"), (False, 2, 0, "[rank: 0] bar"), (False, 2, 1, "[rank: 1] bar"),
    (True, 1, 0, "bar"), (True, 2, 0, "[rank: 0] bar"), (True, 2, 1, None),
])  # fmt: skip
def test_early_stopping_log_info_prefixes_the_rank(
    caplog: pytest.LogCaptureFixture, rank_zero_only: bool, world_size: int, rank: int, expected: str | None
) -> None:
    with caplog.at_level(logging.INFO):
        EarlyStopping._log_info(Mock(global_rank=rank, world_size=world_size), "bar", rank_zero_only)
        EarlyStopping._log_info(None, "no trainer", rank_zero_only)
    assert [r.getMessage() for r in caplog.records] == ([expected] if expected else []) + ["no trainer"]


def _resume_trace(lib: ModuleType, root: Path) -> tuple[list[Any], list[float]]:
    """Train with an EMA callback and checkpoints, crash in epoch 2, resume from the epoch-1-end checkpoint: the
    (epoch, restarting, swaps so far, updates) seen at each epoch end of the resumed fit, and its final weights."""
    demos = pytest.importorskip(f"{lib.__name__}.demos.boring_classes")

    class Model(demos.BoringModel):  # type: ignore[misc,name-defined]
        crash_at: int | None = None

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            if self.crash_at is not None and self.trainer.current_epoch >= self.crash_at:
                raise RuntimeError("CRASH")
            return super().training_step(batch, batch_idx)

    class EMA(lib.callbacks.WeightAveraging):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__(multi_avg_fn=get_ema_multi_avg_fn(0.9))
            self.swaps = 0
            self.trace: list[Any] = []

        def _swap_models(self, pl_module: Any) -> None:
            self.swaps += 1
            super()._swap_models(pl_module)

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            super().on_train_epoch_end(trainer, pl_module)
            updates = int(self._average_model.n_averaged)
            self.trace.append((trainer.current_epoch, trainer.fit_loop.restarting, self.swaps, updates))

    def fit(model: Any, callback: Any, checkpoints: bool, ckpt_path: str | None = None) -> None:
        trainer = lib.Trainer(default_root_dir=str(root), max_epochs=4, logger=False, callbacks=[callback],
                              enable_checkpointing=checkpoints, enable_progress_bar=False, enable_model_summary=False,
                              num_sanity_val_steps=0, accumulate_grad_batches=2)  # fmt: skip
        trainer.fit(model, DataLoader(demos.RandomDataset(32, 32), batch_size=4), ckpt_path=ckpt_path)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        model = Model()
        model.crash_at = 2
        with pytest.raises(RuntimeError, match="CRASH"):
            fit(model, EMA(), checkpoints=True)
        (checkpoint,) = (root / "checkpoints").iterdir()
        resumed = Model.load_from_checkpoint(str(checkpoint))
        callback = EMA()
        fit(resumed, callback, checkpoints=False, ckpt_path=str(checkpoint))
    return callback.trace, [round(float(v), 6) for v in resumed.layer.weight.flatten()[:6]]


def test_an_epoch_end_checkpoint_resumes_without_restarting(tmp_path: Path) -> None:
    trace, _ = _resume_trace(fulgor, tmp_path)
    # epoch 2 and 3 run from the start (4 optimizer steps each after the 8 before); validation swaps twice per epoch
    assert trace == [(2, False, 2, 12), (3, False, 4, 16)]


@pytest.mark.oracle
def test_weight_averaging_resume_matches_lightning(tmp_path: Path) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    assert _resume_trace(fulgor, tmp_path / "ours") == _resume_trace(pl, tmp_path / "theirs")
