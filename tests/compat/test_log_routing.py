"""Under the aliases, fulgor's log records go to Lightning's logger names, so Lightning's documented logging idioms
work: `logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)` silences the info lines, a handler added to
`"pytorch_lightning.callbacks"` receives EarlyStopping's messages. Each script runs in its own process, under fulgor's
aliases and (oracle) under pytorch-lightning 2.6.6, and both print the same lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONWARNINGS": "ignore"}
FIT = (
    "import torch\n"
    "torch.manual_seed(0)  # the same losses every run, so the same EarlyStopping lines\n"
    "from {root}.demos.boring_classes import BoringModel\n"
    "class M(BoringModel):\n"
    "    def training_step(self, batch, batch_idx):\n"
    "        out = super().training_step(batch, batch_idx)\n"
    "        self.log('train_loss', out['loss'])\n"
    "        return out\n"
    "es = pl.callbacks.EarlyStopping(monitor='train_loss', patience=0, verbose=True, check_on_train_epoch_end=True)\n"
    "t = pl.Trainer(max_epochs=2, limit_train_batches=2, limit_val_batches=0, enable_progress_bar=False,\n"
    "               enable_model_summary=False, logger=False, enable_checkpointing=False, callbacks=[es],\n"
    "               default_root_dir={tmp!r})\n"
    "t.fit(M())\n"
)
SCRIPTS = {
    "silenced": "import logging\nimport {root} as pl\nlogging.getLogger({root!r}).setLevel(logging.ERROR)\n",
    "file_handler": (
        "import logging\nimport {root} as pl\n"
        "logging.getLogger({root!r} + '.callbacks').addHandler(logging.FileHandler({tmp!r} + '/cb.log'))\n"
    ),
}


def _run(script: str, root: str, tmp: Path, under_fulgor: bool) -> tuple[list[str], list[str]]:
    code = (SCRIPTS[script] + FIT).format(root=root, tmp=str(tmp))
    prefix = "import fulgor.compat as c; c.install()\n" if under_fulgor else ""
    proc = subprocess.run(
        [sys.executable, "-c", prefix + code], capture_output=True, text=True, env=ENV, timeout=300, cwd=tmp
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line and "Warning" not in line and "warn" not in line]
    lines = [ln for ln in lines if "Tip:" not in ln and not ln.startswith((" ", "/"))]  # warnings, Lightning tips
    logged = (tmp / "cb.log").read_text().splitlines() if (tmp / "cb.log").exists() else []
    return [line.split(". Best")[0].split(". New")[0] for line in lines], [line.split(". ")[0] for line in logged]


@pytest.mark.parametrize("script", sorted(SCRIPTS))
@pytest.mark.parametrize("root", ["lightning.pytorch", "pytorch_lightning"])
def test_lightning_logging_idioms_reach_fulgor_records(tmp_path: Path, script: str, root: str) -> None:
    stderr, logged = _run(script, root, tmp_path, under_fulgor=True)
    if script == "silenced":
        assert stderr == []
        assert logged == []
    else:
        assert stderr[:2] == ["GPU available: False, used: False", "TPU available: False, using: 0 TPU cores"]
        assert logged == [
            "Metric train_loss improved",
            "Monitored metric train_loss did not improve in the last 1 records",
        ]


@pytest.mark.oracle
@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_same_lines_as_lightning(tmp_path: Path, script: str) -> None:
    pytest.importorskip("pytorch_lightning")
    (tmp_path / "f").mkdir()
    (tmp_path / "l").mkdir()
    ours = _run(script, "pytorch_lightning", tmp_path / "f", under_fulgor=True)
    theirs = _run(script, "pytorch_lightning", tmp_path / "l", under_fulgor=False)
    assert ours == theirs


def test_plain_fulgor_keeps_its_own_logger(tmp_path: Path) -> None:
    code = (
        "import logging\nimport fulgor as pl\n"
        "logging.getLogger('lightning.pytorch').setLevel(logging.ERROR)\n"  # not fulgor's logger: no effect
        + FIT.format(root="fulgor", tmp=str(tmp_path))
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "GPU available: False, used: False" in proc.stderr


@pytest.mark.parametrize("root", ["lightning.fabric", "lightning_fabric"])
def test_environment_debug_lines_reach_lightnings_environments_logger(root: str) -> None:
    code = (
        "import fulgor.compat as c; c.install()\n"
        f"import logging, {root} as fabric\n"
        "from logging.handlers import BufferingHandler\n"
        f"target = logging.getLogger('{root}.plugins.environments')\n"
        "target.setLevel(logging.DEBUG); seen = BufferingHandler(10); target.addHandler(seen)\n"
        "fabric.plugins.environments.TorchElasticEnvironment().set_global_rank(1)\n"
        "import json; print(json.dumps([[r.name, r.getMessage()] for r in seen.buffer]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert proc.returncode == 0, proc.stderr
    message = "TorchElasticEnvironment.set_global_rank was called, but setting global rank is not allowed. Ignored."
    assert json.loads(proc.stdout) == [[f"{root}.plugins.environments", message]]


def test_every_fulgor_logger_is_routed() -> None:
    import re

    from fulgor.log_routing import LOGGERS

    source = ROOT / "src" / "fulgor"
    created = {
        name
        for path in source.rglob("*.py")
        for name in re.findall(r"logging\.getLogger\(\"(fulgor\.[\w.]+)\"\)", path.read_text())
    }
    assert created == set(LOGGERS)
