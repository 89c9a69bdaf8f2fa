"""CSVLogger: directory/version layout and metrics.csv / hparams.yaml bytes, compared with Lightning's CSVLogger."""

from __future__ import annotations

import importlib.util
import os
import warnings
from argparse import Namespace
from pathlib import Path
from typing import Any

import pytest
import torch

from fulgor.loggers import CSVLogger, DummyExperiment, DummyLogger, Logger
from fulgor.rank import rank_zero_only


def _drive(logger: Any, steps: int = 250) -> None:
    """One run: hparams, `steps` metric rows (a new key appears mid-run, tensors included), flushes, finalize."""
    logger.log_hyperparams({"lr": 0.1, "name": "x", "layers": [1, 2], "nested": {"a": 1}})
    logger.log_hyperparams(Namespace(bs=4))
    for step in range(steps):
        row: dict[str, Any] = {"loss": 1.0 / (step + 1), "acc": torch.tensor(step / 7.0)}
        if step >= 120:
            row["val/b"] = step * 0.5
        if step % 50 == 49:
            row["epoch"] = step // 50
        logger.log_metrics(row, step=step)
    logger.log_metrics({"late": 3})  # step=None: Lightning uses the number of buffered rows
    logger.save()
    logger.finalize("success")


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _make_existing(root: Path) -> None:
    (root / "lightning_logs" / "version_0").mkdir(parents=True)
    (root / "lightning_logs" / "version_3_old").mkdir()
    (root / "lightning_logs" / "version_x").mkdir()
    (root / "lightning_logs" / "version_9").write_text("a file, not a version")


