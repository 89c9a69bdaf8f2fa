"""FSDP checkpoint mechanics and options on one process: the atomic swap-in of a sharded folder and reading it whole,
optimizer-state re-keying, meta-device creation and materialisation, the argument errors, and the mixed-precision
config (Lightning's `MixedPrecision` and its FSDP2 translation). The 2-process behaviour is in
test_fsdp_sharded_trainer.py and tests/fabric/test_fabric_fsdp_checkpoints.py."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any
from unittest.mock import Mock

import pytest
import torch
from torch import nn

from fulgor.fsdp_precision_config import mixed_precision_config, to_fsdp2_policy
from fulgor.precision import FSDPPrecision
from fulgor.strategies import fsdp_checkpoint as ckpt
from fulgor.strategies.fsdp import FSDPStrategy, materialize
from fulgor.strategies.registry import select_strategy


def _strategy(**kwargs: object) -> FSDPStrategy:
    strategy = FSDPStrategy(**kwargs)  # type: ignore[arg-type]
    strategy.configure(Mock(), [torch.device("cpu", 0), torch.device("cpu", 1)], 1)
    return strategy


def _write(path: Path, value: float, meta: dict[str, object]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch: "no process group, saving in a single process"
        ckpt.write_sharded(path, {"model": {"w": torch.full((2, 3), value)}}, meta, True, lambda: None)


def test_a_sharded_folder_replaces_a_file_or_folder_and_reads_back_whole(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    path.write_bytes(b"an older full checkpoint")
    _write(path, 1.0, {"epoch": 0})
    assert ckpt.is_sharded_checkpoint(path)
    _write(path, 2.0, {"epoch": 1})  # over the previous folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no `.last.ckpt.partial`/`.old` left
    assert sorted(p.name for p in path.iterdir()) == [".metadata", "__0_0.distcp", "meta.pt"]
    assert torch.equal(ckpt.read_sharded(path)["model"]["w"], torch.full((2, 3), 2.0))
    assert ckpt.read_sharded_metadata(path) == {"epoch": 1}
    assert not ckpt.is_sharded_checkpoint(tmp_path)  # a folder without meta.pt is not one


def test_nested_lists_and_dicts_come_back_from_flat_keys() -> None:
    flat = {"o.param_groups.0.lr": 0.1, "o.param_groups.1.lr": 0.2, "o.state.a.step": 3}
    paths = {
        "o.param_groups.0.lr": ("o", "param_groups", 0, "lr"),
        "o.param_groups.1.lr": ("o", "param_groups", 1, "lr"),
        "o.state.a.step": ("o", "state", "a", "step"),
    }
    assert ckpt._unflatten(flat, paths) == {
        "o": {"param_groups": [{"lr": 0.1}, {"lr": 0.2}], "state": {"a": {"step": 3}}}
    }


def test_optimizer_state_keys_go_from_names_to_indices_and_back() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    groups: list[dict[str, Any]] = [{"params": model[0].parameters()}, {"params": model[1].parameters(), "lr": 0.5}]
    optimizer = torch.optim.Adam(groups)
    model(torch.ones(4, 2)).sum().backward()
    optimizer.step()
    standard = optimizer.state_dict()
    named = ckpt._to_param_names(model, optimizer, standard)
    assert list(named["state"]) == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert [g["params"] for g in named["param_groups"]] == [["0.weight", "0.bias"], ["1.weight", "1.bias"]]
    back = ckpt.to_param_ids(named)
    assert [g["params"] for g in back["param_groups"]] == [[0, 1], [2, 3]]
    assert all(torch.equal(back["state"][i]["exp_avg"], standard["state"][i]["exp_avg"]) for i in range(4))
    assert ckpt._to_param_names(model, optimizer, named) is named  # already by name


def test_empty_init_creates_on_meta_and_setup_materialises_with_reset_parameters() -> None:
    strategy = _strategy()
    with strategy.tensor_init_context(empty_init=True):
        model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    assert all(t.is_meta for t in [*model.parameters(), *model.buffers()])
    with strategy.module_init_context(empty_init=False):
        plain = nn.Linear(3, 2)
    assert plain.weight.device == torch.device("cpu")
    torch.manual_seed(3)
    materialize(model, torch.device("cpu"))
    torch.manual_seed(3)
    expected = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), expected.state_dict().values()))


def test_materialising_a_module_without_reset_parameters_names_it() -> None:
    class Scale(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.factor = nn.Parameter(torch.ones(2))

    with torch.device("meta"):
        model = nn.Sequential(Scale())
    with pytest.raises(TypeError, match=r"`Scale.reset_parameters` method is implemented"):
        materialize(model, torch.device("cpu"))


def test_argument_errors_name_the_fix(tmp_path: Path) -> None:
    strategy = _strategy()
    with pytest.raises(TypeError, match="does not use the `CheckpointIO`"):
        strategy.save_checkpoint(tmp_path / "x", {}, storage_options={"a": 1})
    with pytest.raises(NotImplementedError, match="doesn't support loading sharded filtered checkpoints"):
        strategy.save_checkpoint(tmp_path / "x", {}, filter={"model": lambda k, v: True})
    with pytest.raises(ValueError, match="a state with at least a model instance to reload is required"):
        strategy.load_checkpoint(tmp_path / "x")
    with pytest.raises(NotImplementedError, match="single optimizer object"):
        strategy.load_checkpoint(tmp_path / "x", torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1))
    with pytest.raises(ValueError, match="must be a single file containing the full state dict"):
        strategy.load_checkpoint(tmp_path, nn.Linear(1, 1))  # `fabric.load_raw(folder, model)`
    with pytest.raises(ValueError, match="Could not find a FSDP model"):
        strategy.load_checkpoint(tmp_path / "x", {"model": nn.Linear(1, 1)})
    with pytest.raises(TypeError, match=r"mixed_precision='bf16'\)` is invalid"):
        FSDPStrategy(mixed_precision="bf16")


def test_names_keep_full_checkpoints_for_the_trainer() -> None:
    strategy = select_strategy("fsdp", [torch.device("cpu", 0), torch.device("cpu", 1)], 1)
    assert isinstance(strategy, FSDPStrategy)
    assert (strategy.state_dict_type, strategy.mixed_precision_config) == ("full", None)


# ------------------------------------------------------------------------------------------------ mixed precision


@pytest.mark.parametrize(
    ("precision", "dtype", "warns"),
    [("16-mixed", torch.float16, False), ("bf16-true", torch.bfloat16, True), ("32-true", torch.float32, False)],
)
def test_mixed_precision_config_is_lightnings_and_translates_to_fsdp2(
    precision: str, dtype: torch.dtype, warns: bool
) -> None:
    from torch.distributed.fsdp import MixedPrecision, MixedPrecisionPolicy

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = FSDPPrecision(precision, device="cpu").mixed_precision_config  # type: ignore[arg-type]
    assert [str(w.message).startswith(f"FSDP with `{precision}` enables") for w in caught] == ([True] if warns else [])
    assert isinstance(config, MixedPrecision)
    assert (config.param_dtype, config.reduce_dtype, config.buffer_dtype) == (dtype, dtype, dtype)
    policy = to_fsdp2_policy(config)
    assert isinstance(policy, MixedPrecisionPolicy)
    assert (policy.param_dtype, policy.reduce_dtype) == (dtype, dtype)
    assert to_fsdp2_policy(policy) is policy
    with pytest.raises(ValueError, match="unable to infer precision type"):
        mixed_precision_config("64-true")


def test_fsdp_precision_steps_in_lightnings_trainer_form() -> None:
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    precision = FSDPPrecision("bf16-mixed", device="cpu")
    before = model.weight.detach().clone()

    def closure() -> torch.Tensor:
        loss: torch.Tensor = model(torch.ones(1, 2)).sum()
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    precision.optimizer_step(optimizer, model, closure)  # (optimizer, model, closure), as Lightning's Trainer calls
    assert torch.equal(model.weight.detach(), before - 1.0)  # d(sum(w.x + b))/dw = x = 1
    owner = Mock()
    loss = torch.ones((), requires_grad=True)
    precision.backward(loss, owner, None, "arg")  # the Trainer form: the module's `backward` hook runs it
    owner.backward.assert_called_once_with(loss, "arg")
