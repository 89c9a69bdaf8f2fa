"""Old Lightning checkpoints upgraded to the 2.x layout (fulgor.checkpoint_upgrade): the same migrations as Lightning's
`migrate_checkpoint` (differential on checkpoints of 0.9, 1.5 and 1.8 shape), a no-op for 2.x ones, and the
`upgrade_checkpoint` command on real files, including one that pickled `pytorch_lightning` classes."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from fulgor.callbacks.early_stopping import EarlyStopping
from fulgor.callbacks.model_checkpoint import ModelCheckpoint
from fulgor.checkpoint_upgrade import get_version, migrate_checkpoint, set_legacy_version, set_version

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONWARNINGS": "ignore"}
MC_KEY = (
    "ModelCheckpoint{'monitor': 'x', 'mode': 'min', 'every_n_train_steps': 0, 'every_n_epochs': 1,"
    " 'train_time_interval': None, 'save_on_train_epoch_end': True}"
)


def old_checkpoints() -> list[dict[str, Any]]:
    fit_loop_1_8 = {
        "epoch_loop.batch_loop.manual_loop.optim_step_progress": {"q": 1},
        "epoch_loop.batch_loop.manual_loop.state_dict": {},
        "epoch_loop.batch_loop.optimizer_loop.optim_progress": {"optimizer_position": 1, "optimizer": {}},
        "epoch_loop.batch_loop.optimizer_loop.state_dict": {},
        "epoch_loop.batch_loop.state_dict": {"k": 2},
        "epoch_loop.state_dict": {},
    }
    return [
        {"pytorch-lightning_version": "0.9.0", "epoch": 3, "global_step": 30, "state_dict": {},
         "checkpoint_callback_best_model_score": 0.5, "checkpoint_callback_best_model_path": "a.ckpt",
         "early_stop_callback_wait": 2, "early_stop_callback_patience": 3},
        {"pytorch-lightning_version": "1.5.10", "epoch": 1, "global_step": 7, "amp_scaling_state": {}, "state_dict": {},
         "callbacks": {MC_KEY: {"best": 1}},
         "loops": {"validate_loop": {"dataloader_progress": {}, "epoch_loop.batch_progress": {"x": 1}}}},
        {"pytorch-lightning_version": "1.8.6", "epoch": 1, "global_step": 7, "state_dict": {},
         "loops": {"fit_loop": fit_loop_1_8}},
        {"pytorch-lightning_version": "2.1.0", "epoch": 0, "global_step": 1, "state_dict": {}},
        {"pytorch-lightning_version": "2.9.0", "epoch": 0, "global_step": 1, "state_dict": {}},
    ]  # fmt: skip


def by_name(value: Any) -> Any:
    """Callback-class keys by class name, so fulgor's and Lightning's results compare."""
    if isinstance(value, dict):
        return {(k.__name__ if isinstance(k, type) else k): by_name(v) for k, v in value.items()}
    return value


@pytest.mark.oracle
@pytest.mark.parametrize("index", range(5))
@pytest.mark.parametrize("target", [None, "1.6.0"])
def test_migrations_match_lightnings(index: int, target: str | None) -> None:
    pytest.importorskip("pytorch_lightning")
    from pytorch_lightning.utilities.migration.utils import migrate_checkpoint as lightning_migrate

    ours = migrate_checkpoint(copy.deepcopy(old_checkpoints()[index]), target)
    theirs = lightning_migrate(copy.deepcopy(old_checkpoints()[index]), target)
    assert by_name(ours[0]) == by_name(theirs[0])
    assert ours[1] == theirs[1]


def test_a_0_9_checkpoint_gets_its_callback_states_and_loop_counters() -> None:
    checkpoint, applied = migrate_checkpoint(old_checkpoints()[0])
    assert list(applied) == ["0.10.0", "1.6.0", "1.6.5", "1.9.0", "2.0.0"]
    assert checkpoint["callbacks"][ModelCheckpoint] == {"best_model_score": 0.5, "best_model_path": "a.ckpt"}
    assert checkpoint["callbacks"][EarlyStopping] == {"wait_count": 2, "patience": 3}
    fit_loop = checkpoint["loops"]["fit_loop"]
    assert fit_loop["epoch_progress"]["current"]["completed"] == 3
    assert fit_loop["epoch_loop.automatic_optimization.optim_progress"]["optimizer"]["step"]["total"]["completed"] == 30
    assert fit_loop["epoch_loop.state_dict"]["_batches_that_stepped"] == 0  # 1.6.0 wrote 0 first (so does Lightning)
    assert checkpoint["pytorch-lightning_version"] == "2.6.6"
    assert checkpoint["legacy_pytorch-lightning_version"] == "0.9.0"


def test_a_2x_checkpoint_is_left_as_it_is_but_its_version() -> None:
    checkpoint = old_checkpoints()[3]
    expected = {**copy.deepcopy(checkpoint), "pytorch-lightning_version": "2.6.6"}
    expected["legacy_pytorch-lightning_version"] = "2.1.0"
    assert migrate_checkpoint(checkpoint) == (expected, {})


def test_a_newer_checkpoint_warns_and_is_untouched() -> None:
    checkpoint = old_checkpoints()[4]
    with pytest.warns(UserWarning, match="produced with Lightning v2.9.0, which is newer"):
        assert migrate_checkpoint(checkpoint) == (old_checkpoints()[4], {})


LEGACY_SAVE = """
import sys, torch
from pytorch_lightning.utilities.parsing import AttributeDict
torch.save({"pytorch-lightning_version": "1.5.10", "epoch": 2, "global_step": 20, "state_dict": {"w": torch.ones(1)},
            "hyper_parameters": AttributeDict(lr=0.1)}, sys.argv[1])
