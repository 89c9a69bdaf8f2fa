"""StochasticWeightAveraging and EMAWeightAveraging: learning rates, averaged weights and batch-norm statistics after
fit, compared with pytorch-lightning 2.6.6 on the same model, data and seed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import fulgor
from fulgor.callbacks.weight_averaging import EMAWeightAveraging, StochasticWeightAveraging, WeightAveraging
from fulgor.errors import MisconfigurationException


def model_class(lib: Any, batch_norm: bool) -> type:
    class Model(lib.LightningModule):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            layers: list[nn.Module] = (
                [nn.Linear(3, 4)] + ([nn.BatchNorm1d(4)] if batch_norm else []) + [nn.Linear(4, 1)]
            )
            self.net = nn.Sequential(*layers)
            self.lrs: list[float] = []
            self.train_batches = 0

        def on_train_epoch_start(self) -> None:
            self.lrs.append(round(self.trainer.optimizers[0].param_groups[0]["lr"], 8))

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            self.train_batches += 1
            x, y = batch
            return nn.functional.mse_loss(self.net(x), y)

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self.log("val_loss", nn.functional.mse_loss(self.net(batch[0]), batch[1]))

        def configure_optimizers(self) -> Any:
            opt = torch.optim.SGD(self.parameters(), lr=0.1)
            return [opt], [torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)]

    return Model


def loader() -> DataLoader[Any]:
    g = torch.Generator().manual_seed(1)
    return DataLoader(TensorDataset(torch.randn(12, 3, generator=g), torch.randn(12, 1, generator=g)), batch_size=4)


def run(lib: Any, root: Path, callback: Any, batch_norm: bool = False, max_epochs: int = 5) -> dict[str, Any]:
    model = model_class(lib, batch_norm)()
    trainer = lib.Trainer(default_root_dir=str(root), max_epochs=max_epochs, callbacks=[callback], logger=False,
                          enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                          num_sanity_val_steps=0)  # fmt: skip
    trainer.fit(model, loader(), loader())
    return {
        "state": {k: [round(v, 5) for v in t.flatten().tolist()] for k, t in model.state_dict().items()},
        "lrs": model.lrs,
        "train_batches": model.train_batches,
        "global_step": trainer.global_step,
        "current_epoch": trainer.current_epoch,
        "max_epochs": trainer.max_epochs,
    }


def test_swa_anneals_lr_and_ends_with_the_average(tmp_path: Path) -> None:
    swa = StochasticWeightAveraging(swa_lrs=0.05, swa_epoch_start=3, annealing_epochs=2, annealing_strategy="linear")
    result = run(fulgor, tmp_path, swa)
    # epochs 0-1 follow StepLR (0.1, 0.05); from epoch 2 (swa_epoch_start 3, 1-based) SWALR anneals to 0.05.
    assert result["lrs"][:2] == [0.1, 0.05]
    assert result["lrs"][2:] == [0.025, 0.0375, 0.05]  # SWALR: linear from the current lr over 2 epochs
    assert int(swa.n_averaged) == 3  # epoch starts 2, 3, 4
    assert (result["global_step"], result["current_epoch"], result["max_epochs"]) == (15, 5, 5)


def test_swa_with_batch_norm_runs_one_statistics_epoch(tmp_path: Path) -> None:
    swa = StochasticWeightAveraging(swa_lrs=0.05, swa_epoch_start=2)
    result = run(fulgor, tmp_path, swa, batch_norm=True, max_epochs=3)
    # 3 epochs x 3 batches, then one more epoch of forward passes whose single optimizer step has no gradients.
    assert (result["train_batches"], result["global_step"], result["current_epoch"]) == (12, 10, 4)
    assert result["max_epochs"] == 3  # restored after the extra epoch
    assert result["state"]["net.1.num_batches_tracked"] == [3]


@pytest.mark.oracle
@pytest.mark.parametrize(("batch_norm", "strategy"), [(False, "linear"), (True, "cos")])
def test_swa_matches_lightning(tmp_path: Path, batch_norm: bool, strategy: str) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    kw = {"swa_lrs": 0.02, "swa_epoch_start": 0.4, "annealing_epochs": 2, "annealing_strategy": strategy}
    expected = run(pl, tmp_path / "pl", pl.callbacks.StochasticWeightAveraging(**kw), batch_norm)
    assert run(fulgor, tmp_path / "f", StochasticWeightAveraging(**kw), batch_norm) == expected


def test_swa_argument_errors() -> None:
    with pytest.raises(MisconfigurationException, match="swa_epoch_start should be a >0 integer or a float"):
        StochasticWeightAveraging(swa_lrs=0.1, swa_epoch_start=0)
    with pytest.raises(MisconfigurationException, match="The `swa_lrs` should a positive float"):
        StochasticWeightAveraging(swa_lrs=-1.0)
    with pytest.raises(MisconfigurationException, match=r"The `avg_fn` should be callable\."):
        StochasticWeightAveraging(swa_lrs=0.1, avg_fn=3)  # type: ignore[arg-type]


def test_ema_follows_the_formula(tmp_path: Path) -> None:
    """decay 0.5: the final weights are the EMA of the weights after each optimizer step (first step copied)."""
    snapshots: list[torch.Tensor] = []

    class Snap(fulgor.Callback):
        def on_train_batch_end(self, trainer: Any, pl_module: Any, *args: Any) -> None:
            snapshots.append(torch.cat([p.detach().flatten() for p in pl_module.parameters()]).clone())

    model = model_class(fulgor, False)()
    callbacks = [Snap(), EMAWeightAveraging(decay=0.5)]
    trainer = fulgor.Trainer(default_root_dir=str(tmp_path), max_epochs=2, callbacks=callbacks, logger=False,
                             enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                             limit_val_batches=0)  # fmt: skip
    trainer.fit(model, loader())
    ema = snapshots[0]
    for snap in snapshots[1:]:
        ema = 0.5 * ema + 0.5 * snap
    final = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert torch.allclose(final, ema, atol=1e-6)


@pytest.mark.oracle
@pytest.mark.parametrize("kw", [{"decay": 0.9}, {"decay": 0.7, "update_every_n_steps": 2, "update_starting_at_step": 3},
                                {"decay": 0.5, "update_every_n_steps": 0, "update_starting_at_epoch": 1}])  # fmt: skip
def test_ema_matches_lightning(tmp_path: Path, kw: dict[str, Any]) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    expected = run(pl, tmp_path / "pl", pl.callbacks.EMAWeightAveraging(**kw), batch_norm=True, max_epochs=3)
    assert run(fulgor, tmp_path / "f", EMAWeightAveraging(**kw), batch_norm=True, max_epochs=3) == expected


def test_checkpoint_holds_the_average_and_the_current_model(tmp_path: Path) -> None:
    callback = WeightAveraging()
    model = model_class(fulgor, False)()
    trainer = fulgor.Trainer(default_root_dir=str(tmp_path), max_epochs=1, callbacks=[callback], logger=False,
                             enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)  # fmt: skip
    trainer.fit(model, loader())
    path = tmp_path / "avg.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    assert set(checkpoint["averaging_state"]) == {"n_averaged"}
    assert int(checkpoint["averaging_state"]["n_averaged"]) == 3
    assert checkpoint["callbacks"]["WeightAveraging"] == {"latest_update_step": 3}
    assert set(checkpoint["current_model_state"]) == set(checkpoint["state_dict"])


@pytest.mark.parametrize("callback", [StochasticWeightAveraging, EMAWeightAveraging])
def test_the_average_model_is_copied_without_the_trainer(tmp_path: Path, callback: type) -> None:
    seen: list[tuple[bool, bool]] = []

    class Watched(callback):  # type: ignore[misc, valid-type]
        def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
            super().setup(trainer, pl_module, stage)
            copy = getattr(self._average_model, "module", self._average_model)  # AveragedModel (EMA) or a copy
            seen.append((copy._trainer is None, pl_module.trainer is trainer))

    run(fulgor, tmp_path, Watched(swa_lrs=0.05) if callback is StochasticWeightAveraging else Watched(), max_epochs=1)
    assert seen == [(True, True)]  # the copy holds no Trainer; the module stays attached
