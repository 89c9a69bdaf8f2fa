"""The validate/test results table: exact text, and identical to Lightning 2.6.6's plain-text table."""

from __future__ import annotations

import io
import os
import shutil
import sys
from typing import Any

import pytest
import torch

from fulgor.trainer.results_table import format_results_table, print_results_table

SPEC_RESULTS = [
    {
        "v/dataloader_idx_0": 0.800000011920929,
        "vs_epoch/dataloader_idx_0": 0.800000011920929,
        "vsum/dataloader_idx_0": 3.0,
    },
    {
        "v/dataloader_idx_1": 0.3333333432674408,
        "vs_epoch/dataloader_idx_1": 0.3333333432674408,
        "vsum/dataloader_idx_1": 2.0,
    },
]


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Set the terminal width seen by both fulgor and Lightning (both ask `shutil.get_terminal_size`)."""

    def set_width(columns: int) -> None:
        size = os.terminal_size((columns, 30))
        monkeypatch.setattr(shutil, "get_terminal_size", lambda fallback=(80, 24): size)

    set_width(120)
    return set_width


def test_spec_example_exact_text(terminal: Any) -> None:
    rule = "─" * 120
    expected = "\n".join(
        [
            rule,
            "     Validate metric           DataLoader 0             DataLoader 1",
            rule,
            "            v                0.800000011920929       0.3333333432674408",
            "        vs_epoch             0.800000011920929       0.3333333432674408",
            "          vsum                      3.0                      2.0",
            rule,
        ]
    )
    assert format_results_table(SPEC_RESULTS, "validate") == expected


def test_test_stage_header_missing_values_and_tensors(terminal: Any) -> None:
    terminal(80)
    results = [{"b": torch.tensor(1.5), "a": 2}, {"a": torch.tensor([1.0, 2.0])}]
    text = format_results_table(results, "test")
    assert text.splitlines() == [
        "─" * 80,
        "       Test metric             DataLoader 0             DataLoader 1",
        "─" * 80,
        "            a                        2                   [1.0, 2.0]",
        "            b                       1.5",
        "─" * 80,
    ]


def test_nothing_logged_prints_nothing(terminal: Any, capsys: pytest.CaptureFixture[str]) -> None:
    print_results_table([{}], "validate")
    assert format_results_table([{}, {}], "test") == ""
    assert capsys.readouterr().out == ""


def test_ascii_console_uses_dashes(terminal: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BytesIO(), encoding="ascii"))
    assert format_results_table([{"x": 1.0}], "validate").splitlines()[0] == "-" * 120


# ---- oracle: byte-identical to Lightning's `_EvaluationLoop._print_results` (plain-text path) ----

ORACLE_CASES = {
    "spec": (SPEC_RESULTS, "validate", 120),
    "test_one_loader": ([{"test_loss": 0.25, "test_acc": 0.875}], "test", 120),
    "missing_and_tensors": ([{"b": torch.tensor(1.5), "a": 2}, {"a": torch.tensor([1.0, 2.0]), "c": 3.0}], "test", 100),
    "narrow_terminal_splits": ([{"m": float(i)} for i in range(4)], "validate", 80),
    "long_name_wraps": ([{"x" * 70: 0.5, "short": 1.0}], "validate", 100),
    "long_name_two_loaders_split": ([{"n" * 40: 1.0}, {"n" * 40: 2.0, "m": 3.0}], "test", 60),
    "long_name_widens_columns": ([{"a_rather_long_metric_name_over_25": 1.0}, {}], "test", 120),
    "nested_dict": ([{"outer": {"inner": 1.0, "z": 2.0}, "plain": 3.0}], "validate", 120),
}


@pytest.mark.oracle
@pytest.mark.parametrize("case", sorted(ORACLE_CASES))
def test_matches_lightning(case: str, terminal: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    pytest.importorskip("pytorch_lightning")
    import pytorch_lightning.loops.evaluation_loop as pl_eval

    results, stage, width = ORACLE_CASES[case]
    terminal(width)
    monkeypatch.setattr(pl_eval, "_RICH_AVAILABLE", False)
    pl_eval._EvaluationLoop._print_results([dict(r) for r in results], stage)
    expected = capsys.readouterr().out
    print_results_table(results, stage)
    assert capsys.readouterr().out == expected
    assert expected  # every case prints a table
