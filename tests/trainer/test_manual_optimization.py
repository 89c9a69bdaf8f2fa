"""Manual optimization: two optimizers GAN-style, LightningOptimizer wrappers, global_step per `opt.step()`,
toggling, manual_backward and its hooks, lr_schedulers(), the errors; compared with pytorch-lightning 2.6.6."""

from __future__ import annotations

import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader

import fulgor
from fulgor.errors import MisconfigurationException
from helpers.boring import XYDataset

QUIET = {
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "num_sanity_val_steps": 0,
}


def gan_class(pl: ModuleType) -> type:
    """Generator Linear(4, 2) and discriminator Linear(2, 1), Adam and SGD with a StepLR each (stepped by the user at
    the end of every epoch); records what a user can observe during the step."""

    class GAN(pl.LightningModule):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.gen = torch.nn.Linear(4, 2)
            self.disc = torch.nn.Linear(2, 1)
            self.automatic_optimization = False
            self.seen: list[Any] = []
            self.hooks: list[str] = []

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, real = batch
            opt_g, opt_d = self.optimizers()
            if batch_idx == 0:
                self.seen.append(("steps at start", self.global_step))
            with self.toggled_optimizer(opt_g):
                self.seen.append(("toggled g", [p.requires_grad for p in self.parameters()]))
                fake = self.gen(x)
                loss_g = F.softplus(-self.disc(fake)).mean()
                opt_g.zero_grad()
                self.manual_backward(loss_g)
                opt_g.step()
            self.seen.append(("untoggled", [p.requires_grad for p in self.parameters()]))
            self.toggle_optimizer(opt_d)
            loss_d = F.softplus(-self.disc(real)).mean() + F.softplus(self.disc(fake.detach())).mean()
            opt_d.zero_grad()
            self.manual_backward(loss_d)
            opt_d.step()
            self.untoggle_optimizer(opt_d)
            self.seen.append(("global_step", self.global_step))
            return {"loss": loss_d, "loss_g": loss_g.detach()}

        def on_train_epoch_end(self) -> None:
            for scheduler in self.lr_schedulers():
                scheduler.step()

        def configure_optimizers(self) -> Any:
            opt_g = torch.optim.Adam(self.gen.parameters(), lr=0.01)
            opt_d = torch.optim.SGD(self.disc.parameters(), lr=0.1)
            sched_g = torch.optim.lr_scheduler.StepLR(opt_g, 1, gamma=0.5)
            sched_d = torch.optim.lr_scheduler.StepLR(opt_d, 1, gamma=0.1)
            return [opt_g, opt_d], [sched_g, sched_d]

        def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
            self.seen.append(("outputs", sorted(outputs), outputs["loss"].requires_grad))

        def on_before_backward(self, loss: torch.Tensor) -> None:
            self.hooks.append("on_before_backward")

        def backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
            self.hooks.append("backward")
            super().backward(loss, *args, **kwargs)

        def on_after_backward(self) -> None:
            self.hooks.append("on_after_backward")

        def on_before_optimizer_step(self, optimizer: Any) -> None:
            self.hooks.append(f"on_before_optimizer_step {type(optimizer).__name__}")

        def train_dataloader(self) -> Any:
            return DataLoader(XYDataset(12, 4, 2, seed=1), batch_size=4)

    return GAN


def fit(pl: ModuleType, model: Any, root: Path, **flags: Any) -> Any:
    trainer = pl.Trainer(default_root_dir=str(root), **{"max_epochs": 2, **QUIET, **flags})
    trainer.fit(model)
    return trainer


def test_two_optimizers_count_two_steps_per_batch_and_toggle(tmp_path: Path) -> None:
    model = gan_class(fulgor)()
    trainer = fit(fulgor, model, tmp_path)
    assert trainer.global_step == 12  # 3 batches x 2 epochs x 2 optimizer steps
    assert [v for k, v, *_ in model.seen if k == "global_step"] == [2, 4, 6, 8, 10, 12]
    assert [v for k, v, *_ in model.seen if k == "steps at start"] == [0, 6]
    # toggled on the generator: the discriminator's weight and bias are frozen; untoggled: all trainable again.
    assert model.seen[1] == ("toggled g", [True, True, False, False])
    assert model.seen[2] == ("untoggled", [True, True, True, True])
    assert ("outputs", ["loss", "loss_g"], False) in model.seen  # the loss reaches on_train_batch_end detached
    opt_g, opt_d = trainer.optimizers
    assert opt_g.param_groups[0]["lr"] == pytest.approx(0.01 * 0.5**2)
    assert opt_d.param_groups[0]["lr"] == pytest.approx(0.1 * 0.1**2)
    assert model.hooks[:8] == [
        "on_before_backward", "backward", "on_after_backward", "on_before_optimizer_step Adam",
        "on_before_backward", "backward", "on_after_backward", "on_before_optimizer_step SGD",
    ]  # fmt: skip


