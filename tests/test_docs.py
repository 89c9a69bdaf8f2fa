"""The docs stay true: docs/hooks.md is exactly what tools/gen_hooks_doc.py generates from `fulgor.hooks`, every
```python block in docs/*.md runs, and docs/architecture.md lists every module of the package."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib import import_module
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
NO_RUN = "<!-- no-run -->"
FENCE = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def python_blocks() -> list[tuple[str, str]]:
    """(id, code) of every ```python block in docs/*.md not preceded by a `<!-- no-run -->` line."""
    blocks = []
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text()
        for match in FENCE.finditer(text):
            before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            if before.strip() == NO_RUN:
                continue
            line = text.count("\n", 0, match.start()) + 1
            blocks.append((f"{page.name}:{line}", match.group(1)))
    return blocks


BLOCKS = python_blocks()


def load_generator() -> Any:
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import gen_hooks_doc
    finally:
        sys.path.pop(0)
    return gen_hooks_doc


def test_hooks_page_is_generated_from_the_hook_table() -> None:
    generated = load_generator().render()
    assert (DOCS / "hooks.md").read_text() == generated, "run `python tools/gen_hooks_doc.py` and commit docs/hooks.md"


def test_hooks_page_lists_every_hook_and_log_rule() -> None:
    from fulgor import hooks

    text = (DOCS / "hooks.md").read_text()
    for name in (*hooks.HOOKS, *hooks.LOG_RULES):
        assert f"| `{name}` |" in text
    receivers = "callbacks without `monitors_metrics`, LightningModule, monitoring callbacks"
    assert f"| `on_train_epoch_end` | {receivers}" in text
    assert "| `training_step` | True | False | no |" in text
    assert "| `on_train_epoch_end` | False | True | yes |" in text


def test_the_docs_have_runnable_examples() -> None:
    pages = {block_id.split(":")[0] for block_id, _ in BLOCKS}
    assert {"index.md", "flags.md", "logging.md"} <= pages
    assert len([b for b in BLOCKS if b[0].startswith("index.md")]) >= 7


@pytest.mark.parametrize(("block_id", "code"), BLOCKS, ids=[b[0] for b in BLOCKS])
def test_doc_python_block_runs(block_id: str, code: str, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    env.pop("PL_TRAINER_MAX_EPOCHS", None)
    # Doc snippets describe a plain install (CSV logger, tqdm bar): run them with the optional packages hidden.
    script = tmp_path / "snippet.py"
    script.write_text(code)
    core_only = ROOT / "tests" / "helpers" / "core_only.py"
    proc = subprocess.run(
        [sys.executable, str(core_only), str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, f"{block_id} failed:\n{proc.stdout}\n{proc.stderr}"


def test_architecture_page_is_generated_from_the_layer_table() -> None:
    """The module map of docs/architecture.md is what tools/gen_architecture_doc.py makes from its LAYERS table (which
    tests/test_architecture.py checks against the package)."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import gen_architecture_doc
    finally:
        sys.path.remove(str(ROOT / "tools"))
    text = (DOCS / "architecture.md").read_text()
    assert gen_architecture_doc.current_map(text) == gen_architecture_doc.render_map(), (
        "run `python tools/gen_architecture_doc.py` and commit docs/architecture.md"
    )


def test_architecture_picture_names_code_that_exists() -> None:
    """Every `module.function` the data-flow picture names exists (the picture cannot drift from the code)."""
    picture = (DOCS / "architecture.md").read_text().split("```text", 1)[1].split("```", 1)[0]
    named = set(re.findall(r"\b([a-z_]+)\.([a-z_]+)\(", picture))
    modules = {name: f"fulgor.trainer.{name}" for name in ("config", "lifecycle", "fit_loop", "eval_loop",
               "optimization", "dispatch", "hook_resolution", "resume", "preemption")}  # fmt: skip
    modules |= {name: f"fulgor.{name}" for name in ("checkpoint_contents", "checkpoint_restore")}
    missing = [f"{m}.{f}" for m, f in sorted(named) if m in modules and not hasattr(import_module(modules[m]), f)]
    unknown = sorted({m for m, _ in named} - set(modules) - {"trainer", "self", "optimizer", "model"})
    assert len(named) >= 10
    assert missing == []
    assert unknown == []


def test_differences_page_covers_the_known_differences() -> None:
    text = " ".join((DOCS / "differences.md").read_text().split())
    for topic in ("NotImplementedError", "fixed order", "tpu", "precision=16.0", "transformer-engine",
                  "compared by value", "isolate_rng", "one line per epoch",
                  "flush_logs_every_n_steps", "non_finite", "NonFiniteLossError", "optimizer_idx",
                  "CheckpointError", "Lightning's internals"):  # fmt: skip
        assert topic in text, topic


def test_readme_quick_start_is_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    commands = re.findall(r"^python3 -m venv \.venv && .*$", readme, re.MULTILINE)
    assert len(commands) == 2, commands
    demo, tests = commands
    assert demo.endswith(".venv/bin/fulgor demo")
    assert tests.endswith(".venv/bin/pytest -q")
    assert "torch==2.13.0" in demo
    assert "torch==2.13.0" in tests
    assert tests in ci.splitlines()
    assert ci.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in ci
    assert os.access(ROOT / ".ci" / "run", os.X_OK)
    index = (DOCS / "index.md").read_text()
    assert demo in index
    assert tests in index
