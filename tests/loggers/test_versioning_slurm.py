"""The default logger's version folder under SLURM, as Lightning picks it: `version_<SLURM_JOB_ID>` whenever the
job id is an integer and the job is not interactive (`bash`/`interactive`), else the next free `version_N`."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import pytest

import fulgor

CASES = [
    ({"SLURM_JOB_ID": "123"}, "version_123"),
    ({"SLURM_JOB_ID": "123", "SLURM_NTASKS": "1"}, "version_123"),
    ({"SLURM_JOB_ID": "7", "SLURM_JOB_NAME": "bash"}, "version_0"),
    ({"SLURM_JOB_ID": "7", "SLURM_JOB_NAME": "interactive"}, "version_0"),
    ({"SLURM_JOB_ID": "abc", "SLURM_NTASKS": "1"}, "version_0"),
    ({}, "version_0"),
]


def _log_dir(lib: Any, root: Path) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = lib.Trainer(default_root_dir=root, enable_progress_bar=False, accelerator="cpu", devices=1)
    return os.path.relpath(trainer.logger.log_dir, root)


@pytest.fixture
def slurm_env(monkeypatch: pytest.MonkeyPatch) -> Any:
    for key in ("SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_JOB_NAME", "SLURM_ARRAY_JOB_ID"):
        monkeypatch.delenv(key, raising=False)

    def set_env(env: dict[str, str]) -> None:
        for key, value in env.items():
            monkeypatch.setenv(key, value)

    return set_env


@pytest.mark.parametrize(("env", "folder"), CASES)
def test_default_logger_version_under_slurm(tmp_path: Path, slurm_env: Any, env: dict[str, str], folder: str) -> None:
    slurm_env(env)
    assert _log_dir(fulgor, tmp_path) == os.path.join("lightning_logs", folder)


@pytest.mark.oracle
@pytest.mark.parametrize(("env", "folder"), CASES)
def test_same_folder_as_lightning(tmp_path: Path, slurm_env: Any, env: dict[str, str], folder: str) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    slurm_env(env)
    assert _log_dir(pl, tmp_path / "pl") == _log_dir(fulgor, tmp_path / "fulgor")
