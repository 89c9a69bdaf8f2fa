"""`fulgor fabric run` / `python -m fulgor.fabric_cli`: the command line (options anywhere, errors, exit codes), the
environment variables and torchrun arguments it produces, how Fabric reads them back, `consolidate`, and a real
2-process CPU (gloo) DDP run through the command."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any
from unittest.mock import Mock

import pytest
import torch

from fulgor import cli
from fulgor.fabric import Fabric
from fulgor.fabric_cli import (
    cli_flags,
    consolidate_command,
    fabric_command,
    launched_by_cli,
    main,
    number_of_processes,
    run_command,
    supported_strategies,
)

_LT = ("LT_CLI_USED", "LT_ACCELERATOR", "LT_STRATEGY", "LT_DEVICES", "LT_NUM_NODES", "LT_PRECISION")


@pytest.fixture
def script(tmp_path: Path) -> str:
    path = tmp_path / "script.py"
    path.write_text("print('hi')\n")
    return str(path)


@pytest.fixture
def torchrun(monkeypatch: pytest.MonkeyPatch) -> Mock:
    """A stand-in for torch's launcher (no processes), and a clean LT_* environment restored afterwards."""
    fake = Mock()
    monkeypatch.setitem(sys.modules, "torch.distributed.run", fake)
    # the command writes these itself; set-then-delete makes monkeypatch restore (or remove) them afterwards
    for name in (*_LT, "OMP_NUM_THREADS"):
        monkeypatch.setenv(name, "placeholder")
        monkeypatch.delenv(name)
    return fake


def _status(command: Any, args: list[str]) -> int:
    with pytest.raises(SystemExit) as stop:
        command.main(args)
    code = stop.value.code
    assert isinstance(code, int)
    return code


def test_defaults_set_the_variables_and_start_one_process(script: str, torchrun: Mock) -> None:
    assert _status(run_command, [script]) == 0
    assert os.environ["LT_CLI_USED"] == "1"
    assert os.environ["LT_DEVICES"] == "1"
    assert os.environ["LT_NUM_NODES"] == "1"
    for unset in ("LT_ACCELERATOR", "LT_STRATEGY", "LT_PRECISION"):
        assert unset not in os.environ
    torchrun.main.assert_called_once_with(
        [
            "--nproc_per_node=1",
            "--nnodes=1",
            "--node_rank=0",
            "--master_addr=127.0.0.1",
            "--master_port=29400",
            script,
        ]
    )
    assert int(os.environ["OMP_NUM_THREADS"]) >= 1


def test_options_before_and_after_the_script_and_the_script_arguments(script: str, torchrun: Mock) -> None:
    args = [
        "--devices",
        "1",
        script,
        "--accelerator=cpu",
        "--lr",
        "0.1",
        "--devices=2",
        "-v",
        "pos",
        "--num_nodes",
        "3",
    ]
    args += ["--node-rank", "2", "--main_address", "10.0.0.1", "--main-port=1234", "--precision", "bf16-mixed"]
    assert _status(run_command, [*args, "--", "--devices", "5"]) == 0
    torchrun.main.assert_called_once_with(
        [
            "--nproc_per_node=2",
            "--nnodes=3",
            "--node_rank=2",
            "--master_addr=10.0.0.1",
            "--master_port=1234",
            script,
            "--lr",
            "0.1",
            "-v",
            "pos",
            "--devices",
            "5",
        ]
    )
    assert [os.environ.get(name) for name in _LT] == ["1", "cpu", None, "2", "3", "bf16-mixed"]


@pytest.mark.parametrize("strategy", supported_strategies())
def test_each_strategy_is_passed_on(strategy: str, script: str, torchrun: Mock) -> None:
    assert _status(run_command, [script, "--strategy", strategy, "--devices", "2"]) == 0
    assert os.environ["LT_STRATEGY"] == strategy
    processes = torchrun.main.call_args.args[0][0]
    assert processes == ("--nproc_per_node=1" if strategy == "dp" else "--nproc_per_node=2")


