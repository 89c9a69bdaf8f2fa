"""The versioned run folder both file loggers share (`fulgor.loggers.versioning`): version numbering, names, string
versions, `~` and `$VARS`, fsspec URLs; the folder strings compared with Lightning's CSV and TensorBoard loggers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from fulgor import fs
from fulgor.loggers import CSVLogger
from fulgor.loggers.versioning import VersionedLogger, next_version


def _logger_classes() -> list[Any]:
    classes: list[Any] = [CSVLogger]
    try:
        from fulgor.loggers import TensorBoardLogger

        TensorBoardLogger(".")  # raises without tensorboard/tensorboardX
        classes.append(TensorBoardLogger)
    except ModuleNotFoundError:
        pass
    return classes


LOGGERS = _logger_classes()


def _make_existing(root: Path) -> None:
    (root / "lightning_logs" / "version_0").mkdir(parents=True)
    (root / "lightning_logs" / "version_3_old").mkdir()
    (root / "lightning_logs" / "version_x").mkdir()
    (root / "lightning_logs" / "version_").mkdir()
    (root / "lightning_logs" / "other_7").mkdir()
    (root / "lightning_logs" / "version_9").write_text("a file, not a version")


def test_next_version(tmp_path: Path) -> None:
    assert next_version(str(tmp_path / "missing")) == 0
    assert next_version(str(tmp_path)) == 0
    _make_existing(tmp_path)
    assert next_version(str(tmp_path / "lightning_logs")) == 4  # version_3_old counts as 3


@pytest.mark.parametrize("logger_cls", LOGGERS, ids=lambda cls: cls.__name__)
def test_folders(tmp_path: Path, logger_cls: Any) -> None:
    _make_existing(tmp_path)
    logger = logger_cls(tmp_path)
    assert isinstance(logger, VersionedLogger)
    assert (logger.name, logger.save_dir) == ("lightning_logs", str(tmp_path))
    assert logger.root_dir == str(tmp_path / "lightning_logs")
    assert logger.version == 4
    assert logger.log_dir == str(tmp_path / "lightning_logs" / "version_4")
    assert not (tmp_path / "lightning_logs" / "version_4").exists()  # nothing is created by asking
    (tmp_path / "lightning_logs" / "version_4").mkdir()
    assert logger.version == 4  # chosen once
    assert logger_cls(tmp_path).version == 5
    assert logger_cls(tmp_path, name=None).log_dir == os.path.join(str(tmp_path), "", "version_0")
    assert logger_cls(tmp_path, name="", version=2).root_dir == os.path.join(str(tmp_path), "")
    assert logger_cls(tmp_path, version="run_a").log_dir == str(tmp_path / "lightning_logs" / "run_a")
    assert logger_cls(tmp_path / "new", name="exp").version == 0


@pytest.mark.oracle
@pytest.mark.parametrize("logger_cls", LOGGERS, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"name": None},
        {"name": ""},
        {"name": "exp"},
        {"version": "run_a"},
        {"version": 7},
        {"name": None, "version": 1},
    ],
)
def test_folders_match_lightning(tmp_path: Path, logger_cls: Any, kwargs: dict[str, Any]) -> None:
    pl_loggers = pytest.importorskip("pytorch_lightning.loggers")
    _make_existing(tmp_path)
    (tmp_path / "exp" / "version_11").mkdir(parents=True)
    (tmp_path / "version_2").mkdir()
    ours = logger_cls(tmp_path, **kwargs)
    theirs = getattr(pl_loggers, logger_cls.__name__)(tmp_path, **kwargs)  # same folder: nothing is written yet
    for attribute in ("name", "version", "save_dir", "root_dir", "log_dir"):
        assert getattr(ours, attribute) == getattr(theirs, attribute), attribute


def _home_run(lib: Any, logger_name: str, root: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, ...]:
    """A logger on "~/logs" with HOME=root/home and the working directory root/cwd: its folder strings."""
    (root / "home" / "logs" / "lightning_logs" / "version_5").mkdir(parents=True)
    (root / "cwd").mkdir()
    monkeypatch.setenv("HOME", str(root / "home"))
    monkeypatch.chdir(root / "cwd")
    logger = getattr(lib, logger_name)("~/logs")
    strings = (logger.version, logger.root_dir, logger.log_dir)
    logger.log_hyperparams({"lr": 0.1})
    logger.log_metrics({"a": 1.0}, step=0)
    logger.finalize("success")
    return strings


def _tree(root: Path) -> list[str]:
    paths = (p.relative_to(root) for p in root.rglob("*"))
    # Event file names hold a time, host and pid; dot-folders are caches the imported packages leave in HOME.
    return sorted(str(p).split("events.out")[0] for p in paths if not any(part.startswith(".") for part in p.parts))


@pytest.mark.oracle
@pytest.mark.parametrize("logger_cls", LOGGERS, ids=lambda cls: cls.__name__)
def test_home_directory_like_lightning(tmp_path: Path, logger_cls: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    pl_loggers = pytest.importorskip("pytorch_lightning.loggers")
    import fulgor.loggers

    ours = _home_run(fulgor.loggers, logger_cls.__name__, tmp_path / "ours", monkeypatch)
    theirs = _home_run(pl_loggers, logger_cls.__name__, tmp_path / "theirs", monkeypatch)
    assert ours[:2] == theirs[:2] == (6, "~/logs/lightning_logs")
    assert ours[2].replace(str(tmp_path / "ours"), "") == theirs[2].replace(str(tmp_path / "theirs"), "")
    tree = _tree(tmp_path / "ours")
    assert tree == _tree(tmp_path / "theirs")
    assert "cwd/~" not in tree  # "~" is the home directory, not a folder named "~"
    assert "home/logs/lightning_logs/version_6/hparams.yaml" in tree


def test_tensorboard_expands_variables_in_log_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fulgor.loggers import TensorBoardLogger

    monkeypatch.setenv("RUNS", str(tmp_path / "runs"))
    (tmp_path / "runs" / "logs" / "lightning_logs" / "version_2").mkdir(parents=True)
    logger = TensorBoardLogger("$RUNS/logs", sub_dir="sub")
    assert logger.root_dir == "$RUNS/logs/lightning_logs"  # as Lightning: expanded in log_dir only
    # Lightning counts versions in a literal "$RUNS" folder, so always picks 0; fulgor counts where the files go.
    assert logger.version == 3
    assert logger.log_dir == str(tmp_path / "runs" / "logs" / "lightning_logs" / "version_3" / "sub")
    logger.log_metrics({"a": 1.0}, step=0)
    logger.finalize("success")
    assert not (tmp_path / "$RUNS").exists()  # Lightning leaves an empty "$RUNS/logs/lightning_logs" in the cwd
    assert (Path(logger.log_dir) / "hparams.yaml").is_file()


@pytest.mark.oracle
def test_csv_leaves_variables_alone_like_lightning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pl_loggers = pytest.importorskip("pytorch_lightning.loggers")
    monkeypatch.setenv("RUNS", str(tmp_path / "runs"))
    for lib, root in ((pl_loggers, tmp_path / "theirs"), (CSVLogger, tmp_path / "ours")):
        root.mkdir()
        monkeypatch.chdir(root)
        logger = lib("$RUNS") if lib is CSVLogger else lib.CSVLogger("$RUNS")
        assert logger.log_dir == os.path.join("$RUNS", "lightning_logs", "version_0")
        logger.log_metrics({"a": 1.0}, step=0)
        logger.finalize("success")
    assert (
        _tree(tmp_path / "ours")
        == _tree(tmp_path / "theirs")
        == [
            "$RUNS",
            "$RUNS/lightning_logs",
            "$RUNS/lightning_logs/version_0",
            "$RUNS/lightning_logs/version_0/metrics.csv",
        ]
    )


@pytest.mark.parametrize("logger_cls", LOGGERS, ids=lambda cls: cls.__name__)
def test_url_save_dir(logger_cls: Any) -> None:
    pytest.importorskip("fsspec")
    root = "memory://versioning-test"
    fs.makedirs(f"{root}/lightning_logs/version_1_old")
    fs.makedirs(f"{root}/lightning_logs/version_x")
    try:
        logger = logger_cls(root)
        assert logger.root_dir == f"{root}/lightning_logs"
        assert logger.version == 2
        assert logger.log_dir == f"{root}/lightning_logs/version_2"
        assert logger_cls(root, name=None, version="v").log_dir == f"{root}/v"
        logger.log_hyperparams({"lr": 0.1})
        logger.log_metrics({"a": 1.0}, step=0)
        logger.finalize("success")
        assert logger_cls(root).version == 3
        assert "hparams.yaml" in fs.listdir(logger.log_dir)
    finally:
        fs.get_filesystem(root).rm(root, recursive=True)
