"""The strategy's restore hooks, compared with pytorch-lightning 2.6.6: `restore_checkpoint_after_setup` (when the
Trainer loads `ckpt_path` relative to `Strategy.setup`), `lightning_restore_optimizer` / `load_optimizer_state_dict`
(who restores the optimizers), and the Trainer-form `load_checkpoint(checkpoint_path, weights_only)`."""

from __future__ import annotations

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

QUIET: dict[str, Any] = {"enable_progress_bar": False, "enable_model_summary": False, "logger": False}


def _recording_strategy(lib: ModuleType, events: list[str], after_setup: bool) -> Any:
    """A SingleDeviceStrategy of `lib` that records its setup and checkpoint loads."""

    class Recording(lib.strategies.SingleDeviceStrategy):  # type: ignore[misc,name-defined]
        def setup(self, trainer: Any) -> None:
            events.append("strategy.setup")
            super().setup(trainer)

        @property
        def restore_checkpoint_after_setup(self) -> bool:
            return after_setup

        def load_checkpoint(self, checkpoint_path: Any, weights_only: Any = None) -> dict[str, Any]:
            events.append("strategy.load_checkpoint")
            loaded: dict[str, Any] = super().load_checkpoint(checkpoint_path, weights_only)
            return loaded

    return Recording(device=torch.device("cpu"), accelerator=lib.accelerators.CPUAccelerator())


def _recording_model(lib: ModuleType, events: list[str]) -> Any:
    base = boring_classes(lib).BoringModel

    class Model(base):  # type: ignore[misc,valid-type]
        def setup(self, stage: str) -> None:
            events.append(f"setup:{stage}")

        def configure_optimizers(self) -> Any:
            events.append("configure_optimizers")
            return super().configure_optimizers()

        def on_fit_start(self) -> None:
            events.append("on_fit_start")

        def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
            events.append("on_load_checkpoint")

        def predict_step(self, batch: Any, batch_idx: int) -> Any:
            return self(batch)

    return Model()


def _checkpoint(lib: ModuleType, root: Path) -> Path:
    torch.manual_seed(0)
    trainer = lib.Trainer(default_root_dir=root, max_steps=2, limit_val_batches=0, **QUIET)
    trainer.fit(boring_classes(lib).BoringModel())
    path = root / "model.ckpt"
    trainer.save_checkpoint(path)
    return path


def _events(lib: ModuleType, root: Path, after_setup: bool) -> dict[str, list[str]]:
    path = _checkpoint(lib, root)
    seen: dict[str, list[str]] = {}
    for fn in ("fit", "validate", "test", "predict"):
        events: list[str] = []
        strategy = _recording_strategy(lib, events, after_setup)
        flags = {"max_steps": 3} if fn == "fit" else {}
        trainer = lib.Trainer(default_root_dir=root, strategy=strategy, limit_val_batches=1, limit_test_batches=1,
                              limit_predict_batches=1, num_sanity_val_steps=0, **flags, **QUIET)  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            getattr(trainer, fn)(_recording_model(lib, events), ckpt_path=path)
        seen[fn] = events
    return seen


@pytest.mark.parametrize("after_setup", [False, True])
def test_checkpoint_is_loaded_before_or_after_strategy_setup_as_in_lightning(tmp_path: Path, after_setup: bool) -> None:
    ours = _events(fulgor, tmp_path / "fulgor", after_setup)
    theirs = _events(pl, tmp_path / "pl", after_setup)
    assert ours == theirs
    fit = ours["fit"]
    if after_setup:  # loaded after the strategy's setup and `on_fit_start`
        assert fit.index("strategy.load_checkpoint") > fit.index("on_fit_start") > fit.index("strategy.setup")
    else:
        assert fit.index("strategy.load_checkpoint") < fit.index("strategy.setup")
    assert all(events.count("strategy.load_checkpoint") == 1 for events in ours.values())


def test_default_restore_properties_match_lightning() -> None:
    for lib in (fulgor, pl):
        strategy = lib.strategies.SingleDeviceStrategy(device=torch.device("cpu"))
        assert strategy.restore_checkpoint_after_setup is False
        assert strategy.lightning_restore_optimizer is True


def _resume_optimizer(lib: ModuleType, root: Path, restore: bool) -> tuple[list[bool], dict[int, Any]]:
    """Resume a fit with SGD momentum through a strategy whose `lightning_restore_optimizer` is `restore`; return
    whether `load_optimizer_state_dict` was called (with a checkpoint holding optimizer states) and the momentum
    state the optimizer has when training starts."""
    base = boring_classes(lib).BoringModel

    class Momentum(base):  # type: ignore[misc,valid-type]
        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)

        def on_train_start(self) -> None:
            optimizer = self.trainer.optimizers[0]
            self.start_state = {k: v["momentum_buffer"].clone() for k, v in enumerate(optimizer.state.values())}

    torch.manual_seed(0)
    trainer = lib.Trainer(default_root_dir=root, max_steps=2, limit_val_batches=0, **QUIET)
    trainer.fit(Momentum())
    path = root / "momentum.ckpt"
    trainer.save_checkpoint(path)
    calls: list[bool] = []

    class Strategy(lib.strategies.SingleDeviceStrategy):  # type: ignore[misc,name-defined]
        @property
        def lightning_restore_optimizer(self) -> bool:
            return restore

        def load_optimizer_state_dict(self, checkpoint: Any) -> None:
            calls.append("optimizer_states" in checkpoint)
            super().load_optimizer_state_dict(checkpoint)

    model = Momentum()
    trainer = lib.Trainer(default_root_dir=root, max_steps=3, limit_val_batches=0,
                          strategy=Strategy(device=torch.device("cpu")), **QUIET)  # fmt: skip
    trainer.fit(model, ckpt_path=path)
    return calls, model.start_state


@pytest.mark.parametrize("restore", [True, False])
def test_lightning_restore_optimizer_decides_whether_load_optimizer_state_dict_runs(
    tmp_path: Path, restore: bool
) -> None:
    ours_calls, ours_state = _resume_optimizer(fulgor, tmp_path / "fulgor", restore)
    theirs_calls, theirs_state = _resume_optimizer(pl, tmp_path / "pl", restore)
    assert ours_calls == theirs_calls == ([True] if restore else [])
    assert ours_state.keys() == theirs_state.keys()
    assert (len(ours_state) > 0) is restore  # the momentum buffers come from the checkpoint only when restored
    for key in ours_state:
        torch.testing.assert_close(ours_state[key], theirs_state[key])


def test_trainer_form_load_checkpoint_takes_weights_only_positionally(tmp_path: Path) -> None:
    path = _checkpoint(fulgor, tmp_path)
    strategy = fulgor.strategies.SingleDeviceStrategy(device=torch.device("cpu"))
    strategy.connect(boring_classes(fulgor).BoringModel())
    loaded = strategy.load_checkpoint(path, True)
    assert loaded["global_step"] == 2
    assert "state_dict" in loaded
    assert "optimizer_states" in loaded


def test_strategy_setup_without_a_connected_model_names_the_fix() -> None:
    strategy = fulgor.strategies.SingleDeviceStrategy(device=torch.device("cpu"))
    with pytest.raises(RuntimeError, match=r"strategy\.connect\(model\)"):
        strategy.setup(fulgor.Trainer(**QUIET))


def test_optimizers_outside_a_run_are_the_assigned_ones() -> None:
    strategy = fulgor.strategies.SingleDeviceStrategy(device=torch.device("cpu"))
    assert strategy.optimizers == []
    optimizer = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1)
    strategy.optimizers = [optimizer]
    assert strategy.optimizers == [optimizer]
