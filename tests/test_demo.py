"""The `fulgor demo` command (through `fulgor.cli.main`), its error when scikit-learn is missing, and what
`import fulgor` must not import."""

from __future__ import annotations

import csv
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from fulgor.cli import main
from helpers.core_only import hide_optional


@pytest.fixture(autouse=True)
def _restore_process_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("PL_GLOBAL_SEED", "")  # seed_everything writes it; monkeypatch restores it afterwards
    monkeypatch.delenv("PL_TRAINER_MAX_EPOCHS", raising=False)
    state = torch.random.get_rng_state()
    yield
    torch.random.set_rng_state(state)


def test_quick_demo_trains_tests_predicts_and_logs(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="fulgor")
    hide_optional(monkeypatch)  # as on a plain install: the tqdm bar and the plain summary table asserted below
    threads = torch.get_num_threads()
    assert main(["demo", "--quick", "--root", str(tmp_path)]) == 0
    assert torch.get_num_threads() == threads  # the demo's single-thread setting does not leak
    out = capsys.readouterr()
    log_dir = tmp_path / "lightning_logs" / "version_0"
    with (log_dir / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert set(rows[0]) == {"epoch", "step", "train_loss_step", "train_loss_epoch", "val_loss", "test_loss"}
    train = [float(r["train_loss_epoch"]) for r in rows if r["train_loss_epoch"]]
    val = [float(r["val_loss"]) for r in rows if r["val_loss"]]
    test = [float(r["test_loss"]) for r in rows if r["test_loss"]]
    assert len(train) == len(val) == 3  # --quick: 3 epochs
    assert len(test) == 1
    assert train[0] > train[1] > train[2]
    assert val[0] > val[1] > val[2]
    assert test[0] < val[0]
    # 38 training batches per epoch: the epoch rows are at steps 37, 75, 113; step rows every 10 steps.
    assert sorted({int(r["step"]) for r in rows if r["val_loss"]}) == [37, 75, 113]
    assert [int(r["step"]) for r in rows if r["train_loss_step"]] == [9, 19, 29, 39, 49, 59, 69, 79, 89, 99, 109]
    assert (log_dir / "hparams.yaml").read_text() == "lr: 0.001\n"
    assert (log_dir / "checkpoints" / "epoch=2-step=114.ckpt").is_file()
    report = out.out
    assert "fulgor demo: LitAutoEncoder on scikit-learn's 8x8 digits" in report
    assert f"train loss (last epoch): {train[-1]:.4f}" in report
    assert f"val loss:  {val[0]:.4f} after epoch 0 -> {val[-1]:.4f} at the end" in report
    assert f"test loss: {test[0]:.4f}" in report
    assert "predict:   297 codes of size 3 (one per test digit)" in report
    assert f"logs:      {log_dir}" in report
    assert "/." not in report  # hidden files (a checkpoint's checksum/temp files) are not listed
    assert f"checkpoint: {log_dir / 'checkpoints' / 'epoch=2-step=114.ckpt'}" in report
    assert re.search(r"time: +[\d.]+ s for 3 epochs", report)
    assert "0 | encoder | Encoder | 4.4 K  | train | 8.6 K | [1, 64]  | [1, 3]" in caplog.text  # the model summary
    assert "Epoch 2: 100%|██████████| 38/38" in out.out  # the progress bar (stdout, like Lightning's)


def test_demo_epochs_flag_and_bad_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--epochs", "1", "--root", str(tmp_path)]) == 0
    assert "time:" in capsys.readouterr().out
    assert (tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "epoch=0-step=38.ckpt").is_file()
    assert main(["demo", "--epochs", "0", "--root", str(tmp_path)]) == 2
    assert "--epochs must be >= 1, got 0" in capsys.readouterr().err


def test_demo_without_scikit_learn_names_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    assert main(["demo", "--quick", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "scikit-learn is not installed" in err
    assert "pip install scikit-learn" in err
    assert not (tmp_path / "lightning_logs").exists()


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert "usage: fulgor" in capsys.readouterr().out


def test_python_dash_m_fulgor_runs_the_cli() -> None:
    command = [sys.executable, "-m", "fulgor", "demo", "--help"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "usage: fulgor demo [-h] [--epochs EPOCHS] [--root ROOT] [--quick]" in proc.stdout


HEAVY = ("sklearn", "matplotlib", "tensorboard", "rich", "jsonargparse", "pytorch_lightning", "lightning", "pandas",
         "fulgor.cli", "fulgor.demo")  # fmt: skip


def test_import_fulgor_stays_light() -> None:
    code = f"import sys, fulgor; print([m for m in {HEAVY!r} if m in sys.modules])"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
