"""The mid-epoch resume warning is given exactly where Lightning gives it (a loader without `state_dict` resumed
before its last batch), with Lightning's first sentence; fulgor's explanation follows it."""

from __future__ import annotations

import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

import fulgor

LIGHTNING_SENTENCE = "You're resuming from a checkpoint that ended before the epoch ended"


class Plain:
    """An iterable of 3 batches without `state_dict` (not a DataLoader)."""

    def __init__(self) -> None:
        self.index = 0

    def __iter__(self) -> Any:
        for i in range(self.index, len(self)):
            yield torch.ones(2, 4) * i

    def __len__(self) -> int:
        return 3


class Stateful(Plain):
    def state_dict(self) -> dict[str, int]:
        return {"index": self.index}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.index = state["index"]


def _warned(pl: ModuleType, root: Path, loader_class: type, step: int) -> bool:
    class Model(pl.LightningModule):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            return self.layer(batch).sum()

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    flags: dict[str, Any] = {"max_epochs": 1, "logger": False, "enable_progress_bar": False,
                             "enable_model_summary": False, "default_root_dir": str(root)}  # fmt: skip
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=str(root / "ck"), every_n_train_steps=1, save_top_k=-1)
    pl.Trainer(callbacks=[checkpoint], **flags).fit(Model(), loader_class())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed = pl.Trainer(enable_checkpointing=False, **flags)
        resumed.fit(Model(), loader_class(), ckpt_path=str(root / "ck" / f"epoch=0-step={step}.ckpt"))
    return any(str(w.message).startswith(LIGHTNING_SENTENCE) for w in caught)


CASES = [("Plain", 1, True), ("Plain", 3, False), ("Stateful", 1, False)]


@pytest.mark.parametrize(("loader", "step", "expected"), CASES)
def test_mid_epoch_resume_warning(tmp_path: Path, loader: str, step: int, expected: bool) -> None:
    assert _warned(fulgor, tmp_path, {"Plain": Plain, "Stateful": Stateful}[loader], step) is expected


@pytest.mark.oracle
@pytest.mark.parametrize(("loader", "step", "expected"), CASES)
def test_mid_epoch_resume_warning_as_lightning(tmp_path: Path, loader: str, step: int, expected: bool) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    assert _warned(pl, tmp_path, {"Plain": Plain, "Stateful": Stateful}[loader], step) is expected
