"""Differential checks of the early flag checks against pytorch-lightning 2.6.6: every configuration Lightning accepts
as legitimate is accepted by fulgor too (no false alarms), and the misuses fulgor refuses at construction are ones
Lightning lets through to fail later or silently (fulgor's deliberate difference, listed for docs/differences.md)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

import fulgor

pl = pytest.importorskip("pytorch_lightning")

pytestmark = pytest.mark.oracle

QUIET = {"enable_progress_bar": False, "enable_model_summary": False}

LEGITIMATE: list[dict[str, Any]] = [
    {"max_epochs": -1},
    {"max_epochs": 0},
    {"max_epochs": None, "max_steps": 10},
    {"min_epochs": 0, "max_epochs": 0},
    {"min_epochs": 3, "max_epochs": -1},
    {"min_epochs": 2, "max_epochs": 2},
    {"min_steps": 5, "max_steps": -1},
    {"min_steps": 5, "max_steps": 5},
    {"log_every_n_steps": 0},
    {"log_every_n_steps": None},
    {"num_sanity_val_steps": -1},
    {"num_sanity_val_steps": 0},
    {"fast_dev_run": True},
    {"fast_dev_run": 3},
    {"reload_dataloaders_every_n_epochs": 2},
    {"gradient_clip_val": 0},
    {"gradient_clip_val": 0.5, "gradient_clip_algorithm": "value"},
    {"enable_checkpointing": None, "enable_progress_bar": None, "enable_model_summary": None},
    {"benchmark": None, "deterministic": "warn"},
    {"inference_mode": False, "detect_anomaly": True},
    {"logger": True},
    {"logger": None},
    {"logger": []},
    {"callbacks": []},
]


def _build(module: Any, root: Path, kw: dict[str, Any]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module.Trainer(default_root_dir=str(root), **{**QUIET, **kw})


@pytest.mark.parametrize("kw", LEGITIMATE, ids=[repr(k) for k in LEGITIMATE])
def test_what_lightning_accepts_fulgor_accepts(tmp_path: Path, kw: dict[str, Any]) -> None:
    _build(pl, tmp_path / "pl", kw)
    _build(fulgor, tmp_path / "fulgor", kw)


def test_a_callback_and_a_logger_instance_and_lists_are_accepted(tmp_path: Path) -> None:
    for module in (pl, fulgor):
        stop = module.callbacks.EarlyStopping(monitor="x")
        csv = module.loggers.CSVLogger(str(tmp_path))
        _build(module, tmp_path, {"callbacks": stop, "logger": csv})
        _build(module, tmp_path, {"callbacks": [stop], "logger": [csv, module.loggers.CSVLogger(str(tmp_path))]})


REFUSED_EARLY_ONLY_BY_FULGOR: list[dict[str, Any]] = [
    {"max_epochs": "5"},
    {"log_every_n_steps": -1},
    {"min_epochs": 5, "max_epochs": 2},
    {"min_steps": 10, "max_steps": 5},
    {"num_sanity_val_steps": -2},
    {"gradient_clip_val": -1.0},
    {"inference_mode": "x"},
    {"fast_dev_run": 1.5},
]


@pytest.mark.parametrize("kw", REFUSED_EARLY_ONLY_BY_FULGOR, ids=[repr(k) for k in REFUSED_EARLY_ONLY_BY_FULGOR])
def test_misuses_lightning_lets_through_are_refused_by_fulgor(tmp_path: Path, kw: dict[str, Any]) -> None:
    _build(pl, tmp_path / "pl", kw)  # Lightning builds the Trainer: the mistake shows later, or never
    with pytest.raises((TypeError, fulgor.errors.MisconfigurationException)) as caught:
        _build(fulgor, tmp_path / "fulgor", kw)
    assert f"Trainer({next(iter(kw))}=" in str(caught.value)
