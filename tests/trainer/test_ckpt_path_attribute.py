"""`trainer.ckpt_path = path` (2.x) stays for every later run until a run gets its own `ckpt_path`, and reads back as
given; 1.x's `resume_from_checkpoint` loads in the next fit only. Differential against pytorch-lightning 2.6.6."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

import fulgor
from fulgor.trainer.removed_args import RemovedArgumentWarning


def _trainer(lib: ModuleType, root: Path, **flags: Any) -> Any:
    quiet = {"enable_progress_bar": False, "enable_model_summary": False, "logger": False}
    return lib.Trainer(default_root_dir=root, limit_val_batches=1, **{"max_steps": 1, **quiet, **flags})


def test_ckpt_path_set_on_the_trainer_is_loaded_by_every_later_run(lib: ModuleType, tmp_path: Path) -> None:
    boring = import_module(f"{lib.__name__}.demos.boring_classes")
    first = _trainer(lib, tmp_path / "a", enable_checkpointing=False)
    first.fit(boring.BoringModel())
    saved = tmp_path / "saved.ckpt"
    first.save_checkpoint(saved)
    weights = torch.load(saved, weights_only=True)["state_dict"]

    trainer = _trainer(lib, tmp_path / "b", max_steps=2, enable_checkpointing=False)
    trainer.ckpt_path = saved
    trainer.fit(boring.BoringModel())
    assert trainer.ckpt_path == saved  # not used up
    assert isinstance(trainer.ckpt_path, Path)  # as given
    assert trainer.global_step == 2  # resumed at step 1
    model = boring.BoringModel()
    trainer.validate(model, verbose=False)  # loads `saved` again
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())

    with pytest.warns(UserWarning, match=r"trainer.ckpt_path = .*was called but then you passed"):
        trainer.fit(boring.BoringModel(), ckpt_path=str(saved))
    assert trainer.ckpt_path == str(saved)  # forgotten: now the path the run loaded
    trainer.ckpt_path = None
    assert trainer.ckpt_path is None


def test_resume_from_checkpoint_is_the_next_fits_only(tmp_path: Path) -> None:
    from fulgor.demos.boring_classes import BoringModel

    first = _trainer(fulgor, tmp_path / "a", enable_checkpointing=False)
    first.fit(BoringModel())
    saved = str(tmp_path / "saved.ckpt")
    first.save_checkpoint(saved)
    with pytest.warns(RemovedArgumentWarning):
        trainer = _trainer(fulgor, tmp_path / "b", max_steps=2, resume_from_checkpoint=saved)
    assert trainer.resume_from_checkpoint == saved
    model = BoringModel()
    trainer.fit(model)
    assert trainer.global_step == 2
    assert trainer.resume_from_checkpoint is None  # used up, as in 1.9.5
    fitted = {k: v.clone() for k, v in model.state_dict().items()}
    trainer.validate(model, verbose=False)  # the fitted weights, not the resume checkpoint's
    assert all(torch.equal(model.state_dict()[k], v) for k, v in fitted.items())
