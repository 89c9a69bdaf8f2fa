"""Loop state around the data: the stateful training loaders' states in the checkpoint (`loops/fit_loop/state_dict/
combined_loader`) and restored on resume, when an evaluation loop's pass over its data ends (its workers stop at the
next pass or at the run's end, as in Lightning), `fit_loop.max_batches` set by a callback, `fit_loop.load_state_dict`
on bad input, and the load hooks seeing Lightning's checkpoint keys only."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import fulgor
from fulgor.combined_loader import CombinedLoader
from helpers.boring import boring_classes

BoringModel = boring_classes(fulgor).BoringModel
QUIET: dict[str, Any] = {
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "logger": False,
    "num_sanity_val_steps": 0,
}


class Counting:
    """An iterable of tensors 0..9 that resumes from `state_dict`/`load_state_dict` (the next item after the saved)."""

    def __init__(self, start: int = 0) -> None:
        self.index = start

    def __iter__(self) -> Iterator[torch.Tensor]:
        for i in range(self.index, 10):
            self.index = i
            yield torch.full((1, 32), float(i))

    def __len__(self) -> int:
        return 10

    def state_dict(self) -> dict[str, int]:
        return {"index": self.index}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.index = state["index"] + 1


class Plain(Counting):
    state_dict = None  # type: ignore[assignment]  # not stateful


def _fit_seen(loaders: Any, root: Path, max_steps: int, ckpt_path: Path | None = None) -> list[list[int]]:
    seen: list[list[int]] = []

    class Model(BoringModel):  # type: ignore[misc,valid-type]
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            parts = batch if isinstance(batch, list) else [batch]
            seen.append([int(part[0, 0]) for part in parts])
            return super().training_step(parts[0], batch_idx)

    trainer = fulgor.Trainer(default_root_dir=root, max_steps=max_steps, enable_checkpointing=False, **QUIET)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(num_workers|val_dataloader|logging interval).*")
        trainer.fit(Model(), train_dataloaders=loaders, ckpt_path=ckpt_path)
    if ckpt_path is None:
        trainer.save_checkpoint(root / "saved.ckpt")
    return seen


def test_stateful_training_loaders_are_saved_and_resume(tmp_path: Path) -> None:
    first = _fit_seen(CombinedLoader([Counting(3), Plain(1), Counting(5)]), tmp_path, max_steps=2)
    assert first == [[3, 1, 5], [4, 2, 6]]
    checkpoint = torch.load(tmp_path / "saved.ckpt", weights_only=True)
    assert checkpoint["loops"]["fit_loop"]["state_dict"] == {"combined_loader": [{"index": 4}, {"index": 6}]}
    # The stateful ones continue after their saved item; the other starts again (Lightning's behaviour).
    after = _fit_seen(CombinedLoader([Counting(3), Plain(1), Counting(5)]), tmp_path, 4, tmp_path / "saved.ckpt")
    assert after == [[5, 1, 7], [6, 2, 8]]


def test_no_combined_loader_key_without_stateful_loaders(tmp_path: Path) -> None:
    _fit_seen(CombinedLoader([Plain(0)]), tmp_path, max_steps=1)
    assert torch.load(tmp_path / "saved.ckpt", weights_only=True)["loops"]["fit_loop"]["state_dict"] == {}


def test_a_stateful_loader_count_mismatch_warns_and_starts_fresh(tmp_path: Path) -> None:
    _fit_seen(CombinedLoader([Counting(0), Counting(0)]), tmp_path, max_steps=1)
    with pytest.warns(UserWarning, match=r"states of 2 stateful training dataloader\(s\), but this fit has 1"):
        after = _fit_seen(CombinedLoader([Counting(0)]), tmp_path, 2, tmp_path / "saved.ckpt")
    assert after == [[0]]  # max_steps=2 after 1 restored step; the loader started from its beginning


class Recorded:
    """A validation iterable whose passes record the epoch at which each one is released (its workers would stop)."""

    def __init__(self, trainer_ref: list[Any], released: list[int]) -> None:
        self.trainer_ref, self.released = trainer_ref, released

    def __iter__(self) -> Iterator[torch.Tensor]:
        return _Pass(self)

    def __len__(self) -> int:
        return 2


class _Pass:
    def __init__(self, owner: Recorded) -> None:
        self.owner, self.left = owner, 2

    def __iter__(self) -> _Pass:
        return self

    def __next__(self) -> torch.Tensor:
        if not self.left:
            raise StopIteration
        self.left -= 1
        return torch.zeros(1, 32)

    def __del__(self) -> None:
        self.owner.released.append(self.owner.trainer_ref[0].current_epoch)


def _released(lib: Any, root: Path, sanity_steps: int) -> list[int]:
    trainer = lib.Trainer(
        default_root_dir=root, max_epochs=3, limit_train_batches=2, enable_progress_bar=False,
        enable_model_summary=False, logger=False, num_sanity_val_steps=sanity_steps,
    )  # fmt: skip
    released: list[int] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(boring_classes(lib).BoringModel(), val_dataloaders=Recorded([trainer], released))
    return released


@pytest.mark.parametrize("sanity_steps", [0, 2])
def test_an_evaluation_pass_is_released_at_the_next_pass_or_the_end(sanity_steps: int, tmp_path: Path) -> None:
    """Lightning's order (its test_workers_are_shutdown): the pass of epoch N's validation is released when epoch
    N+1's starts, the last one as the fit ends (current_epoch already advanced); the first 0 is the probe `iter()`
    that checks a plain iterable, the second the sanity check's pass."""
    expected = [0] * (sanity_steps > 0) + [0, 1, 2, 3]
    assert _released(fulgor, tmp_path / "fulgor", sanity_steps) == expected
    pl = pytest.importorskip("pytorch_lightning")
    assert _released(pl, tmp_path / "pl", sanity_steps) == expected


