"""fulgor.plot: PNG curves from a metrics.csv (decoded back to images of the expected size, lines holding the logged
values) and the digit reconstruction grid."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

pytest.importorskip("matplotlib")
from PIL import Image

from fulgor.plot import main, metric_groups, plot_group, plot_metrics, reconstruction_grid


def _write_csv(path: Path) -> Path:
    """A CSVLogger-style file: step-level train loss, epoch-level val loss and accuracy, the epoch column."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [
        {"epoch": 0, "step": 0, "train_loss": 2.0},
        {"epoch": 0, "step": 1, "train_loss": 1.5},
        {"epoch": 0, "step": 1, "val_loss": 1.25, "val_acc": 0.5},
        {"epoch": 1, "step": 2, "train_loss": 1.0},
        {"epoch": 1, "step": 3, "train_loss": 0.75},
        {"epoch": 1, "step": 3, "val_loss": 0.5, "val_acc": 0.75},
    ]
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["epoch", "step", "train_loss", "val_acc", "val_loss"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_groups_pair_train_and_val_by_name(tmp_path: Path) -> None:
    groups = metric_groups(_write_csv(tmp_path / "metrics.csv"))
    assert groups == {
        "loss": {"train_loss": ([0, 1, 2, 3], [2.0, 1.5, 1.0, 0.75]), "val_loss": ([1, 3], [1.25, 0.5])},
        "acc": {"val_acc": ([1, 3], [0.5, 0.75])},
    }


def test_pngs_decode_to_640x480_and_lines_hold_the_values(tmp_path: Path) -> None:
    run = tmp_path / "lightning_logs" / "version_0"
    _write_csv(run / "metrics.csv")
    paths = plot_metrics(tmp_path / "lightning_logs")  # a log dir: the metrics.csv inside is found
    assert paths == [str(run / "acc.png"), str(run / "loss.png")]
    for path in paths:
        with Image.open(path) as image:
            assert (image.format, image.size) == ("PNG", (640, 480))
            assert sum(1 for count in image.convert("L").histogram() if count) > 10  # something was drawn
    fig = plot_group("loss", metric_groups(run / "metrics.csv")["loss"])
    lines = {line.get_label(): line.get_xydata().tolist() for line in fig.axes[0].lines}
    assert lines == {
        "train_loss": [[0, 2.0], [1, 1.5], [2, 1.0], [3, 0.75]],
        "val_loss": [[1, 1.25], [3, 0.5]],
    }
    assert fig.axes[0].get_xlabel() == "step"
    assert fig.axes[0].get_title() == "loss"


def test_out_dir_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv_path = _write_csv(tmp_path / "metrics.csv")
    assert main([str(csv_path), "--out-dir", str(tmp_path / "pics")]) == 0
    assert capsys.readouterr().out.splitlines() == [
        str(tmp_path / "pics" / "acc.png"),
        str(tmp_path / "pics" / "loss.png"),
    ]
    assert main([str(tmp_path / "nowhere")]) == 1
    assert "is neither a metrics.csv file nor a log directory" in capsys.readouterr().out


def test_reconstruction_grid_size_and_pixels(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    originals = torch.rand(6, 64, generator=generator) * 16
    path = reconstruction_grid(originals, originals.reshape(6, 8, 8) * 0.5, tmp_path / "grid.png")
    with Image.open(path) as image:
        assert image.size == (600, 220)
        assert sum(1 for count in image.convert("L").histogram() if count) > 10
    with pytest.raises(ValueError, match="Got 6 originals but 5 reconstructions"):
        reconstruction_grid(originals, originals[:5], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="square number of pixels"):
        reconstruction_grid(torch.zeros(2, 63), torch.zeros(2, 63), tmp_path / "bad.png")
