"""fulgor's warnings print as Lightning prints its own (`path:line: message`, one line, no echoed source line), a
user's warnings keep Python's format, and Lightning deprecations show outside `__main__` as Lightning's do."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import fulgor

SRC = Path(fulgor.__file__).resolve().parent


def stderr_of(code: str, tmp_path: Path) -> str:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def test_fulgor_warning_is_one_line_with_path_and_line(tmp_path: Path) -> None:
    err = stderr_of(
        """
        import fulgor as pl
        from fulgor.demos.boring_classes import BoringModel

        class M(BoringModel):
            def predict_step(self, batch, batch_idx):
                return None

        pl.Trainer(logger=False, enable_progress_bar=False, limit_predict_batches=1).predict(M())
        """,
        tmp_path,
    )
    lines = err.splitlines()
    (index,) = [i for i, line in enumerate(lines) if "predict returned None" in line]
    pattern = re.escape(str(SRC / "trainer" / "eval_loop.py")) + r":\d+: predict returned None if it was on purpose"
    assert re.fullmatch(pattern + r", ignore this warning\.\.\.", lines[index])
    assert "UserWarning" not in lines[index]  # Lightning's format names no category
    following = lines[index + 1] if index + 1 < len(lines) else ""
    assert "warn_once(" not in following
    assert not following.startswith("  ")  # no echoed source line


def test_user_warnings_keep_pythons_format(tmp_path: Path) -> None:
    err = stderr_of(
        """
        import warnings
        import fulgor
        warnings.warn("mine")
        """,
        tmp_path,
    )
    assert re.search(r"script\.py:4: UserWarning: mine\n  warnings\.warn\(\"mine\"\)", err)


def test_lightning_deprecations_show_from_library_code(tmp_path: Path) -> None:
    # A DeprecationWarning raised outside `__main__` is hidden by Python's default filters; Lightning's are not.
    err = stderr_of(
        """
        import fulgor
        fulgor.Trainer(gpus=0, logger=False)
        """,
        tmp_path,
    )
    assert re.search(r"removed_args\.py:\d+: Setting `Trainer\(gpus=0\)` is deprecated in v1\.7", err)
