"""The plain-text results table printed after ``trainer.validate()`` / ``trainer.test()``, as Lightning 2.6.6 prints
it without ``rich``: one row per metric (sorted, ``/dataloader_idx_N`` stripped), one column per dataloader."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch

__all__ = ["format_results_table", "print_results_table"]

_MIN_COLUMN_WIDTH = 25


def _paths(data: Mapping[str, Any]) -> Iterator[tuple[str, ...]]:
    """Key paths of the leaves of a (possibly nested) metrics dict."""
    for key, value in data.items():
        if isinstance(value, Mapping):
            for sub in _paths(value):
                yield (key, *sub)
        else:
            yield (key,)


def _lookup(data: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(data, Mapping) or key not in data:
            return None
        data = data[key]
    return data


def _cell(value: Any) -> str:
    if value is None:
        return " "
    if isinstance(value, torch.Tensor):
        value = value.item() if value.numel() == 1 else value.tolist()
    return f"{value}"


def _rule_character() -> str:
    # Some consoles (e.g. cp1252 on Windows) cannot encode the box-drawing character.
    encoding = getattr(sys.stdout, "encoding", None)
    if encoding is None:
        return "─"
    try:
        "─".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return "-"
    return "─"


def format_results_table(results: Sequence[Mapping[str, Any]], stage: str) -> str:
    """The table Lightning prints after ``validate``/``test`` (empty string when nothing was logged).

    Args:
        results: one metrics dict per dataloader, as returned by ``trainer.validate()``/``trainer.test()``.
        stage: ``"validate"`` or ``"test"``; the first header is ``"Validate metric"`` / ``"Test metric"``.

    Returns:
        The table: rules as wide as the terminal (120 when stdout is not a terminal), columns centred in a width of
        ``min(max(longest name, longest header, 25), terminal_width / 2)``, blank cells for missing values.
    """
    results = [{key.split("/dataloader_idx_")[0]: value for key, value in r.items()} for r in results]
    paths = sorted({(":".join(path), path) for r in results for path in _paths(r)})
    if not paths:
        return ""
    names = [name for name, _ in paths]
    headers = [f"DataLoader {i}" for i in range(len(results))]
    term_width = shutil.get_terminal_size(fallback=(120, 30)).columns or 120
    longest = max(max(len(name) for name in names), max(len(header) for header in headers), _MIN_COLUMN_WIDTH)
    width = int(min(longest, term_width / 2))
    rows = [[_cell(_lookup(r, path)) for r in results] for _, path in paths]
    per_table = max(1, int((term_width - width) / width))  # dataloader columns that fit next to the names
    rule = _rule_character() * term_width
    tables = []
    for start in range(0, len(headers), per_table):
        stop = start + per_table
        table_headers = [f"{stage} metric".capitalize(), *headers[start:stop]]
        tables.append(_table(table_headers, names, [row[start:stop] for row in rows], width, rule))
    return "\n".join(tables)


def _table(headers: list[str], names: list[str], rows: list[list[str]], width: int, rule: str) -> str:
    def line(*cells: str) -> str:
        return "".join(f"{cell:^{width}}" for cell in cells).rstrip()

    half = int(len(rule) / 2)
    lines = [rule, line(*headers), rule]
    for name, cells in zip(names, rows):
        if len(name) <= half:
            lines.append(line(name, *cells))
            continue
        # A name longer than half the terminal wraps: each full chunk repeats the values (as Lightning prints it),
        # the remainder gets blank cells.
        while len(name) > half:
            lines.append(line(name[:half], *cells))
            name = name[half:]
        lines.append(line(name, *[" "] * len(cells)))
    lines.append(rule)
    return "\n".join(lines)


def print_results_table(results: Sequence[Mapping[str, Any]], stage: str) -> None:
    """Print :func:`format_results_table` to stdout (nothing when no metric was logged)."""
    text = format_results_table(results, stage)
    if text:
        sys.stdout.write(text + "\n")
