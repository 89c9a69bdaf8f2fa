"""`x, y = batch` on a dict batch unpacks its keys; the step then fails inside a layer. The error's first line names
the hook, the batch's type and keys, and the fix; the original error is chained. Other errors are untouched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

import fulgor


class DictData(Dataset[dict[str, torch.Tensor]]):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"x": torch.ones(2), "y": torch.zeros(1)}


class Unpacking(fulgor.LightningModule):
    def __init__(self, bug_in: str) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.bug_in = bug_in

    def _loss(self, batch: Any, hook: str) -> torch.Tensor:
        if hook == self.bug_in:
            x, y = batch  # the mistake: a dict unpacks to its keys
        else:
            x, y = batch["x"], batch["y"]
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._loss(batch, "training_step")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._loss(batch, "validation_step")

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._loss(batch, "predict_step")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def trainer(root: Path) -> fulgor.Trainer:
    return fulgor.Trainer(
        max_epochs=1, default_root_dir=root, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip


@pytest.mark.parametrize("hook", ["training_step", "validation_step", "predict_step"])
def test_a_dict_batch_unpacked_as_a_tuple_is_named_first(tmp_path: Path, hook: str) -> None:
    model, loader = Unpacking(hook), DataLoader(DictData(), batch_size=4)
    run = trainer(tmp_path)
    call = (lambda: run.predict(model, loader)) if hook == "predict_step" else (lambda: run.fit(model, loader, loader))
    with pytest.raises(TypeError) as raised:
        call()
    first_line = str(raised.value).splitlines()[0]
    assert first_line.startswith(f"`{hook}` received a `dict` batch (keys: 'x', 'y') and failed: linear(): argument")
    assert "read the values by key, e.g. `x, y = batch['x'], batch['y']`" in first_line
    assert isinstance(raised.value.__cause__, TypeError)  # the original error, chained


def test_other_errors_are_untouched(tmp_path: Path) -> None:
    class Broken(Unpacking):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            raise ValueError("my own bug")

    with pytest.raises(ValueError, match=r"^my own bug$"):
        trainer(tmp_path).fit(Broken("none"), DataLoader(DictData(), batch_size=4))


def test_a_dataset_passed_as_the_loader_is_read_item_by_item_with_a_warning(tmp_path: Path) -> None:
    class Items(Dataset[tuple[torch.Tensor, torch.Tensor]]):
        def __len__(self) -> int:
            return 4

        def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
            if index >= 4:
                raise IndexError(index)
            return torch.ones(2), torch.zeros(1)

    class ByPosition(Unpacking):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            return torch.nn.functional.mse_loss(self.layer(x), y)

    run = trainer(tmp_path)
    with pytest.warns(fulgor.errors.PossibleUserWarning, match=r"The data of fit is a `Items` \(a Dataset, not a"):
        run.fit(ByPosition("none"), Items())
    assert run.global_step == 4  # one optimizer step per item, as Lightning reads it