"""
UPGRADE = """
import sys, torch
from fulgor.checkpoint_upgrade import main, pl_legacy_patch
main([sys.argv[1]])
with pl_legacy_patch():
    ckpt = torch.load(sys.argv[1], weights_only=False)
print(ckpt["pytorch-lightning_version"], ckpt["legacy_pytorch-lightning_version"], type(ckpt["hyper_parameters"]).__module__,
      ckpt["loops"]["fit_loop"]["epoch_progress"]["current"]["completed"], sorted(p.name for p in __import__("pathlib").Path(sys.argv[1]).parent.iterdir()))
"""  # noqa: E501


@pytest.mark.oracle
def test_the_upgrade_command_on_a_checkpoint_that_pickled_lightning_classes(tmp_path: Path) -> None:
    pytest.importorskip("pytorch_lightning")
    path = tmp_path / "old.ckpt"
    env = {k: v for k, v in ENV.items() if k != "PYTHONPATH"}
    made = subprocess.run([sys.executable, "-c", LEGACY_SAVE, str(path)], capture_output=True, text=True, env=env)
    assert made.returncode == 0, made.stderr
    proc = subprocess.run([sys.executable, "-c", UPGRADE, str(path)], capture_output=True, text=True, env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "2.6.6 1.5.10 fulgor.hparams 2 ['old.bak', 'old.ckpt']"


def test_the_upgrade_command_reports_a_missing_path(tmp_path: Path) -> None:
    code = "import sys; from fulgor.checkpoint_upgrade import main; main([sys.argv[1]])"
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "none")], capture_output=True, text=True, env=ENV, timeout=60
    )
    assert proc.returncode == 1
    assert f"The path {tmp_path / 'none'} does not exist" in proc.stderr
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, env=ENV)
    assert proc.returncode == 1
    assert "No checkpoint files with extension .ckpt were found" in proc.stderr


def test_upgrading_a_folder_keeps_backups_and_never_overwrites_them(tmp_path: Path) -> None:
    from fulgor.checkpoint_upgrade import upgrade

    (tmp_path / "sub").mkdir()
    for name in ("a.ckpt", "sub/b.ckpt"):
        torch.save(old_checkpoints()[3], tmp_path / name)
    (tmp_path / "a.bak").write_text("original")
    assert sorted(p.name for p in upgrade(tmp_path)) == ["a.ckpt", "b.ckpt"]
    assert (tmp_path / "a.bak").read_text() == "original"
    assert torch.load(tmp_path / "sub" / "b.bak")["pytorch-lightning_version"] == "2.1.0"
    assert torch.load(tmp_path / "sub" / "b.ckpt")["pytorch-lightning_version"] == "2.6.6"


def test_version_helpers_read_and_record_the_versions() -> None:
    checkpoint: dict[str, Any] = {"pytorch-lightning_version": "1.5.9"}
    assert get_version(checkpoint) == "1.5.9"
    set_legacy_version(checkpoint, "1.5.9")
    set_legacy_version(checkpoint, "1.7.0")  # the first version recorded stays
    set_version(checkpoint, "2.6.6")
    assert checkpoint == {"pytorch-lightning_version": "2.6.6", "legacy_pytorch-lightning_version": "1.5.9"}
