"""A user's `on_exception` hook that raises: the loggers are still finalized (the run's `metrics.csv` is written), the
strategy is torn down, and the user's original exception is the one raised, with the hook's error chained to it."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import torch

import fulgor
from fulgor.loggers import CSVLogger
from reliability.test_bad_input import QUIET, Tiny, data


class FailsAtStep3(Tiny):
    def training_step(self, batch: Any, batch_idx: int) -> Any:
        loss = super().training_step(batch, batch_idx)
        self.log("train_loss", loss)
        if self.global_step == 3:
            raise RuntimeError("the user's original error")
        return loss


class BrokenOnException(fulgor.Callback):
    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        raise KeyError("broken cleanup in on_exception")


def test_an_on_exception_hook_that_raises_loses_no_logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    logger = CSVLogger(str(tmp_path), name="run")
    quiet = {**QUIET, "logger": logger, "log_every_n_steps": 1}
    trainer = fulgor.Trainer(default_root_dir=str(tmp_path), max_epochs=3, callbacks=[BrokenOnException()], **quiet)
    teardowns: list[str] = []
    original_teardown = trainer.strategy.teardown
    monkeypatch.setattr(trainer.strategy, "teardown", lambda: (teardowns.append("teardown"), original_teardown()))
    with pytest.raises(RuntimeError, match="the user's original error") as caught:
        trainer.fit(FailsAtStep3(), data())
    hook_error = caught.value.__context__
    assert isinstance(hook_error, KeyError)
    assert "broken cleanup" in str(hook_error)
    assert any("`on_exception` hook raised KeyError" in note for note in caught.value.__notes__)
    assert teardowns == ["teardown"]
    assert trainer.state.status == "interrupted"
    rows = list(csv.DictReader((Path(logger.log_dir) / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows if r.get("train_loss")] == [0, 1, 2]
    assert all(torch.isfinite(torch.tensor(float(r["train_loss"]))) for r in rows if r.get("train_loss"))