def test_supported_strategies_leave_out_spawning_and_offload() -> None:
    names = supported_strategies()
    assert len(names) == 8
    assert "fsdp" in names
    assert "ddp_find_unused_parameters_true" in names
    assert not [name for name in names if re.search("spawn|fork|notebook|xla|tpu|offload", name)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--strategy", "ddp_spawn"], "Invalid value for '--strategy': 'ddp_spawn' is not one of 'ddp', "),
        (["--accelerator", "xyz"], "Invalid value for '--accelerator': 'xyz' is not one of 'cpu', 'gpu', 'cuda', "),
        (["--precision", "8"], "Invalid value for '--precision': '8' is not one of 'transformer-engine', "),
        (["--num-nodes", "x"], "Invalid value for '--num-nodes' / '--num_nodes': 'x' is not a valid integer."),
        (["--devices"], "Option '--devices' requires an argument."),
        (["--devices", "0"], "Invalid value for '--devices': '0' with accelerator 'cpu': `devices` selected with"),
        (["--accelerator", "tpu"], "Launching processes for TPU through the CLI is not supported"),
    ],
)
def test_bad_command_lines_exit_2_with_the_usage_and_the_error(
    args: list[str], message: str, script: str, torchrun: Mock, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _status(run_command, [script, *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Usage: fabric run [OPTIONS] SCRIPT [SCRIPT_ARGS]...\nTry 'fabric run --help' for help.\n")
    assert f"Error: {message}" in err
    torchrun.main.assert_not_called()


def test_missing_or_absent_script(torchrun: Mock, capsys: pytest.CaptureFixture[str]) -> None:
    assert _status(run_command, []) == 2
    assert "Error: Missing argument 'SCRIPT'." in capsys.readouterr().err
    assert _status(run_command, ["nope.py"]) == 2
    assert "Error: Invalid value for 'SCRIPT': Path 'nope.py' does not exist." in capsys.readouterr().err


def test_help_and_the_command_group(capsys: pytest.CaptureFixture[str]) -> None:
    assert _status(run_command, ["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Usage: fabric run [OPTIONS] SCRIPT [SCRIPT_ARGS]...\n\n  Run a Lightning Fabric script.")
    for option in ("--accelerator [cpu|gpu|cuda|mps|tpu|auto]", "--num-nodes, --num_nodes INTEGER", "--main-port"):
        assert option in out
    assert main(["--help"]) == 0
    assert re.search(
        r"consolidate +Convert a distributed.*\n +run +Run a Lightning Fabric script.", capsys.readouterr().out
    )
    assert main(["bogus"]) == 2
    assert "Error: No such command 'bogus'." in capsys.readouterr().err
    assert main([]) == 2


def test_fulgor_command_dispatches_fabric(script: str, torchrun: Mock, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["fabric", "run", script, "--devices", "2", "--accelerator", "cpu"]) == 0
    assert torchrun.main.call_args.args[0][0] == "--nproc_per_node=2"
    assert cli.main(["fabric", "run", "--precision", "7", script]) == 2
    assert "Try 'fulgor fabric run --help' for help." in capsys.readouterr().err
    with pytest.warns(FutureWarning, match="older spelling"):
        assert fabric_command.main(["run", "model", script], standalone_mode=False) == 0
    assert torchrun.main.call_args.args[0][-1] == script


def test_number_of_processes() -> None:
    assert number_of_processes("cpu", "3") == 3
    assert number_of_processes(None, "auto") == 1
    assert number_of_processes("cpu", "4", strategy="dp") == 1


# ------------------------------------------------------------------------------------------- what Fabric reads back
def test_fabric_reads_the_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in zip(_LT, ("1", "cpu", "ddp", "2", "1", "64-true")):
        monkeypatch.setenv(name, value)
    assert launched_by_cli()
    assert cli_flags("auto", "auto", "auto", 1, None) == ("cpu", "ddp", "2", 1, "64-true")
    with pytest.raises(ValueError, match=re.escape("Your code has `Fabric(devices=4, ...)` but it conflicts with")):
        cli_flags("auto", "auto", 4, 1, None)
    assert cli_flags("cpu", "ddp", "2", 1, None)[:3] == ("cpu", "ddp", "2")  # the same values: no conflict
    monkeypatch.setenv("LT_CLI_USED", "0")  # set by hand, not by the command: the variables win silently
    assert cli_flags("auto", "auto", 4, 1, None)[2] == "2"


def test_single_process_fabric_under_the_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in zip(_LT, ("1", "cpu", "auto", "1", "1", "64-true")):
        monkeypatch.setenv(name, value)
    fabric = Fabric()
    assert fabric.device == torch.device("cpu")
    model, _ = fabric.setup(torch.nn.Linear(2, 1), torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1))
    assert model.weight.dtype == torch.float64
    with pytest.raises(RuntimeError, match="launched through the CLI"):
        fabric.launch()


@pytest.mark.oracle
def test_conflict_message_matches_lightning(monkeypatch: pytest.MonkeyPatch) -> None:
    connector = pytest.importorskip("lightning_fabric.connector")
    monkeypatch.setenv("LT_CLI_USED", "1")
    monkeypatch.setenv("LT_PRECISION", "bf16-mixed")
    with pytest.raises(ValueError) as theirs:
        connector._Connector._argument_from_env("precision", "64-true", default=None)
    with pytest.raises(ValueError) as ours:
        cli_flags("auto", "auto", "auto", 1, "64-true")
    assert str(ours.value) == " ".join(str(theirs.value).split(" ")).replace(
        "  ", " "
    )  # Lightning's has a double space


@pytest.mark.oracle
@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--devices", "2", "--strategy", "ddp", "--precision", "16-mixed"],
        ["--lr", "1", "--devices=2", "x", "--num_nodes", "2", "--node_rank", "1", "--main-address", "h", "--", "-a"],
        ["--strategy", "dp", "--devices", "3", "--accelerator", "auto"],
        ["--strategy", "ddp_fork"],
        ["--main-port", "p"],
    ],
)
def test_same_processes_variables_and_status_as_lightning(
    args: list[str], script: str, torchrun: Mock, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("click")
    lightning_cli = pytest.importorskip("lightning_fabric.cli")
    results = []
    for command in (lightning_cli._run, run_command):
        for name in _LT:
            monkeypatch.delenv(name, raising=False)
        torchrun.reset_mock()
        with pytest.raises(SystemExit) as stop:
            command.main([script, *args], prog_name="fabric run")
        error = capsys.readouterr().err
        results.append((stop.value.code, torchrun.main.call_args, {n: os.environ.get(n) for n in _LT}, error))
    assert results[0] == results[1]


# ------------------------------------------------------------------------------------------------ fabric consolidate
def test_consolidate_merges_shards_and_meta(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch.distributed.checkpoint as dcp

    folder = tmp_path / "ckpt"
    weights = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2)}
    with pytest.warns(UserWarning, match="single process"):
        dcp.save({"model": weights}, checkpoint_id=str(folder))  # type: ignore[attr-defined]
    torch.save({"step": 7}, folder / "meta.pt")
    assert consolidate_command.main([str(folder)], standalone_mode=False) == 0
    output = tmp_path / "ckpt.consolidated"
    assert f"Saved the consolidated checkpoint to {output}" in capsys.readouterr().out
    loaded = torch.load(output)
    assert loaded["step"] == 7
    torch.testing.assert_close(loaded["model"], weights)
    assert consolidate_command.main([str(folder)], standalone_mode=False) == 2  # the output exists now
    assert "exists already" in capsys.readouterr().err
    assert consolidate_command.main([str(tmp_path / "nope")], standalone_mode=False) == 2
    assert "Error: Invalid value for 'CHECKPOINT_FOLDER': Path" in capsys.readouterr().err
    (tmp_path / "plain").mkdir()
    assert consolidate_command.main([str(tmp_path / "plain")], standalone_mode=False) == 2
    assert "has no `.metadata` file" in capsys.readouterr().err


# --------------------------------------------------------------------------------------- a real 2-process DDP run
_TRAIN = """
import sys
import torch
from fulgor.fabric import Fabric

fabric = Fabric(accelerator="cpu")
torch.manual_seed(0)
net = torch.nn.Linear(4, 1)
model, optimizer = fabric.setup(net, torch.optim.SGD(net.parameters(), lr=0.1))
x = torch.arange(8 * 4, dtype=torch.float32).reshape(8, 4) / 32 + fabric.global_rank
for _ in range(3):
    loss = model(x).pow(2).mean()
    optimizer.zero_grad()
    fabric.backward(loss)
    optimizer.step()
gathered = fabric.all_gather(net.weight.detach())
print(f"rank={fabric.global_rank} world={fabric.world_size} strategy={type(fabric.strategy).__name__}"
      f" args={sys.argv[1:]} same={bool(torch.equal(gathered[0], gathered[1]))} weight={net.weight.sum().item():.6f}")
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _expected_weight_sum() -> float:
    """The same 3 steps on one process over both ranks' batches: DDP's averaged gradients give these weights."""
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    base = torch.arange(8 * 4, dtype=torch.float32).reshape(8, 4) / 32
    for _ in range(3):
        loss = (net(base).pow(2).mean() + net(base + 1).pow(2).mean()) / 2
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return float(net.weight.sum().item())


@pytest.mark.timeout(180)
def test_two_process_gloo_ddp_run_through_the_command(tmp_path: Path) -> None:
    train = tmp_path / "train.py"
    train.write_text(_TRAIN)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    for name in (*_LT, "LOCAL_RANK", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "NODE_RANK"):
        env.pop(name, None)
    command = [sys.executable, "-m", "fulgor", "fabric", "run", str(train), "--accelerator=cpu", "--devices=2"]
    command += ["--strategy=ddp", f"--main-port={_free_port()}", "--epochs", "3"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=150, env=env, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Searched anywhere in the output: the two processes share the pipe, so other text may sit on the same line.
    pattern = r"rank=(\d) world=2 strategy=DDPStrategy args=\['--epochs', '3'\] same=True weight=(-?[\d.]+)"
    found = sorted(re.findall(pattern, proc.stdout))
    assert [rank for rank, _ in found] == ["0", "1"], proc.stdout + proc.stderr
    expected = _expected_weight_sum()
    for _, weight in found:
        assert float(weight) == pytest.approx(expected, abs=1e-5)


@pytest.mark.oracle
def test_consolidated_file_matches_lightnings_loading(tmp_path: Path) -> None:
    load = pytest.importorskip("lightning_fabric.utilities.load")
    import torch.distributed.checkpoint as dcp

    folder = tmp_path / "ckpt"
    state = {"model": {"w": torch.randn(3, 2), "b": torch.zeros(3)}, "optimizer": {"state": {}, "lr": 0.1}}
    with pytest.warns(UserWarning, match="single process"):
        dcp.save(state, checkpoint_id=str(folder))  # type: ignore[attr-defined]
    torch.save({"epoch": 4, "note": "meta"}, folder / "meta.pt")
    assert (
        consolidate_command.main([str(folder), "--output_file", str(tmp_path / "one.pt")], standalone_mode=False) == 0
    )
    ours = torch.load(tmp_path / "one.pt")
    theirs = load._load_distributed_checkpoint(folder)
    assert ours.keys() == theirs.keys()
    assert (ours["epoch"], ours["note"]) == (theirs["epoch"], theirs["note"]) == (4, "meta")
    torch.testing.assert_close(ours["model"], theirs["model"])
    assert ours["optimizer"] == theirs["optimizer"]
