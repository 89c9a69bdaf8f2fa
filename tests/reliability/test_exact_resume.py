"""Exact resume from any step: checkpoints taken after any training batch (inside an accumulation window too), inside
and right after a mid-epoch validation, resume to bit-identical weights, loading only the batches still to run."""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

import pytest
import torch

import fulgor
from fulgor.trainer.resume import RESUME_KEY
from reliability.common import assert_identical, make_model_class, run, weights


class SaveEverywhere(fulgor.Callback):
    """Save after every training batch, at the first batch of every validation, and at every validation end."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _save(self, trainer: Any, tag: str) -> None:
        if not trainer.sanity_checking:
            trainer.save_checkpoint(self.folder / f"{trainer.state.total_batch_idx:03d}-{tag}.ckpt")

    def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
        self._save(trainer, "batch_end")

    def on_validation_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if batch_idx == 0:
            self._save(trainer, "in_validation")

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        self._save(trainer, "after_validation")


def _reference(tmp_path: Path, **kw: Any) -> tuple[Any, list[str]]:
    folder = tmp_path / "saved"
    model = run(tmp_path / "ref", callbacks=[SaveEverywhere(folder)], **kw)
    return model, sorted(glob.glob(str(folder / "*.ckpt")))


@pytest.mark.parametrize(("workers", "generator"), [(0, False), (0, True), (2, False)])
def test_resume_from_every_kind_of_checkpoint_is_bit_identical(tmp_path: Path, workers: int, generator: bool) -> None:
    reference, files = _reference(tmp_path, workers=workers, generator=generator)
    names = [os.path.basename(f) for f in files]
    # 3 epochs x 10 batches (windows of 2), validation after batches 5 and 10 of each epoch
    assert len(reference.seen) == 30
    assert reference.trainer_.global_step == 15
    assert {n.split("-")[1] for n in names} == {"batch_end.ckpt", "in_validation.ckpt", "after_validation.ckpt"}
    picks = ["002-batch_end.ckpt", "004-batch_end.ckpt", "005-in_validation.ckpt", "005-after_validation.ckpt",
             "012-batch_end.ckpt", "020-after_validation.ckpt", "025-in_validation.ckpt"]  # fmt: skip
    if workers:
        picks = picks[1::2]  # worker start-up is slow; every kind is still covered
    for name in picks:
        resumed = run(tmp_path / name, ckpt_path=str(tmp_path / "saved" / name), workers=workers, generator=generator)
        assert_identical(weights(reference), weights(resumed))
        assert resumed.seen == reference.seen[len(reference.seen) - len(resumed.seen) :], name
        if workers == 0:  # consumed batches are skipped by index: only the batches still to run are loaded
            assert len(resumed.trainer_.train_dataloader.dataset.loaded) == 4 * len(resumed.seen), name


def test_checkpoint_inside_accumulation_window_keeps_partial_gradients(tmp_path: Path) -> None:
    reference, _ = _reference(tmp_path)
    path = tmp_path / "saved" / "002-batch_end.ckpt"  # batch 2 of epoch 0: first half of a window of 2
    extra = fulgor.checkpointing.read_extra(str(path))
    assert extra is not None
    point = extra[RESUME_KEY]
    assert (point["phase"], point["consumed"], point["stepping"]) == ("batch_end", 3, False)
    assert set(point["grads"]) == {name for name, _ in reference.named_parameters()}
    assert torch.load(path, weights_only=True)["global_step"] == 1
    resumed = run(tmp_path / "r", ckpt_path=str(path))
    assert_identical(weights(reference), weights(resumed))


def test_time_and_step_checkpoints_with_model_checkpoint_resume_exactly(tmp_path: Path) -> None:
    from datetime import timedelta

    from fulgor.callbacks.model_checkpoint import ModelCheckpoint

    steps = ModelCheckpoint(dirpath=str(tmp_path / "steps"), every_n_train_steps=3, save_top_k=-1)
    timed = ModelCheckpoint(dirpath=str(tmp_path / "timed"), train_time_interval=timedelta(0), save_top_k=-1)
    reference = run(tmp_path / "ref", callbacks=[steps, timed])
    for path in [tmp_path / "steps" / "epoch=1-step=9.ckpt", *sorted((tmp_path / "timed").glob("*.ckpt"))[3:4]]:
        resumed = run(tmp_path / path.name, ckpt_path=str(path))
        assert_identical(weights(reference), weights(resumed))


def test_bf16_mixed_resume_is_bit_identical(tmp_path: Path) -> None:
    """bf16-mixed (CPU autocast) with accumulation and mid-epoch validation: resumed runs end bit-identical."""
    reference, _ = _reference(tmp_path, precision="bf16-mixed")
    assert reference.trainer_.precision == "bf16-mixed"
    for name in ("004-batch_end.ckpt", "015-in_validation.ckpt", "020-after_validation.ckpt"):
        resumed = run(tmp_path / name, ckpt_path=str(tmp_path / "saved" / name), precision="bf16-mixed")
        assert_identical(weights(reference), weights(resumed))


def test_plain_loop_without_validation_or_accumulation(tmp_path: Path) -> None:
    reference, _ = _reference(tmp_path, accumulate_grad_batches=1, val_check_interval=1.0, limit_val_batches=0)
    resumed = run(tmp_path / "r", ckpt_path=str(tmp_path / "saved" / "013-batch_end.ckpt"), accumulate_grad_batches=1,
                  val_check_interval=1.0, limit_val_batches=0)  # fmt: skip
    assert_identical(weights(reference), weights(resumed))


@pytest.mark.oracle
def test_batch_order_is_lightnings(tmp_path: Path) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    from reliability.common import loaders

    ours = run(tmp_path / "fu")
    pl.seed_everything(0, verbose=False)
    model = make_model_class(pl.LightningModule)()
    train, val = loaders()
    trainer = pl.Trainer(default_root_dir=str(tmp_path / "pl"), enable_progress_bar=False, enable_model_summary=False,
                         logger=False, max_epochs=3, accumulate_grad_batches=2, val_check_interval=0.5,
                         num_sanity_val_steps=2, log_every_n_steps=1, accelerator="cpu")  # fmt: skip
    trainer.fit(model, train, val)
    assert ours.seen == model.seen
    assert_identical(weights(ours), {k: v.detach() for k, v in model.state_dict().items()})
