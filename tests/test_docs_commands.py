"""The commands the docs tell a newcomer to run behave as described: `fulgor verify-resume` on an unchanged Lightning
script (short output, `--verbose` for the transcripts), `--root` of a missing folder in the examples, `fulgor plot`'s
help and pictures, and the demo's closing report."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fulgor import cli, demo, plot

ROOT = Path(__file__).resolve().parents[1]

LIGHTNING_SCRIPT = """
import torch
from torch.utils.data import DataLoader, TensorDataset
import pytorch_lightning as pl


class Model(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.01)


if __name__ == "__main__":
    pl.seed_everything(0)
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(24, 4, generator=g), torch.randn(24, 1, generator=g))
    trainer = pl.Trainer(max_epochs=2, logger=False)
    trainer.fit(Model(), DataLoader(data, batch_size=4, shuffle=True))
"""


def shape(line: str) -> str:
    """A printed line with its numbers and lists of numbers blanked."""
    return re.sub(r"\d+", "N", re.sub(r"\[[\d, ]*\]", "[L]", line))


def env() -> dict[str, str]:
    e = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    e.pop("PL_TRAINER_MAX_EPOCHS", None)
    return e


def test_verify_resume_runs_an_unchanged_lightning_script_and_reports_briefly(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(LIGHTNING_SCRIPT)
    workdir = tmp_path / "work"
    command = [sys.executable, "-m", "fulgor", "verify-resume", "--kills", "1", "--workdir", str(workdir), str(script)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "verify-resume: uninterrupted run ..."
    assert lines[-1] == "verify-resume: final weights and optimizer states are bit-identical."
    assert lines[-2].startswith("verify-resume: stopped at steps [")
    assert lines[-2].endswith("] of 12 and resumed each time.")
    assert len(lines) == 5  # progress, one stop, the resume, the verdict (2 lines): no training transcripts
    assert "Epoch" not in proc.stdout + proc.stderr
    assert "GPU available" not in proc.stdout + proc.stderr
    # docs/cli.md shows this output (with other stop steps): every printed line has the shape of a line shown there.
    shown = (ROOT / "docs" / "cli.md").read_text().split("verify-resume: uninterrupted run ...", 1)[1].split("```")[0]
    shapes = {shape(line) for line in ["verify-resume: uninterrupted run ...", *shown.splitlines()]}
    assert {shape(line) for line in lines} <= shapes
    logs = sorted(p.name for p in workdir.glob("*.log"))
    assert len(logs) == 3
    assert {"reference-stop0.log", "resumed-stop0.log"} <= set(logs)
    assert "GPU available" in (workdir / "reference-stop0.log").read_text()  # the transcript is kept, not shown


def test_verify_resume_help_is_short_and_offers_verbose(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["verify-resume", "--help"])
    out = capsys.readouterr().out
    assert "--verbose" in out
    assert "bit-identical" in out
    assert "Args:" not in out
    assert "Returns:" not in out


def test_verify_resume_shows_a_failed_runs_output(tmp_path: Path) -> None:
    script = tmp_path / "broken.py"
    script.write_text("import pytorch_lightning as pl\nraise ValueError('boom in the script')\n")
    command = [sys.executable, "-m", "fulgor", "verify-resume", "--workdir", str(tmp_path / "w"), str(script)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env())
    assert proc.returncode == 2
    assert "ValueError: boom in the script" in proc.stderr
    assert "verify-resume: the uninterrupted run failed (exit code 1)." in proc.stderr


def test_an_example_creates_a_missing_root(tmp_path: Path) -> None:
    root = tmp_path / "not" / "there"
    script = ROOT / "examples" / "s2_3_early_stopping.py"
    helper = ROOT / "tests" / "helpers" / "core_only.py"
    proc = subprocess.run(
        [sys.executable, str(helper), str(script), "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env(),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (root / "lightning_logs").is_dir()


def test_plot_help_is_a_short_description(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["plot", "--help"])
    out = capsys.readouterr().out
    for docstring_part in ("Args:", "Returns:", "Example::", "plot_metrics("):
        assert docstring_part not in out
    assert "Write one PNG (640x480) per metric group" in out


def test_the_loss_picture_names_its_axis_and_run_and_shows_a_single_test_point(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    series = {"train_loss": ([9, 19, 29], [1.0, 0.8, 0.7]), "val_loss": ([29], [0.75]), "test_loss": ([29], [0.74])}
    series["val_loss"] = ([9, 29], [0.9, 0.75])
    fig = plot.plot_group("loss", series, "lightning_logs/version_3")
    (ax,) = fig.axes
    assert ax.get_ylabel() == "loss"
    assert ax.get_xlabel() == "step"
    assert ax.get_title() == "loss (lightning_logs/version_3)"
    lines = {line.get_label(): line for line in ax.get_lines()}
    test_point = lines["test_loss"]
    assert test_point.get_marker() == "*"
    assert test_point.get_markersize() >= 10
    assert test_point.get_zorder() > max(lines[n].get_zorder() for n in ("train_loss", "val_loss"))
    assert ax.get_lines()[-1] is test_point  # drawn last, on top of the validation point at the same step
    log_dir = tmp_path / "lightning_logs" / "version_3"
    log_dir.mkdir(parents=True)
    assert plot._run_name(str(log_dir / "metrics.csv")) == os.path.join("lightning_logs", "version_3")


def test_the_demo_report_hides_hidden_files_and_counts_epochs_from_zero(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    for name in (
        "metrics.csv",
        "hparams.yaml",
        "checkpoints/epoch=2-step=114.ckpt",
        "checkpoints/.epoch=2-step=114.ckpt.sha256",
        ".hidden",
    ):
        (tmp_path / name).write_text("x")
    files = demo._visible_files(tmp_path)
    assert [Path(f).name for f in files] == ["epoch=2-step=114.ckpt", "hparams.yaml", "metrics.csv"]
    result = demo.DemoResult(0.1, 0.2, 0.3, 0.5, 297, str(tmp_path), files)
    report = demo.format_report(result)
    assert "val loss:  0.5000 after epoch 0 -> 0.2000 at the end" in report  # "Epoch 0" is the bar's first epoch
    assert ".sha256" not in report
    assert ".hidden" not in report
