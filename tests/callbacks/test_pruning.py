"""ModelPruning: the weights pruned (locally and globally, on a schedule, with the lottery ticket), the checkpoint's
permanent weights, the parameter choice and the argument errors, compared with pytorch-lightning 2.6.6."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
import torch.nn.utils.prune as torch_prune
from torch import nn

import fulgor
from fulgor.callbacks import ModelPruning
from fulgor.errors import MisconfigurationException
from helpers.boring import RandomDataset


def _model_class(lib: ModuleType) -> type:
    class Pruned(lib.LightningModule):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 8))
            self.head = nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.layer(x))

        def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
            return self(batch).pow(2).mean()

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

        def train_dataloader(self) -> Any:
            return torch.utils.data.DataLoader(RandomDataset(32, 16), batch_size=4)

    return Pruned


CONFIGS: dict[str, dict[str, Any]] = {
    "global l1, permanent": {"pruning_fn": "l1_unstructured", "amount": 0.3},
    "local l1, schedule, kept masks": {
        "pruning_fn": "l1_unstructured",
        "use_global_unstructured": False,
        "make_pruning_permanent": False,
        "amount": lambda epoch: [0.0, 0.25, 0.5][epoch],
        "use_lottery_ticket_hypothesis": False,
    },
    "ln structured, weights only": {
        "pruning_fn": "ln_structured",
        "use_global_unstructured": False,
        "pruning_dim": 0,
        "pruning_norm": 2,
        "parameter_names": ["weight"],
        "amount": lambda epoch: 1 if epoch == 1 else 0,
    },
    "random, apply on odd epochs, verbose": {
        "pruning_fn": "random_unstructured",
        "apply_pruning": lambda epoch: epoch % 2 == 1,
        "verbose": 2,
        "amount": 0.5,
    },
    "torch method class": {"pruning_fn": torch_prune.L1Unstructured, "amount": 0.2},
}


def _fit(lib: ModuleType, root: Path, config: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    torch.manual_seed(7)
    model = _model_class(lib)()
    trainer = lib.Trainer(
        max_epochs=3, enable_progress_bar=False, enable_model_summary=False, logger=False,
        enable_checkpointing=False, default_root_dir=root, callbacks=[lib.callbacks.ModelPruning(**config)],
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(7)
        trainer.fit(model)
        trainer.save_checkpoint(root / "pruned.ckpt")
    checkpoint = torch.load(root / "pruned.ckpt", weights_only=False)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return state, checkpoint["state_dict"]


@pytest.mark.oracle
@pytest.mark.parametrize("name", list(CONFIGS))
def test_pruned_weights_and_checkpoint_equal_lightnings(name: str, tmp_path: Path) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    ours, our_ckpt = _fit(fulgor, tmp_path / "f", CONFIGS[name])
    theirs, their_ckpt = _fit(pl, tmp_path / "l", CONFIGS[name])
    assert list(ours) == list(theirs)
    assert list(our_ckpt) == list(their_ckpt)
    for key in ours:
        assert torch.allclose(ours[key], theirs[key], atol=1e-6), key
    for key in our_ckpt:
        assert torch.allclose(our_ckpt[key], their_ckpt[key], atol=1e-6), key


def test_global_pruning_zeroes_the_amount_and_is_made_permanent(tmp_path: Path) -> None:
    state, checkpoint = _fit(fulgor, tmp_path, {"pruning_fn": "l1_unstructured", "amount": 0.5})
    assert not any(key.endswith(("_orig", "_mask")) for key in state)  # permanent at the end of training
    weights = torch.cat([v.flatten() for k, v in state.items()])
    # 3 epochs of 50% of what is left (the same parameters each time): 1 - 0.5**3 of them are zero.
    assert (weights == 0).sum().item() == round(weights.numel() * (1 - 0.5**3))
    assert list(checkpoint) == list(state)


def test_kept_masks_stay_in_the_module_but_not_in_checkpoints(tmp_path: Path) -> None:
    config = {"pruning_fn": "l1_unstructured", "make_pruning_permanent": False, "amount": 0.5}
    state, checkpoint = _fit(fulgor, tmp_path, config)
    assert "layer.0.weight_mask" in state
    assert "layer.0.weight_orig" in state
    assert "layer.0.weight_mask" in checkpoint  # the checkpoint keeps the re-parametrisation too


def test_sparsity_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="fulgor"):
        _fit(fulgor, tmp_path, {"pruning_fn": "l1_unstructured", "amount": 0.5, "verbose": 1})
    lines = [r.getMessage() for r in caplog.records if "Applied `L1Unstructured`" in r.getMessage()]
    assert lines[0] == "Applied `L1Unstructured`. Pruned: 0/682 (0.00%) -> 341/682 (50.00%)"
    assert len(lines) == 3


def test_parameters_chosen_without_a_list() -> None:
    model = _model_class(fulgor)()
    chosen = ModelPruning.sanitize_parameters_to_prune(model, (), ("weight", "bias"))
    names = [(type(m).__name__, n) for m, n in chosen]
    assert names == [("Linear", "weight")] * 3 + [("Linear", "bias")] * 3
    assert chosen[0][0] is model.layer[0]
    assert chosen[2][0] is model.head


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pruning_fn": "l1_unstructured", "parameter_names": ["gamma"]}, "`parameter_names` name: gamma"),
        ({"pruning_fn": "l3_unstructured"}, "`pruning_fn` l3_unstructured isn't available"),
        ({"pruning_fn": "ln_structured", "use_global_unstructured": False}, "`pruning_dim` should be provided"),
        ({"pruning_fn": "ln_structured", "use_global_unstructured": False, "pruning_dim": 0}, "`pruning_norm`"),
        ({"pruning_fn": "random_structured", "pruning_dim": 0}, 'Only the "unstructured" PRUNING_TYPE'),
        ({"pruning_fn": torch_prune.L1Unstructured, "use_global_unstructured": False}, "only supported with"),
        ({"pruning_fn": torch_prune.L1Unstructured(amount=0.1)}, "pass the class, not an instance"),
        ({"pruning_fn": "l1_unstructured", "amount": "half"}, "`amount` should be provided"),
        ({"pruning_fn": "l1_unstructured", "verbose": 3}, r"`verbose` must be any of \(0, 1, 2\)"),
    ],
)
def test_argument_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(MisconfigurationException, match=message):
        ModelPruning(**kwargs)


def test_parameters_not_in_the_model_are_refused() -> None:
    model = _model_class(fulgor)()
    other = nn.Linear(2, 2)
    with pytest.raises(MisconfigurationException, match="don't exist in the model"):
        ModelPruning.sanitize_parameters_to_prune(model, [(other, "weight")])
    with pytest.raises(MisconfigurationException, match="should either be list of tuple"):
        ModelPruning.sanitize_parameters_to_prune(model, [(model.head,)])  # type: ignore[list-item]


def test_lottery_ticket_rewinds_the_kept_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _model_class(fulgor)()
    initial = model.head.weight.detach().clone()
    pruning = ModelPruning("l1_unstructured", parameters_to_prune=[(model.head, "weight")], amount=0.5)
    trainer = fulgor.Trainer(
        max_epochs=1, enable_progress_bar=False, logger=False, enable_checkpointing=False,
        default_root_dir=tmp_path, callbacks=[pruning],
    )  # fmt: skip
    trainer.fit(model)
    kept = model.head.weight != 0
    assert kept.sum().item() == initial.numel() // 2
    assert torch.equal(model.head.weight[kept], initial[kept])
