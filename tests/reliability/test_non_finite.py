"""Non-finite training is caught by default: a NaN/inf loss at a chosen step stops the fit with an error naming that
step and the hook, before any checkpoint of the damaged weights is written (`last` stays the last good one); the check
reads the device once per logging interval, not per step; `Trainer(non_finite="warn" | "off")`; an EarlyStopping stop
on a non-finite metric is always reported."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

import fulgor
from fulgor.callbacks.early_stopping import EarlyStopping
from fulgor.callbacks.model_checkpoint import ModelCheckpoint
from fulgor.trainer import finite_guard
from fulgor.trainer.finite_guard import NonFiniteLossError
from reliability.test_bad_input import QUIET, Tiny, data


class BadAt(Tiny):
    """The loss becomes `value` (NaN or inf) at `global_step == step`."""

    def __init__(self, step: int, value: float = math.nan) -> None:
        super().__init__()
        self.bad_step, self.value = step, value

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        loss = super().training_step(batch, batch_idx)
        return loss * self.value if self.global_step == self.bad_step else loss


def _finite(path: Path) -> bool:
    state = torch.load(path, weights_only=True)["state_dict"]
    return all(bool(torch.isfinite(t).all()) for t in state.values())


@pytest.mark.parametrize(("step", "value"), [(5, math.nan), (3, math.inf), (6, -math.inf)])
def test_a_non_finite_loss_stops_before_a_checkpoint_of_damaged_weights(
    tmp_path: Path, step: int, value: float
) -> None:
    ckpt = ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), every_n_train_steps=1, save_last=True, save_top_k=-1)
    trainer = fulgor.Trainer(default_root_dir=str(tmp_path), max_epochs=5, callbacks=[ckpt], **QUIET)
    with pytest.raises(NonFiniteLossError) as caught:
        trainer.fit(BadAt(step, value), data())
    message = str(caught.value)
    epoch, batch_idx = divmod(step, 2)  # two batches per epoch
    assert f"returned by `training_step` is not finite (NaN or inf) at global_step={step}" in message
    assert f"(epoch={epoch}, batch_idx={batch_idx})" in message
    assert "detected before writing a checkpoint" in message
    assert "Trainer(non_finite='warn')" in message
    last = tmp_path / "ckpt" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == step  # the state before the bad batch
    files = sorted((tmp_path / "ckpt").glob("*.ckpt"))
    assert len(files) == step + 1  # step 1..step, and last
    assert all(_finite(f) for f in files)
    assert trainer.state.status == "interrupted"


def test_without_checkpoints_the_logging_interval_or_epoch_end_catches_it(tmp_path: Path) -> None:
    trainer = fulgor.Trainer(default_root_dir=str(tmp_path), max_epochs=5, enable_checkpointing=False,
                             log_every_n_steps=3, **QUIET)  # fmt: skip
    with pytest.raises(NonFiniteLossError, match=r"global_step=4 \(epoch=2, batch_idx=0\); detected at the end of"):
        trainer.fit(BadAt(4), data())
    trainer = fulgor.Trainer(default_root_dir=str(tmp_path), max_epochs=5, enable_checkpointing=False,
                             log_every_n_steps=2, **QUIET)  # fmt: skip
    with pytest.raises(NonFiniteLossError, match=r"global_step=4 .* detected at the logging interval"):
        trainer.fit(BadAt(4), data())


def test_the_guard_reads_the_device_once_per_interval_not_per_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[int] = []
    original = finite_guard.FiniteGuard.read

    def counted(self: finite_guard.FiniteGuard, moment: str) -> None:
        reads.append(len(self.seen))
        original(self, moment)

    monkeypatch.setattr(finite_guard.FiniteGuard, "read", counted)
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=2)  # 32 batches
    trainer = fulgor.Trainer(default_root_dir=str(tmp_path), max_epochs=1, enable_checkpointing=False,
                             log_every_n_steps=10, **QUIET)  # fmt: skip
    trainer.fit(Tiny(), loader)
    assert reads == [10, 10, 10, 2]  # three intervals, then the epoch end


def test_warn_mode_warns_once_and_trains_on(tmp_path: Path) -> None:
    trainer = fulgor.Trainer(default_root_dir=str(tmp_path), max_epochs=4, non_finite="warn", **QUIET)
    with pytest.warns(RuntimeWarning, match="not finite .* at global_step=2 .* Training continues") as record:
        trainer.fit(BadAt(2), data())
    assert trainer.global_step == 8
    assert sum("not finite" in str(w.message) for w in record) == 1


def test_off_mode_is_silent(tmp_path: Path, recwarn: pytest.WarningsRecorder) -> None:
    trainer = fulgor.Trainer(default_root_dir=str(tmp_path), max_epochs=2, non_finite="off", **QUIET)
    trainer.fit(BadAt(1), data())
    assert trainer.global_step == 4
    assert not [w for w in recwarn if "not finite" in str(w.message)]


class NaNValidation(Tiny):
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log("val_loss", torch.tensor(math.nan if self.current_epoch == 1 else 1.0 - self.current_epoch))


def test_early_stopping_on_a_non_finite_metric_always_warns(tmp_path: Path) -> None:
    stopper = EarlyStopping(monitor="val_loss", check_finite=True)  # verbose=False, the default
    trainer = fulgor.Trainer(default_root_dir=str(tmp_path), max_epochs=5, callbacks=[stopper], **QUIET)
    with pytest.warns(RuntimeWarning) as record:
        trainer.fit(NaNValidation(), data(), data())
    messages = [str(w.message) for w in record if "EarlyStopping" in str(w.message)]
    assert len(messages) == 1, messages
    assert "EarlyStopping(monitor='val_loss') stopped the run at epoch=1, global_step=4" in messages[0]
    assert "val_loss = nan is not finite" in messages[0]
    assert trainer.current_epoch == 2
