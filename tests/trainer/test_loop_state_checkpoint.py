"""The checkpoint's "loops" entry (Lightning's fit loop progress counters) and `trainer.fit_loop.state_dict()`:
after an exception in a training or validation batch (the `on_exception` checkpoint), at every `ModelCheckpoint`
save, and after resuming from those checkpoints, under fulgor and under pytorch-lightning 2.6.6."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

import fulgor
from helpers.boring import boring_classes

pl = pytest.importorskip("pytorch_lightning")

pytestmark = pytest.mark.oracle


class Boom(Exception):
    pass


def model_class(lib: ModuleType, fail: tuple[str, int, int] | None, n_val: int = 1, manual: bool = False) -> type:
    """The boring model, raising `Boom` in `fail = (where, epoch, batch_idx)`; `n_val` validation loaders."""
    base = boring_classes(lib).BoringModel

    class Model(base):  # type: ignore[misc,valid-type]
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = not manual

        def _fails(self, where: str, batch_idx: int) -> None:
            if fail == (where, self.current_epoch, batch_idx):
                raise Boom

        def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
            self._fails("train_batch_start", batch_idx)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            self._fails("train", batch_idx)
            if not manual:
                return super().training_step(batch, batch_idx)
            optimizer = self.optimizers()
            loss = self.step(batch)
            optimizer.zero_grad()
            self.manual_backward(loss)
            optimizer.step()
            return loss

        def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
            self._fails("val", batch_idx)
            return super().validation_step(batch, batch_idx)

        def val_dataloader(self) -> Any:
            make = super().val_dataloader  # (zero-argument `super` does not work inside a comprehension)
            loaders = [make() for _ in range(n_val)]
            return loaders if n_val > 1 else loaders[0]

    return Model


def fit(lib: ModuleType, root: Path, fail: Any = None, n_val: int = 1, manual: bool = False, **flags: Any) -> Any:
    callbacks = [
        lib.callbacks.OnExceptionCheckpoint(root, filename="exception"),
        lib.callbacks.ModelCheckpoint(dirpath=root, every_n_train_steps=1, save_top_k=-1, filename="{epoch}-{step}"),
    ]
    settings: dict[str, Any] = {
        "max_epochs": 2,
        "limit_train_batches": 4,
        "limit_val_batches": 3,
        "num_sanity_val_steps": 0,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "logger": False,
        "default_root_dir": root,
        "callbacks": callbacks,
    }
    settings.update(flags)
    torch.manual_seed(0)
    trainer = lib.Trainer(**settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.suppress(Boom):
            trainer.fit(model_class(lib, fail, n_val, manual)())
    return trainer


def saved_loops(root: Path) -> dict[str, Any]:
    return {p.name: torch.load(p, weights_only=True)["loops"] for p in sorted(root.glob("*.ckpt"))}


SCENARIOS: dict[str, dict[str, Any]] = {
    "exception in training_step, accumulating 3": {"fail": ("train", 1, 2), "accumulate_grad_batches": 3},
    "exception in on_train_batch_start": {"fail": ("train_batch_start", 1, 1)},
    "exception in validation_step, two loaders, validating twice an epoch": {
        "fail": ("val", 1, 1),
        "n_val": 2,
        "val_check_interval": 0.5,
    },
    "exception in the last validation batch": {"fail": ("val", 0, 2)},
    "step schedulers, accumulating 2": {"accumulate_grad_batches": 2, "limit_train_batches": 3},
    "manual optimization": {"manual": True},
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_checkpoint_loops_equal_lightnings(scenario: str, tmp_path: Path) -> None:
    ours = fit(fulgor, tmp_path / "fulgor", **SCENARIOS[scenario])
    theirs = fit(pl, tmp_path / "pl", **SCENARIOS[scenario])
    ours_saved, theirs_saved = saved_loops(tmp_path / "fulgor"), saved_loops(tmp_path / "pl")
    assert sorted(ours_saved) == sorted(theirs_saved)
    for name in theirs_saved:
        assert ours_saved[name] == theirs_saved[name], name
    assert ours.fit_loop.state_dict() == theirs.fit_loop.state_dict()


def resume(lib: ModuleType, root: Path, path: Path, **flags: Any) -> list[dict[str, Any]]:
    """Fit again from `path`; the fit loop's state dict at each epoch end and after the fit."""
    seen: list[dict[str, Any]] = []

    class Record(lib.Callback):  # type: ignore[misc,name-defined]
        def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
            seen.append(trainer.fit_loop.state_dict())

    trainer = lib.Trainer(
        max_epochs=3, limit_train_batches=4, limit_val_batches=3, num_sanity_val_steps=0, enable_progress_bar=False,
        enable_model_summary=False, logger=False, enable_checkpointing=False, default_root_dir=root,
        callbacks=[Record()], **flags,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model_class(lib, None)(), ckpt_path=path)
    return [*seen, trainer.fit_loop.state_dict()]


@pytest.mark.parametrize(
    ("fail", "flags"),
    [
        (("train", 1, 2), {}),
        (("train", 1, 1), {"accumulate_grad_batches": 3}),
        (("val", 1, 1), {"val_check_interval": 0.5}),
    ],
)
def test_counters_after_resuming_from_an_exception_equal_lightnings(
    fail: Any, flags: dict[str, Any], tmp_path: Path
) -> None:
    """Lightning keeps the interrupted batch counted as fetched/started in its totals (and, for a batch that steps,
    one more logging step): the same after fulgor's resume."""
    both = {}
    for lib in (fulgor, pl):
        root = tmp_path / lib.__name__
        fit(lib, root, fail=fail, max_epochs=3, **flags)
        both[lib.__name__] = resume(lib, root, root / "exception.ckpt", **flags)
    assert both["fulgor"] == both["pytorch_lightning"]


def test_load_state_dict_then_reset_equals_lightning(tmp_path: Path) -> None:
    """`fit_loop.load_state_dict(checkpoint["loops"]["fit_loop"])` shows the loaded counters with every loop
    restarting; `fit_loop.reset()` / `epoch_loop.reset()` leave what Lightning's leave."""
    results = {}
    for lib in (fulgor, pl):
        root = tmp_path / lib.__name__
        trainer = fit(lib, root, fail=("train", 1, 2), max_epochs=3, accumulate_grad_batches=2)
        seen: dict[str, Any] = {}
        for name in ("exception.ckpt", "epoch=0-step=1.ckpt", "epoch=0-step=2.ckpt", "epoch=1-step=3.ckpt"):
            fit_loop = trainer.fit_loop
            loaded = torch.load(root / name, weights_only=True)["loops"]["fit_loop"]
            fit_loop.load_state_dict(loaded)
            optimization = fit_loop.epoch_loop.automatic_optimization
            restarting = [fit_loop.restarting, fit_loop.epoch_loop.restarting, optimization.restarting]
            state = fit_loop.state_dict()
            state["epoch_loop.state_dict"].pop("dataloader_state_dict", None)
            fit_loop.reset()
            fit_loop.epoch_loop.reset()
            after = trainer.fit_loop.state_dict()
            after["epoch_loop.state_dict"].pop("dataloader_state_dict", None)
            seen[name] = (state == loaded, restarting, after)
            for view in (fit_loop, fit_loop.epoch_loop, optimization):
                view.restarting = False
        results[lib.__name__] = seen
    assert results["fulgor"] == results["pytorch_lightning"]
    assert all(same for same, _, _ in results["fulgor"].values())