def test_lightning_optimizer_wrapper(tmp_path: Path) -> None:
    from fulgor.optimizer import LightningOptimizer

    captured: dict[str, Any] = {}

    class Probe(gan_class(fulgor)):  # type: ignore[misc]
        def on_train_start(self) -> None:
            opt_g, opt_d = self.optimizers()
            captured["names"] = (type(opt_g).__name__, type(opt_d).__name__)
            captured["isinstance"] = (
                isinstance(opt_g, LightningOptimizer),
                isinstance(opt_g, torch.optim.Adam),
                isinstance(opt_d, torch.optim.SGD),
            )
            captured["proxied"] = (opt_d.param_groups is opt_d.optimizer.param_groups, opt_d.defaults["lr"])
            captured["raw"] = [type(o).__name__ for o in self.optimizers(use_pl_optimizer=False)]
            captured["schedulers"] = [type(s).__name__ for s in self.lr_schedulers()]
            opt_d.param_groups[0]["lr"] = 0.2  # writes reach the wrapped optimizer
            captured["written"] = self.trainer.optimizers[1].param_groups[0]["lr"]

    fit(fulgor, Probe(), tmp_path, max_epochs=1)
    assert captured == {
        "names": ("LightningAdam", "LightningSGD"),
        "isinstance": (True, True, True),
        "proxied": (True, 0.1),
        "raw": ["Adam", "SGD"],
        "schedulers": ["StepLR", "StepLR"],
        "written": 0.2,
    }
    with pytest.raises(MisconfigurationException, match="the closure should be callable"):
        LightningOptimizer(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)).step(closure=3)


def test_one_optimizer_no_scheduler_and_a_closure(tmp_path: Path) -> None:
    class Single(fulgor.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False
            self.x = torch.nn.Parameter(torch.tensor([3.0]))

        def training_step(self, batch: Any, batch_idx: int) -> None:
            opt = self.optimizers()
            assert self.lr_schedulers() is None

            def closure() -> torch.Tensor:
                opt.zero_grad()
                loss = ((self.x - 1.0) ** 2).sum()
                self.manual_backward(loss)
                return loss

            opt.step(closure=closure)

        def configure_optimizers(self) -> Any:
            return torch.optim.LBFGS(self.parameters(), lr=1.0)

        def train_dataloader(self) -> Any:
            return DataLoader(torch.zeros(2, 1), batch_size=1)

    model = Single()
    trainer = fit(fulgor, model, tmp_path, max_epochs=1)
    assert trainer.global_step == 2
    assert model.x.item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            {"gradient_clip_val": 1.0},
            "Automatic gradient clipping is not supported for manual optimization. Remove"
            " `Trainer(gradient_clip_val=1.0)` or switch to automatic optimization.",
        ),
        (
            {"accumulate_grad_batches": 2},
            "Automatic gradient accumulation is not supported for manual optimization. Remove"
            " `Trainer(accumulate_grad_batches=2)` or switch to automatic optimization.",
        ),
    ],
)
def test_manual_optimization_rejects_automatic_clipping_and_accumulation(
    flags: dict[str, Any], message: str, tmp_path: Path
) -> None:
    with pytest.raises(MisconfigurationException) as error:
        fit(fulgor, gan_class(fulgor)(), tmp_path, **flags)
    assert str(error.value) == message


def test_manual_backward_needs_manual_optimization(tmp_path: Path) -> None:
    class Automatic(fulgor.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 2)

        def training_step(self, batch: Any, batch_idx: int) -> None:
            self.manual_backward(self.layer(batch[0]).sum())

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

        def train_dataloader(self) -> Any:
            return DataLoader(XYDataset(4), batch_size=4)

    with pytest.raises(MisconfigurationException) as error:
        fit(fulgor, Automatic(), tmp_path, max_epochs=1)
    assert str(error.value) == (
        "to use manual_backward, please disable automatic optimization: set model property `automatic_optimization`"
        " as False"
    )


@pytest.mark.oracle
def test_gan_matches_lightning(tmp_path: Path) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    runs = []
    for package in (fulgor, pl):
        model = gan_class(package)()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer = fit(package, model, tmp_path / package.__name__)
        runs.append((model, trainer))
    (ours, our_trainer), (theirs, their_trainer) = runs
    assert our_trainer.global_step == their_trainer.global_step == 12
    assert ours.seen == theirs.seen
    assert ours.hooks == theirs.hooks
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(a, b)
    assert [o.param_groups[0]["lr"] for o in our_trainer.optimizers] == [
        o.param_groups[0]["lr"] for o in their_trainer.optimizers
    ]
