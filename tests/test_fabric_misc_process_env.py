"""What `import fulgor` takes from the process environment, as importing Lightning does: the global rank from the
launcher's variables (Lightning's order), `POSSIBLE_USER_WARNINGS=0|off`; and what it must leave alone: the
multiprocessing start method, and a torch built without torch.distributed. Each case runs in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from textwrap import dedent

import pytest

from fulgor.rank import rank_from_environment

_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in _RANK_VARIABLES and k != "POSSIBLE_USER_WARNINGS"}
    return subprocess.run(
        [sys.executable, "-c", dedent(code)], env={**clean, **env}, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"JSM_NAMESPACE_RANK": "3"}, 3),
        ({"JSM_NAMESPACE_RANK": "3", "SLURM_PROCID": "2"}, 2),
        ({"JSM_NAMESPACE_RANK": "3", "SLURM_PROCID": "2", "LOCAL_RANK": "1"}, 1),
        ({"JSM_NAMESPACE_RANK": "3", "SLURM_PROCID": "2", "LOCAL_RANK": "1", "RANK": "0"}, 0),
    ],
)
def test_rank_from_environment_order(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: int) -> None:
    for name in _RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert rank_from_environment() == expected


@pytest.mark.oracle
def test_rank_order_matches_lightning(monkeypatch: pytest.MonkeyPatch) -> None:
    rank_zero = pytest.importorskip("lightning_fabric.utilities.rank_zero")
    cases = [{"SLURM_PROCID": "2", "LOCAL_RANK": "1"}, {"LOCAL_RANK": "4", "JSM_NAMESPACE_RANK": "2"}, {"RANK": "5"}]
    for env in cases:
        for name in _RANK_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        assert rank_from_environment() == rank_zero._get_rank()


@pytest.mark.parametrize(("env", "runs"), [({"LOCAL_RANK": "1", "SLURM_PROCID": "0"}, False), ({"RANK": "0"}, True)])
def test_rank_zero_only_reads_the_rank_at_import(env: dict[str, str], runs: bool) -> None:
    result = _run(
        """
        from fulgor.rank import rank_zero_only

        @rank_zero_only
        def said():
            return "yes"

        print(rank_zero_only.rank, said())
        """,
        **env,
    )
    assert result.returncode == 0, result.stderr
    rank = "0" if runs else "1"
    assert result.stdout.split() == [rank, "yes" if runs else "None"]


_WARN = """
import warnings
import fulgor
from fulgor.errors import PossibleUserWarning
warnings.warn("maybe a mistake", PossibleUserWarning)
print("done")
"""


@pytest.mark.parametrize(
    ("setting", "silenced"), [("0", True), ("off", True), ("OFF", True), ("1", False), ("", False)]
)
def test_possible_user_warnings_variable(setting: str, silenced: bool) -> None:
    result = _run(_WARN, POSSIBLE_USER_WARNINGS=setting)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"
    assert ("maybe a mistake" in result.stderr) is not silenced


def test_import_leaves_the_start_method_unset() -> None:
    result = _run(
        """
        import multiprocessing as mp
        import fulgor
        from fulgor import Trainer
        from fulgor.fabric import Fabric
        mp.set_start_method("spawn")
        print(mp.get_start_method())
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "spawn"


def test_import_and_train_without_torch_distributed(tmp_path: object) -> None:
    result = _run(
        """
        import torch
        try:  # torch's compiler looks for FSDP in torch.distributed
            import torch._dynamo.variables.functions
            torch._dynamo.variables.functions._fsdp_param_group = None
        except ImportError:
            pass
        for name in list(torch.distributed.__dict__):
            if not name.startswith("__"):
                delattr(torch.distributed, name)
        torch.distributed.is_available = lambda: False
        class ProcessGroup:
            pass
        torch.distributed.ProcessGroup = ProcessGroup

        import fulgor
        from fulgor import Trainer
        from fulgor.demos import BoringModel
        trainer = Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                          enable_model_summary=False, limit_val_batches=0)
        trainer.fit(BoringModel())
        print(trainer.global_step)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "2"