def test_fit_loop_max_batches_set_by_a_callback_shortens_the_next_epochs(tmp_path: Path) -> None:
    class Shorten(fulgor.Callback):
        def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
            trainer.fit_loop.max_batches = 2

    trainer = fulgor.Trainer(
        default_root_dir=tmp_path, max_epochs=3, limit_train_batches=5, limit_val_batches=0, callbacks=[Shorten()],
        enable_checkpointing=False, **QUIET,
    )  # fmt: skip
    trainer.fit(BoringModel())
    assert trainer.global_step == 5 + 2 + 2
    assert trainer.fit_loop.max_batches == 2


def test_fit_loop_load_state_dict_names_what_it_expects() -> None:
    trainer = fulgor.Trainer(logger=False)
    with pytest.raises(ValueError, match=r"expects a checkpoint's `loops/fit_loop` entry.*torch.load\(path\)"):
        trainer.fit_loop.load_state_dict({"epoch_progress": {}})


def test_load_hooks_see_lightnings_checkpoint_keys_only(tmp_path: Path) -> None:
    """fulgor's exact-resume record is kept beside the checkpoint dict the hooks receive (Lightning's test compares
    that dict's keys), and the resume is still exact."""
    trainer = fulgor.Trainer(default_root_dir=tmp_path, max_steps=3, limit_val_batches=0, **QUIET)
    trainer.fit(BoringModel())
    path = trainer.checkpoint_callback.best_model_path  # type: ignore[union-attr]
    keys: list[set[str]] = []

    class Model(BoringModel):  # type: ignore[misc,valid-type]
        def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
            keys.append(set(checkpoint))

    resumed = fulgor.Trainer(default_root_dir=tmp_path, max_steps=5, limit_val_batches=0, **QUIET)
    resumed.fit(Model(), ckpt_path=path)
    lightning_keys = {"epoch", "global_step", "pytorch-lightning_version", "state_dict", "loops", "callbacks"}
    assert keys == [lightning_keys | {"optimizer_states", "lr_schedulers"}]
    assert resumed.global_step == 5
