"""BaseFinetuning / BackboneFinetuning: a small transformer backbone (with a BatchNorm) frozen before training and
unfrozen at an epoch into its own param group; learning rates, flags and weights against pytorch-lightning 2.6.6."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import fulgor
from fulgor.callbacks.finetuning import BackboneFinetuning, BaseFinetuning
from fulgor.errors import MisconfigurationException


def backbone() -> nn.Module:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=16, dropout=0.0, batch_first=True)
    return nn.Sequential(nn.Linear(4, 8), nn.TransformerEncoder(layer, num_layers=1), nn.BatchNorm1d(3))


def model_class(lib: Any) -> type:
    class Finetuner(lib.LightningModule):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.backbone = backbone()
            self.head = nn.Linear(8, 1)
            self.seen: list[dict[str, Any]] = []

        def on_train_epoch_start(self) -> None:
            opt = self.trainer.optimizers[0]
            self.seen.append({
                "lrs": [round(g["lr"], 10) for g in opt.param_groups],
                "backbone_trainable": [p.requires_grad for p in self.backbone.parameters()],
                "bn_tracks": self.backbone[2].track_running_stats,
            })  # fmt: skip

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            return nn.functional.mse_loss(self.head(self.backbone(x)).mean(dim=1), y)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(filter(lambda p: p.requires_grad, self.parameters()), lr=0.1)

    return Finetuner


def loader() -> DataLoader[Any]:
    g = torch.Generator().manual_seed(1)
    return DataLoader(TensorDataset(torch.randn(8, 3, 4, generator=g), torch.randn(8, 1, generator=g)), batch_size=4)


def run(lib: Any, root: Path, callback: Any, max_epochs: int = 4) -> tuple[Any, Any]:
    model = model_class(lib)()
    trainer = lib.Trainer(default_root_dir=str(root), max_epochs=max_epochs, callbacks=[callback], logger=False,
                          enable_progress_bar=False, enable_model_summary=False,
                          enable_checkpointing=False)  # fmt: skip
    trainer.fit(model, loader())
    return model, trainer


def weights(model: nn.Module) -> list[float]:
    return [round(v, 5) for v in torch.cat([p.detach().flatten() for p in model.parameters()]).tolist()]


def test_backbone_frozen_then_unfrozen_with_its_own_lr(tmp_path: Path) -> None:
    reference = backbone()
    callback = BackboneFinetuning(unfreeze_backbone_at_epoch=2, lambda_func=lambda epoch: 2.0)
    model, trainer = run(fulgor, tmp_path, callback)
    n_backbone = len(list(model.backbone.parameters()))
    bn_params = 2
    frozen = [False] * (n_backbone - bn_params) + [True] * bn_params  # train_bn=True keeps BatchNorm trainable
    assert model.seen == [
        {"lrs": [0.1], "backbone_trainable": frozen, "bn_tracks": True},
        {"lrs": [0.1], "backbone_trainable": frozen, "bn_tracks": True},
        {"lrs": [0.1, 0.01], "backbone_trainable": [True] * n_backbone, "bn_tracks": True},  # 0.1 * ratio 0.1
        {"lrs": [0.1, 0.02], "backbone_trainable": [True] * n_backbone, "bn_tracks": True},  # x lambda(4) = 2
    ]
    # The frozen layers did not move in the first two epochs... and moved once unfrozen.
    first = next(model.backbone[0].parameters())
    assert not torch.equal(first, next(reference[0].parameters()))
    assert len(trainer.optimizers[0].param_groups) == 2
    assert callback.previous_backbone_lr == pytest.approx(0.02)


def test_should_align_caps_the_backbone_lr(tmp_path: Path) -> None:
    callback = BackboneFinetuning(
        unfreeze_backbone_at_epoch=1, lambda_func=lambda epoch: 10.0, backbone_initial_lr=0.05
    )
    model, _ = run(fulgor, tmp_path, callback)
    assert [s["lrs"] for s in model.seen] == [[0.1], [0.1, 0.05], [0.1, 0.1], [0.1, 0.1]]


def test_freeze_without_train_bn_and_make_trainable() -> None:
    net = backbone()
    BaseFinetuning.freeze(net, train_bn=False)
    assert not any(p.requires_grad for p in net.parameters())
    assert net[2].track_running_stats is False
    assert list(BaseFinetuning.filter_params(net, requires_grad=False)) == list(net.parameters())
    BaseFinetuning.make_trainable(net[2])
    assert [p.requires_grad for p in net.parameters()][-2:] == [True, True]
    assert net[2].track_running_stats
    leaves = BaseFinetuning.flatten_modules(net)
    assert [type(m).__name__ for m in leaves] == [
        "Linear", "MultiheadAttention", "NonDynamicallyQuantizableLinear", "Linear", "Dropout", "Linear", "LayerNorm",
        "LayerNorm", "Dropout", "Dropout", "BatchNorm1d",
    ]  # fmt: skip


def test_unfreeze_and_add_param_group_default_lr_and_duplicates() -> None:
    net = backbone()
    BaseFinetuning.freeze(net, train_bn=False)
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.5)
    BaseFinetuning.unfreeze_and_add_param_group(net[0], optimizer, initial_denom_lr=5.0)
    assert [g["lr"] for g in optimizer.param_groups] == [0.5, 0.1]
    assert optimizer.param_groups[1]["params"] == list(net[0].parameters())
    with pytest.warns(UserWarning, match="The provided params to be frozen already exist within another group"):
        BaseFinetuning.unfreeze_and_add_param_group(net[0], optimizer, lr=0.2)
    assert len(optimizer.param_groups) == 2


def test_missing_backbone_error(tmp_path: Path) -> None:
    class NoBackbone(model_class(fulgor)):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.body = self.backbone
            del self.backbone

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            return self.head(self.body(batch[0])).mean()

        def on_train_epoch_start(self) -> None:
            pass

    trainer = fulgor.Trainer(default_root_dir=str(tmp_path), max_epochs=1, logger=False, enable_progress_bar=False,
                             callbacks=[BaseFinetuning()])  # fmt: skip
    with pytest.raises(NotImplementedError):  # the base class needs freeze_before_training
        trainer.fit(NoBackbone(), loader())
    trainer = fulgor.Trainer(default_root_dir=str(tmp_path), max_epochs=1, logger=False, enable_progress_bar=False,
                             callbacks=[BackboneFinetuning()])  # fmt: skip
    with pytest.raises(AttributeError):  # freeze_before_training reads pl_module.backbone in setup
        trainer.fit(NoBackbone(), loader())
    with pytest.raises(MisconfigurationException, match=r"The LightningModule should have a nn\.Module `backbone`"):
        BackboneFinetuning().on_fit_start(trainer, NoBackbone())


def resume(lib: Any, root: Path) -> list[dict[str, Any]]:
    """Fit 2 epochs (backbone unfrozen at epoch 1), save, resume for a third epoch; what epoch 2 starts with."""
    cls = BackboneFinetuning if lib is fulgor else lib.callbacks.BackboneFinetuning
    _, trainer = run(lib, root / "a", cls(unfreeze_backbone_at_epoch=1), max_epochs=2)
    trainer.save_checkpoint(root / "ft.ckpt")
    model = model_class(lib)()
    trainer = lib.Trainer(default_root_dir=str(root / "b"), max_epochs=3, callbacks=[cls(unfreeze_backbone_at_epoch=1)],
                          logger=False, enable_progress_bar=False, enable_model_summary=False,
                          enable_checkpointing=False)  # fmt: skip
    trainer.fit(model, loader(), ckpt_path=str(root / "ft.ckpt"))
    return model.seen


def test_added_param_groups_are_saved_and_rebuilt(tmp_path: Path) -> None:
    seen = resume(fulgor, tmp_path)
    state = torch.load(tmp_path / "ft.ckpt", weights_only=True)["callbacks"]["BackboneFinetuning"]
    groups = state["internal_optimizer_metadata"][0]
    # train_bn=True: the backbone's BatchNorm was trainable from the start, so it is in the first group.
    assert [g["params"][:3] for g in groups] == [
        ["backbone.2.weight", "backbone.2.bias", "head.weight"], ["backbone.0.weight", "backbone.0.bias",
        "backbone.1.layers.0.self_attn.in_proj_weight"],
    ]  # fmt: skip
    assert state["previous_backbone_lr"] == pytest.approx(0.01)
    # Both param groups are rebuilt and the backbone lr doubles; as in Lightning, `setup` froze the backbone again
    # and nothing unfreezes it after the unfreeze epoch, so its parameters stay frozen after resuming.
    assert seen == [{"lrs": [0.1, 0.02], "backbone_trainable": [False] * 14 + [True] * 2, "bn_tracks": True}]


@pytest.mark.oracle
def test_resume_matches_lightning(tmp_path: Path) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    assert resume(fulgor, tmp_path / "f") == resume(pl, tmp_path / "pl")


@pytest.mark.oracle
def test_matches_lightning(tmp_path: Path) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    kw = {"unfreeze_backbone_at_epoch": 1, "backbone_initial_ratio_lr": 0.2, "train_bn": False}
    pl_model, _ = run(pl, tmp_path / "pl", pl.callbacks.BackboneFinetuning(**kw))
    model, _ = run(fulgor, tmp_path / "f", BackboneFinetuning(**kw))
    assert model.seen == pl_model.seen
    assert weights(model) == weights(pl_model)
