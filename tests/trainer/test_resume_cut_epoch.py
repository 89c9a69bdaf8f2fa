"""Which epoch and batch a resumed fit continues with, and which epoch hooks it calls, compared with pytorch-lightning
2.6.6: a resumed epoch gets no second `on_train_epoch_start`; an epoch that `max_steps` (or a stop request) cut short
is continued by a step-based fit and left by an epoch-based one. Where Lightning runs a batch past the epoch's end
(a complete epoch resumed by a step-based fit), fulgor starts the next epoch, as the uninterrupted run does."""

from __future__ import annotations

import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader

import fulgor
from helpers.boring import RandomDataset, boring_classes

pl = pytest.importorskip("pytorch_lightning")

pytestmark = pytest.mark.oracle

COMMON: dict[str, Any] = {"limit_train_batches": 4, "limit_val_batches": 0, "enable_progress_bar": False,
          "enable_model_summary": False, "logger": False}  # fmt: skip


def _recorder(lib: ModuleType, out: list[str]) -> Any:
    class Record(lib.Callback):  # type: ignore[misc,name-defined]
        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            out.append(f"start{trainer.current_epoch}")

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            out.append(f"batch{trainer.current_epoch}.{batch_idx}")

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            out.append(f"end{trainer.current_epoch}@{trainer.global_step}")

    return Record()


def _stopper(lib: ModuleType, at_step: int) -> Any:
    class Stop(lib.Callback):  # type: ignore[misc,name-defined]
        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
            if trainer.global_step == at_step:
                trainer.should_stop = True

    return Stop()


def _resume(lib: ModuleType, root: Path, first: dict[str, Any], second: dict[str, Any], kind: str) -> list[str]:
    """Fit with `first`, take the checkpoint `kind` names, fit a new model from it with `second`: the hook trace
    (epoch starts, batches as epoch.batch_idx, epoch ends @ global_step) and the final epoch/step."""
    torch.manual_seed(0)
    steps = 3 if kind == "every_3_steps" else None
    checkpoint = lib.callbacks.ModelCheckpoint(dirpath=root / "ckpt", save_top_k=-1, every_n_train_steps=steps)
    callbacks = [checkpoint, _stopper(lib, 2)] if kind == "stopped" else [checkpoint]
    trainer = lib.Trainer(default_root_dir=root, callbacks=callbacks, **COMMON, **first)
    trainer.fit(boring_classes(lib).BoringModel())
    path = root / "ckpt" / "epoch=0-step=3.ckpt" if kind == "every_3_steps" else checkpoint.best_model_path
    out: list[str] = []
    trainer = lib.Trainer(default_root_dir=root, callbacks=[_recorder(lib, out)], **COMMON, **second)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(boring_classes(lib).BoringModel(), ckpt_path=path)
    return [*out, f"final{trainer.current_epoch}@{trainer.global_step}"]


SAME_AS_LIGHTNING = [
    # (first fit, resumed fit, checkpoint): the epoch-end checkpoint of the first fit unless named
    pytest.param({"max_steps": 1}, {"max_steps": 3}, "epoch_end", id="max_steps-cut-epoch-continued"),
    pytest.param({"max_steps": 6}, {"max_steps": 8}, "epoch_end", id="second-epoch-cut-continued"),
    pytest.param({"max_steps": 2, "max_epochs": 5}, {"max_steps": 5, "max_epochs": 5}, "epoch_end", id="then-next"),
    pytest.param({"max_steps": 2}, {"max_epochs": 2}, "epoch_end", id="epoch-based-fit-starts-next-epoch"),
    pytest.param({"max_steps": 3}, {"max_steps": 6}, "stopped", id="stop-request-cut-epoch-continued"),
    pytest.param({"max_steps": 3}, {"max_epochs": 2}, "stopped", id="stop-request-epoch-based"),
    pytest.param({"max_epochs": 1}, {"max_epochs": 2}, "epoch_end", id="complete-epoch-epoch-based"),
    pytest.param({"max_epochs": 1}, {"max_epochs": 2}, "every_3_steps", id="mid-epoch-no-second-epoch-start"),
    pytest.param({"max_epochs": 1}, {"max_steps": 6}, "every_3_steps", id="mid-epoch-step-based"),
]


@pytest.mark.parametrize(("first", "second", "kind"), SAME_AS_LIGHTNING)
def test_resumed_epochs_and_hooks_match_lightning(
    tmp_path: Path, first: dict[str, Any], second: dict[str, Any], kind: str
) -> None:
    ours = _resume(fulgor, tmp_path / "fulgor", first, second, kind)
    theirs = _resume(pl, tmp_path / "pl", first, second, kind)
    assert ours == theirs


def test_cut_epoch_continued_by_max_steps_is_lightnings_hook_sequence(tmp_path: Path) -> None:
    trace = _resume(fulgor, tmp_path, {"max_steps": 1}, {"max_steps": 3}, "epoch_end")
    assert trace == ["batch0.1", "batch0.2", "end0@3", "final1@3"]  # no `start0`: epoch 0 had started


def test_complete_epoch_resumed_by_a_step_based_fit_starts_the_next_epoch(tmp_path: Path) -> None:
    # Lightning 2.6.6 runs a fifth batch `batch0.4` in this 4-batch epoch (a deliberate difference).
    trace = _resume(fulgor, tmp_path, {"max_steps": 4}, {"max_steps": 8}, "epoch_end")
    assert trace == ["start1", "batch1.0", "batch1.1", "batch1.2", "batch1.3", "end1@8", "final2@8"]


def _shuffled_model() -> Any:
    class Shuffled(boring_classes(fulgor).BoringModel):  # type: ignore[misc]
        def train_dataloader(self) -> DataLoader[Any]:
            return DataLoader(RandomDataset(32, 16, seed=1), batch_size=2, shuffle=True)

    return Shuffled()


def test_continuing_a_cut_epoch_trains_the_uninterrupted_runs_batches(tmp_path: Path) -> None:
    flags: dict[str, Any] = {**COMMON, "limit_train_batches": 1.0}
    torch.manual_seed(0)
    straight = _shuffled_model()
    fulgor.Trainer(default_root_dir=tmp_path / "straight", max_steps=11, **flags).fit(straight)

    torch.manual_seed(0)
    checkpoint = fulgor.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt")
    fulgor.Trainer(default_root_dir=tmp_path, max_steps=3, callbacks=[checkpoint], **flags).fit(_shuffled_model())
    torch.manual_seed(123)  # the resume must not depend on the streams at the time it starts
    resumed = _shuffled_model()
    trainer = fulgor.Trainer(default_root_dir=tmp_path, max_steps=11, **flags)
    trainer.fit(resumed, ckpt_path=checkpoint.best_model_path)
    assert (trainer.current_epoch, trainer.global_step) == (2, 11)  # 8 batches per epoch: the second epoch ended
    for name, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name