@pytest.mark.oracle
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"name": None},
        {"name": ""},
        {"version": "run_a"},
        {"version": 5, "prefix": "train", "flush_logs_every_n_steps": 7},
        {"name": "exp", "flush_logs_every_n_steps": 1},
    ],
)
def test_files_identical_to_lightning(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    pl_loggers = pytest.importorskip("pytorch_lightning.loggers")
    ours_root, theirs_root = tmp_path / "ours", tmp_path / "theirs"
    for root in (ours_root, theirs_root):
        _make_existing(root)
    ours = CSVLogger(ours_root, **kwargs)
    theirs = pl_loggers.CSVLogger(theirs_root, **kwargs)
    assert ours.version == theirs.version
    assert ours.name == theirs.name
    assert os.path.relpath(ours.log_dir, ours_root) == os.path.relpath(theirs.log_dir, theirs_root)
    assert os.path.relpath(ours.root_dir, ours_root) == os.path.relpath(theirs.root_dir, theirs_root)
    _drive(ours)
    _drive(theirs)
    assert _tree(ours_root) == _tree(theirs_root)
    for file in ("metrics.csv", "hparams.yaml"):
        assert (Path(ours.log_dir) / file).read_bytes() == (Path(theirs.log_dir) / file).read_bytes()


@pytest.mark.oracle
def test_flush_cadence_matches_lightning(tmp_path: Path) -> None:
    pl_loggers = pytest.importorskip("pytorch_lightning.loggers")
    ours = CSVLogger(tmp_path / "ours", flush_logs_every_n_steps=10)
    theirs = pl_loggers.CSVLogger(tmp_path / "theirs", flush_logs_every_n_steps=10)
    for step in range(25):
        row = {"a": float(step)} if step < 12 else {"a": float(step), "b": 1.5}
        ours.log_metrics(row, step=step)
        theirs.log_metrics(row, step=step)
        ours_file, theirs_file = Path(ours.log_dir, "metrics.csv"), Path(theirs.log_dir, "metrics.csv")
        assert ours_file.exists() == theirs_file.exists()
        if ours_file.exists():
            assert ours_file.read_bytes() == theirs_file.read_bytes()


def test_metrics_csv_layout(tmp_path: Path) -> None:
    logger = CSVLogger(tmp_path, flush_logs_every_n_steps=2)
    logger.log_metrics({"loss": 0.5}, step=0)
    assert not Path(logger.log_dir, "metrics.csv").exists()  # buffered until (step + 1) % 2 == 0
    logger.log_metrics({"loss": 0.25, "epoch": 0}, step=1)
    assert Path(logger.log_dir, "metrics.csv").read_text() == "epoch,loss,step\n,0.5,0\n0,0.25,1\n"
    logger.log_metrics({"acc": torch.tensor(0.75)}, step=2)
    logger.finalize("success")
    # the new column rewrites the file under the new, sorted header
    assert Path(logger.log_dir, "metrics.csv").read_bytes() == (
        b"acc,epoch,loss,step\r\n,,0.5,0\r\n,0,0.25,1\r\n0.75,,,2\r\n"
    )
    assert logger.log_dir == str(tmp_path / "lightning_logs" / "version_0")


def test_versions_and_dirs(tmp_path: Path) -> None:
    _make_existing(tmp_path)
    logger = CSVLogger(tmp_path)
    assert logger.version == 4  # version_3_old counts as 3, like Lightning; files and non-numbers do not count
    assert logger.root_dir == str(tmp_path / "lightning_logs")
    assert logger.save_dir == str(tmp_path)
    assert CSVLogger(tmp_path, name=None).log_dir == os.path.join(str(tmp_path), "", "version_0")
    assert CSVLogger(tmp_path / "new").version == 0
    assert CSVLogger(tmp_path, version="abc").log_dir == str(tmp_path / "lightning_logs" / "abc")
    assert logger.group_separator == "/"
    assert not (tmp_path / "lightning_logs" / "version_4").exists()  # nothing created before first use
    assert logger.experiment.log_dir == logger.log_dir
    assert (tmp_path / "lightning_logs" / "version_4").is_dir()


def test_hparams_yaml(tmp_path: Path) -> None:
    logger = CSVLogger(tmp_path)
    logger.log_hyperparams({"lr": 0.1, "name": "x"})
    logger.log_hyperparams({"bs": 4})
    # Lightning's order: insertion order through OmegaConf.save when omegaconf is installed, else sorted
    lines = ["lr: 0.1\n", "name: x\n", "bs: 4\n"]
    expected = lines if importlib.util.find_spec("omegaconf") else sorted(lines)
    assert Path(logger.log_dir, "hparams.yaml").read_text() == "".join(expected)
    assert not Path(logger.log_dir, "metrics.csv").exists()
    logger.finalize("success")  # nothing logged: no metrics.csv
    assert sorted(os.listdir(logger.log_dir)) == ["hparams.yaml"]


def test_existing_dir_warns_and_drops_old_metrics(tmp_path: Path) -> None:
    first = CSVLogger(tmp_path, version=0)
    first.log_metrics({"a": 1.0}, step=0)
    first.save()
    second = CSVLogger(tmp_path, version=0)
    with pytest.warns(UserWarning, match="exists and is not empty. Previous log files in this directory will be"):
        second.experiment  # noqa: B018
    assert not Path(second.log_dir, "metrics.csv").exists()


def test_finalize_without_experiment_creates_nothing(tmp_path: Path) -> None:
    logger = CSVLogger(tmp_path)
    logger.finalize("success")
    assert list(tmp_path.iterdir()) == []


def test_non_zero_rank_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    logger = CSVLogger(tmp_path)
    assert isinstance(logger.experiment, DummyExperiment)
    logger.log_hyperparams({"a": 1})
    logger.log_metrics({"a": 1.0}, step=99)
    logger.save()
    logger.finalize("success")
    assert list(tmp_path.iterdir()) == []


def test_dummy_logger_accepts_everything() -> None:
    logger = DummyLogger()
    assert isinstance(logger, Logger)
    assert (logger.name, logger.version, logger.save_dir, logger.log_dir) == ("", "", None, None)
    assert logger.log_metrics({"a": 1.0}, step=3) is None
    assert logger.experiment.add_image("x", 1) is None
    assert logger.experiment[0].anything() is None
    assert logger.some_custom_method(1, k=2) is None
    assert logger[0] is logger


def test_logger_base_defaults() -> None:
    calls: list[str] = []

    class Mine(Logger):
        name = "n"  # type: ignore[assignment]
        version = 1  # type: ignore[assignment]

        def log_metrics(self, metrics: Any, step: int | None = None) -> None:
            calls.append("metrics")

        def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
            calls.append("hparams")

        def save(self) -> None:
            calls.append("save")

    mine = Mine()
    mine.finalize("success")  # default finalize saves
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mine.log_graph(torch.nn.Linear(1, 1))
        mine.after_save_checkpoint(object())
    assert calls == ["save"]
    assert (mine.root_dir, mine.log_dir, mine.save_dir, mine.group_separator) == (None, None, None, "/")
    with pytest.raises(TypeError, match="abstract"):
        Logger()  # type: ignore[abstract]
