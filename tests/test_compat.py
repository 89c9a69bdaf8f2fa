"""`fulgor run SCRIPT` (fulgor.compat): unchanged Lightning scripts in several import styles give the same results as
the same script written for fulgor; argv, __name__, exit codes and tracebacks are those of `python SCRIPT`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).resolve().parent / "compat_scripts"
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
EXPECTED = "RESULT step=12 val_loss=0.104134 weight_sum=-0.494945"


def run(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=ENV, cwd=cwd, timeout=120)


def result(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stderr
    match = re.search(r"^RESULT .*$", proc.stdout, re.MULTILINE)
    assert match, proc.stdout
    return match.group(0)


def test_direct_fulgor_script(tmp_path: Path) -> None:
    assert result(run(str(SCRIPTS / "direct_fulgor.py"), str(tmp_path), cwd=tmp_path)) == EXPECTED


@pytest.mark.parametrize(
    "script", ["pl_import.py", "lightning_L.py", "lightning_pytorch.py", "submodules.py", "surface_paths.py"]
)
def test_unchanged_lightning_script_runs_to_the_same_result(script: str, tmp_path: Path) -> None:
    proc = run("-m", "fulgor", "run", str(SCRIPTS / script), str(tmp_path), cwd=tmp_path)
    assert result(proc) == EXPECTED
    assert "pytorch_lightning" not in proc.stderr  # nothing of the real package was imported or warned about


@pytest.mark.oracle
def test_the_same_script_on_pytorch_lightning_gives_the_same_numbers(tmp_path: Path) -> None:
    pytest.importorskip("pytorch_lightning")
    env = {k: v for k, v in ENV.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, str(SCRIPTS / "pl_import.py"), str(tmp_path)], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=120)  # fmt: skip
    assert result(proc) == EXPECTED


def test_argv_name_and_sys_path_are_the_scripts(tmp_path: Path) -> None:
    proc = run("-m", "fulgor", "run", str(SCRIPTS / "exits.py"), "ok", "--flag", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "argv=['ok', '--flag'] name=__main__ path0=compat_scripts pl=2.6.6\n"


def test_exit_code_is_the_scripts(tmp_path: Path) -> None:
    assert run("-m", "fulgor", "run", str(SCRIPTS / "exits.py"), "exit", "3", cwd=tmp_path).returncode == 3


def test_uncaught_exception_prints_the_scripts_traceback_and_exits_1(tmp_path: Path) -> None:
    proc = run("-m", "fulgor", "run", str(SCRIPTS / "exits.py"), "raise", cwd=tmp_path)
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[1] == f'  File "{SCRIPTS / "exits.py"}", line 12, in <module>'
    assert lines[-1] == "ValueError: boom from the script"
    assert "runpy" not in proc.stderr
    assert "fulgor" not in proc.stderr


def test_missing_name_is_an_error_naming_module_and_attribute(tmp_path: Path) -> None:
    proc = run("-m", "fulgor", "run", str(SCRIPTS / "exits.py"), "missing", cwd=tmp_path)
    assert proc.returncode == 1
    assert "ImportError: cannot import name 'definitely_not_there' from 'pytorch_lightning.utilities'" in proc.stderr
    assert "fulgor does not provide" in proc.stderr


def test_missing_module_and_attribute_messages_in_process(tmp_path: Path) -> None:
    code = (
        "import fulgor.compat as c; c.install()\n"
        "import pytorch_lightning as pl, lightning as L, fulgor\n"
        "assert pl.Trainer is L.Trainer is fulgor.Trainer and L.pytorch.callbacks.EarlyStopping is\\\n"
        "    fulgor.callbacks.EarlyStopping\n"
        "try:\n    import pytorch_lightning.nosuchmodule\nexcept ModuleNotFoundError as e:\n    print(e)\n"
        "try:\n    L.NoSuchName\nexcept AttributeError as e:\n    print(e)\n"
        "c.uninstall(); import sys; print('lightning' in sys.modules, c.is_installed())\n"
    )
    proc = run("-c", code, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "No module named 'pytorch_lightning.nosuchmodule': fulgor's Lightning compatibility layer does not provide"
        " it (see docs/compatibility.md for what it offers instead)",
        "module 'lightning' has no attribute 'NoSuchName': fulgor does not provide `lightning.NoSuchName` (see"
        " docs/compatibility.md for what it offers instead)",
        "False False",
    ]


def test_missing_script_is_reported_like_python(tmp_path: Path) -> None:
    proc = run("-m", "fulgor", "run", "nope.py", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == "fulgor run: can't open file 'nope.py': [Errno 2] No such file or directory\n"
