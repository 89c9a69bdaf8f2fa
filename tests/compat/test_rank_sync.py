"""The global rank Lightning-style code reads (`lightning_utilities`' `rank_zero_only.rank`, and the aliased
`rank_zero_only` of pytorch_lightning / lightning_fabric) is set when fulgor's aliases are installed, as importing
Lightning does, and follows fulgor wherever fulgor sets the rank (the DDP strategy, `set_global_rank`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}

pytest.importorskip("lightning_utilities")


def python(code: str, **env: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**ENV, **env}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_installing_the_aliases_sets_lightning_utilities_rank_from_the_environment() -> None:
    code = (
        "import lightning_utilities.core.rank_zero as lu\n"
        "print(getattr(lu.rank_zero_only, 'rank', None))\n"  # nothing set it yet (Lightning is not imported)
        "import fulgor.compat as c; c.install()\n"
        "from pytorch_lightning.utilities.rank_zero import rank_zero_only as pl_only\n"
        "from lightning.fabric.utilities.rank_zero import rank_zero_only as fabric_only\n"
        "print(lu.rank_zero_only.rank, pl_only.rank, fabric_only.rank)\n"
    )
    assert python(code, RANK="3") == ["None", "3 3 3"]


def test_install_loads_lightning_utilities_itself() -> None:
    code = (
        "import sys, fulgor.compat as c\n"
        "print('lightning_utilities.core.rank_zero' in sys.modules)\n"
        "c.install()\n"
        "import lightning_utilities.core.rank_zero as lu; print(lu.rank_zero_only.rank)\n"
    )
    assert python(code, LOCAL_RANK="1") == ["False", "1"]


def test_setting_the_rank_in_fulgor_moves_lightning_utilities_along() -> None:
    code = (
        "import fulgor.compat as c; c.install()\n"
        "import lightning_utilities.core.rank_zero as lu\n"
        "from fulgor.rank import rank_zero_only, set_global_rank, global_rank\n"
        "rank_zero_only.rank = 1\n"  # what the DDP strategy does in each process
        "print(lu.rank_zero_only.rank, global_rank())\n"
        "set_global_rank(0)\n"
        "print(lu.rank_zero_only.rank, global_rank())\n"
        "said = lu.rank_zero_only(lambda: 'said')\n"
        "set_global_rank(2); print(said())\n"
    )
    assert python(code) == ["1 1", "0 0", "None"]


def test_rank_zero_only_takes_lightnings_default_argument() -> None:
    code = (
        "from fulgor.rank import rank_zero_only, set_global_rank\n"
        "fn = rank_zero_only(lambda: 'ran', default='skipped')\n"
        "print(fn()); set_global_rank(1); print(fn())\n"
    )
    assert python(code) == ["ran", "skipped"]


def test_a_ddp_run_logs_through_lightning_utilities_on_rank_zero_only(tmp_path: Path) -> None:
    script = Path(__file__).with_name("rank_zero_script.py")
    proc = subprocess.run(
        [sys.executable, "-m", "fulgor", "run", str(script), str(tmp_path)],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=tmp_path,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = re.findall(r"(IMPORTED|START [^\n`]*|END [^\n`]*)", proc.stdout)
    # Lightning 2.6.6 prints the same four lines for this script (rank 1 re-runs it with LOCAL_RANK=1 set).
    assert sorted(lines) == [
        "END global_rank=0 lu=0 pl=0",
        "END global_rank=1 lu=1 pl=1",
        "IMPORTED",
        "START global_rank=0 lu=0 pl=0",
    ]
