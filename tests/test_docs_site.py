"""The docs site (mkdocs.yml) builds in strict mode: a broken link, a missing anchor or page, or an API reference
object mkdocstrings cannot find fails the build. Skipped when the `docs` extra (`pip install -e '.[docs]'`) is not
installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("mkdocs", reason="the docs site needs `pip install -e '.[docs]'`")
pytest.importorskip("material", reason="the docs site needs `pip install -e '.[docs]'`")
pytest.importorskip("mkdocstrings_handlers.python", reason="the docs site needs `pip install -e '.[docs]'`")


def build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)


def test_the_site_builds_strictly_with_the_api_reference(tmp_path: Path) -> None:
    proc = build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    site = tmp_path / "site"
    assert (site / "index.html").is_file()
    assert (site / "search" / "search_index.json").is_file()
    trainer = (site / "api" / "trainer" / "index.html").read_text()
    for name in ("fulgor.trainer.trainer.Trainer.fit", "fulgor.trainer.trainer.Trainer.predict"):
        assert f'id="{name}"' in trainer
    callbacks = (site / "api" / "callbacks" / "index.html").read_text()
    assert 'id="fulgor.callbacks.early_stopping.EarlyStopping"' in callbacks
    assert 'id="fulgor.loggers.csv_logs.CSVLogger"' in (site / "api" / "loggers" / "index.html").read_text()
    guide = (site / "index.html").read_text()
    assert "../examples" not in guide  # links out of docs/ are shown as their text (docs/_mkdocs/hooks.py)


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs)
    with (docs / "migration.md").open("a") as page:
        page.write("\n[gone](cli.md#no-such-section) [missing](no-such-page.md)\n")
    config = (ROOT / "mkdocs.yml").read_text()
    config = config.replace("docs_dir: docs", f"docs_dir: {docs}").replace(
        "docs/_mkdocs/hooks.py", str(docs / "_mkdocs" / "hooks.py")
    )
    config = config.replace("paths: [src]", f"paths: [{ROOT / 'src'}]")
    (tmp_path / "mkdocs.yml").write_text(config)
    proc = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "does not contain an anchor '#no-such-section'" in output
    assert "'no-such-page.md', but the target is not found" in output
