"""The `fabric run` command (Lightning Fabric's launcher: one process per device, started torchrun-style, each process's
Fabric reading the flags from `LT_*` environment variables), `fabric consolidate`, and that reading of the variables.
Typed as `fulgor fabric run ...` or `python -m fulgor.fabric_cli run ...`."""

from __future__ import annotations

import importlib
import os
import sys
import textwrap
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fulgor.accelerators import CPUAccelerator, CUDAAccelerator, MPSAccelerator
from fulgor.errors import MisconfigurationException
from fulgor.hardware import is_cuda_available, mps_available
from fulgor.precision_flags import ALLOWED_PRECISIONS

__all__ = [
    "ACCELERATORS",
    "PRECISIONS",
    "Command",
    "CommandGroup",
    "Option",
    "UsageError",
    "cli_flags",
    "consolidate_command",
    "fabric_command",
    "launched_by_cli",
    "main",
    "number_of_processes",
    "run_command",
    "supported_strategies",
]

ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "tpu", "auto")
# Lightning's strategy names that make sense for processes started from outside: no spawning/forking, no XLA, no
# offload (which needs configuring in code). fulgor's Fabric explains the ones it does not run (deepspeed).
_STRATEGIES = (
    "ddp",
    "ddp_find_unused_parameters_true",
    "dp",
    "deepspeed",
    "deepspeed_stage_1",
    "deepspeed_stage_2",
    "deepspeed_stage_3",
    "fsdp",
)
PRECISIONS = tuple(value for value in ALLOWED_PRECISIONS if isinstance(value, str))  # the flag's string forms
_META_FILE = "meta.pt"  # Fabric's non-tensor state next to the shards of a distributed checkpoint
_DEFAULTS: dict[str, Any] = {"accelerator": "auto", "strategy": "auto", "devices": "auto", "num_nodes": 1}


def supported_strategies() -> list[str]:
    """The strategy names `fabric run --strategy` accepts."""
    return list(_STRATEGIES)


# ---------------------------------------------------------------------------------------------- the parsing machinery
class UsageError(Exception):
    """A command line the command cannot run: printed under the usage line, exit status 2."""


@dataclass(frozen=True)
class Option:
    """One `--name VALUE` option: its spellings, where its value goes, and how the value is checked."""

    names: tuple[str, ...]
    dest: str
    default: Any
    help: str
    kind: type = str
    choices: tuple[str, ...] = ()

    def metavar(self) -> str:
        """What the help shows after the option's names: its choices or the kind of value (none for `--help`)."""
        if self.dest == "help":
            return ""
        return f" [{'|'.join(self.choices)}]" if self.choices else " INTEGER" if self.kind is int else " TEXT"

    def convert(self, text: str) -> Any:
        """The option's value from its text; UsageError naming the option for a bad one."""
        label = " / ".join(f"'{name}'" for name in self.names)
        if self.choices and text not in self.choices:
            allowed = ", ".join(f"'{choice}'" for choice in self.choices)
            raise UsageError(f"Invalid value for {label}: {text!r} is not one of {allowed}.")
        if self.kind is int:
            try:
                return int(text)
            except ValueError:
                raise UsageError(f"Invalid value for {label}: {text!r} is not a valid integer.") from None
        return text


@dataclass(frozen=True)
class Command:
    """A command with options, one required positional argument and (optionally) the arguments left over.

    Known options are taken wherever they appear (before or after the positional argument, as `--name value` or
    `--name=value`); anything else, and everything after `--`, is left over for the script, in order.

    Args:
        name: the command's name (`run`).
        summary: the help text; its first sentence is the line in the group's command list.
        argument: the positional argument's name (`SCRIPT`), a path that must exist.
        options: the options.
        callback: called with the parsed values (a dict) and the arguments left over.
        rest: the name of the left-over arguments in the usage line (None: none are accepted).
    """

    name: str
    summary: str
    argument: str
    options: tuple[Option, ...]
    callback: Callable[[dict[str, Any], list[str]], None]
    rest: str | None = None

    def usage(self, prog: str) -> str:
        """The usage line."""
        extra = f" [{self.rest}]..." if self.rest else ""
        return f"Usage: {prog} [OPTIONS] {self.argument}{extra}"

    def format_help(self, prog: str) -> str:
        """The text `--help` prints."""
        lines = [self.usage(prog), ""]
        lines += [textwrap.indent(textwrap.fill(p, 76), "  ") + "\n" for p in self.summary.split("\n\n")]
        lines.append("Options:")
        for option in (*self.options, Option(("--help",), "help", None, "Show this message and exit.")):
            lines.append(f"  {', '.join(option.names)}{option.metavar()}")
            lines.append(textwrap.indent(textwrap.fill(option.help, 70), " " * 10))
        return "\n".join(lines) + "\n"

    def parse(self, args: Sequence[str], prog: str) -> tuple[dict[str, Any], list[str]]:
        """The option values and the positional arguments; prints the help and exits 0 on `--help`."""
        by_name = {name: option for option in self.options for name in option.names}
        values = {option.dest: option.default for option in self.options}
        positional: list[str] = []
        tokens = list(args)
        while tokens:
            token = tokens.pop(0)
            if token == "--":
                positional += tokens
                break
            name, has_value, value = token.partition("=")
            if token == "--help":
                sys.stdout.write(self.format_help(prog))
                raise SystemExit(0)
            if name not in by_name:
                positional.append(token)
                continue
            if not has_value:
                if not tokens:
                    raise UsageError(f"Option '{name}' requires an argument.")
                value = tokens.pop(0)
            values[by_name[name].dest] = by_name[name].convert(value)
        if not positional:
            raise UsageError(f"Missing argument '{self.argument}'.")
        if not os.path.exists(positional[0]):
            raise UsageError(f"Invalid value for '{self.argument}': Path {positional[0]!r} does not exist.")
        values[self.argument.lower()] = positional[0]
        if positional[1:] and self.rest is None:
            raise UsageError(f"Got unexpected extra argument ({' '.join(positional[1:])})")
        return values, positional[1:]

    def main(
        self, args: Sequence[str] | None = None, prog_name: str | None = None, standalone_mode: bool = True
    ) -> Any:
        """Run the command on `args` (default: the process's arguments) like a console script.

        With `standalone_mode` (the default) it always ends in `SystemExit`: 0 after a run, 2 for a bad command line
        (the usage and the error on stderr); otherwise it returns that status.
        """
        prog = prog_name or f"fabric {self.name}"
        try:
            values, rest = self.parse(sys.argv[1:] if args is None else args, prog)
            self.callback(values, rest)
            status = 0
        except UsageError as error:
            status = _print_usage_error(self.usage(prog), prog, error)
        except SystemExit as stop:
            status = stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 1
        if standalone_mode:
            raise SystemExit(status)
        return status


@dataclass(frozen=True)
class CommandGroup:
    """Commands under one program name (`fabric run ...`, `fabric consolidate ...`)."""

    commands: tuple[Command, ...]

    def format_help(self, prog: str) -> str:
        """The list of commands."""
        lines = [
            f"Usage: {prog} [OPTIONS] COMMAND [ARGS]...",
            "",
            "Options:",
            "  --help  Show this message and exit.",
            "",
        ]
        lines.append("Commands:")
        lines += [f"  {command.name:<12} {command.summary.split(chr(10))[0]}" for command in self.commands]
        return "\n".join(lines) + "\n"

    def main(
        self, args: Sequence[str] | None = None, prog_name: str | None = None, standalone_mode: bool = True
    ) -> Any:
        """Dispatch to the command named by the first argument (see `Command.main`)."""
        prog = prog_name or "fabric"
        args = list(sys.argv[1:] if args is None else args)
        status: int
        if not args or args[0] == "--help":
            (sys.stdout if args else sys.stderr).write(self.format_help(prog))
            status = 0 if args else 2
        else:
            chosen = {command.name: command for command in self.commands}.get(args[0])
            if chosen is None:
                status = _print_usage_error(
                    f"Usage: {prog} [OPTIONS] COMMAND [ARGS]...", prog, UsageError(f"No such command {args[0]!r}.")
                )
            else:
                status = chosen.main(_without_legacy_model(args), f"{prog} {chosen.name}", standalone_mode=False)
        if standalone_mode:
            raise SystemExit(status)
        return status


def _without_legacy_model(args: list[str]) -> list[str]:
    """`run model SCRIPT` (the older `lightning run model` spelling) is `run SCRIPT`, unless a file is named `model`."""
    if args[:2] == ["run", "model"] and not os.path.exists("model"):
        warnings.warn(
            "`run model SCRIPT` is the older spelling (`lightning run model`); use `fabric run SCRIPT` instead.",
            FutureWarning,
            stacklevel=2,
        )
        return args[2:]
    return args[1:]


def _print_usage_error(usage: str, prog: str, error: UsageError) -> int:
    sys.stderr.write(f"{usage}\nTry '{prog} --help' for help.\n\nError: {error}\n")
    return 2


# ----------------------------------------------------------------------------------------------------- fabric run
def number_of_processes(accelerator: str | None, devices: str, strategy: str | None = None) -> int:
    """How many processes `fabric run` starts on this machine: one per device (one for `dp`, which drives them all).

    Args:
        accelerator: the `--accelerator` value (None or "auto": the best one available here).
        devices: the `--devices` value: a count, a list of GPU ids ("0,1"), "-1" (every GPU) or "auto" (one).
        strategy: the `--strategy` value.

    Raises:
        UsageError: a `devices` value the accelerator cannot use here, or `accelerator="tpu"`.
    """
    if strategy == "dp":
        return 1
    name = accelerator if accelerator not in (None, "auto") else _best_accelerator()
    if name == "tpu":
        raise UsageError("Launching processes for TPU through the CLI is not supported (use `--accelerator` cpu/cuda).")
    if devices == "auto":
        if name not in ("cpu", "cuda", "mps"):
            raise UsageError(f"Cannot default to '1' device for accelerator={name!r}: pass `--devices`.")
        return 1
    if name == "gpu":
        name = "mps" if mps_available() else "cuda"
    try:
        if name == "cpu":
            return CPUAccelerator.parse_devices(devices)
        parser = MPSAccelerator if name == "mps" else CUDAAccelerator
        return len(parser.parse_devices(devices) or [])
    except (TypeError, ValueError, RuntimeError, MisconfigurationException) as error:
        raise UsageError(f"Invalid value for '--devices': {devices!r} with accelerator {name!r}: {error}") from None


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _best_accelerator() -> str:
    return "cuda" if is_cuda_available() else "mps" if mps_available() else "cpu"


def _export_flags(values: dict[str, Any]) -> None:
    """The flags for the Fabric of every process started (read back by `cli_flags`)."""
    os.environ["LT_CLI_USED"] = "1"
    for name in ("accelerator", "strategy", "precision"):
        if values[name] is not None:
            os.environ["LT_" + name.upper()] = str(values[name])
    os.environ["LT_DEVICES"] = str(values["devices"])
    os.environ["LT_NUM_NODES"] = str(values["num_nodes"])


def _launch(values: dict[str, Any], script_args: list[str]) -> None:
    """Export the flags, then start the script in `nproc` processes through torch's elastic launcher (torchrun)."""
    processes = number_of_processes(values["accelerator"], values["devices"], values["strategy"])
    _export_flags(values)
    # One OpenMP thread pool per process, sized to the CPUs this process may use (torchrun warns when unset).
    os.environ.setdefault("OMP_NUM_THREADS", str(_usable_cpus()))
    torchrun = importlib.import_module("torch.distributed.run")
    torchrun.main(
        [
            f"--nproc_per_node={processes}",
            f"--nnodes={values['num_nodes']}",
            f"--node_rank={values['node_rank']}",
            f"--master_addr={values['main_address']}",
            f"--master_port={values['main_port']}",
            values["script"],
            *script_args,
        ]
    )


_RUN_OPTIONS = (
    Option(("--accelerator",), "accelerator", None, "The hardware accelerator to run on.", choices=ACCELERATORS),
    Option(("--strategy",), "strategy", None, "Strategy for how to run across multiple devices.", choices=_STRATEGIES),
    Option(
        ("--devices",),
        "devices",
        "1",
        "Number of devices to run on (``int``), which devices to run on (``list`` or ``str``), or ``'auto'``."
        " The value applies per node.",
    ),
    Option(
        ("--num-nodes", "--num_nodes"), "num_nodes", 1, "Number of machines (nodes) for distributed execution.", int
    ),
    Option(
        ("--node-rank", "--node_rank"),
        "node_rank",
        0,
        "The index of the machine (node) this command gets started on. Must be a number in the range"
        " 0, ..., num_nodes - 1.",
        int,
    ),
    Option(
        ("--main-address", "--main_address"),
        "main_address",
        "127.0.0.1",
        "The hostname or IP address of the main machine (usually the one with node_rank = 0).",
    ),
    Option(("--main-port", "--main_port"), "main_port", 29400, "The main port to connect to the main machine.", int),
    Option(
        ("--precision",),
        "precision",
        None,
        "Double precision (``64-true`` or ``64``), full precision (``32-true`` or ``32``), half precision (``16-mixed``"
        " or ``16``) or bfloat16 precision (``bf16-mixed`` or ``bf16``)",
        choices=PRECISIONS,
    ),
)

run_command = Command(
    name="run",
    summary="Run a Lightning Fabric script.\n\nSCRIPT is the path to the Python script with the code to run. The"
    " script must contain a Fabric object.\n\nSCRIPT_ARGS are the remaining arguments that you can pass to the script"
    " itself and are expected to be parsed there.",
    argument="SCRIPT",
    options=_RUN_OPTIONS,
    callback=_launch,
    rest="SCRIPT_ARGS",
)


# ------------------------------------------------------------------------------------------------ fabric consolidate
def _consolidate_folder(values: dict[str, Any], _rest: list[str]) -> None:
    """Convert the `torch.distributed.checkpoint` shards in a folder into one `torch.save` file (+ Fabric's meta.pt)."""
    folder = Path(values["checkpoint_folder"])
    if not folder.is_dir():
        raise UsageError(
            f"Invalid value for 'CHECKPOINT_FOLDER': {str(folder)!r} is not a folder of checkpoint shards."
        )
    if not (folder / ".metadata").is_file():
        raise UsageError(
            f"Invalid value for 'CHECKPOINT_FOLDER': {str(folder)!r} has no `.metadata` file, so it is not a sharded"
            " checkpoint saved with `torch.distributed.checkpoint` (Fabric's FSDP `state_dict_type='sharded'`)."
        )
    output = Path(values["output_file"] or folder.with_suffix(folder.suffix + ".consolidated"))
    if output.exists():
        raise UsageError(
            f"Invalid value for '--output_file': {str(output)!r} exists already. Pass another `--output_file` or move"
            " the file first."
        )
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    dcp_to_torch_save(folder, output)
    meta = folder / _META_FILE
    if meta.is_file():  # user data Fabric saved beside the shards: merged in, as Fabric's own loading does
        checkpoint = torch.load(output, map_location="cpu", weights_only=False)
        checkpoint.update(torch.load(meta, map_location="cpu", weights_only=False))
        torch.save(checkpoint, output)
    sys.stdout.write(f"Saved the consolidated checkpoint to {output}\n")


consolidate_command = Command(
    name="consolidate",
    summary="Convert a distributed/sharded checkpoint into a single file that can be loaded with `torch.load()`.\n\n"
    "Only supports FSDP sharded checkpoints at the moment.",
    argument="CHECKPOINT_FOLDER",
    options=(
        Option(
            ("--output_file",),
            "output_file",
            None,
            "Path to the file where the converted checkpoint should be saved. The file should not already exist. If"
            " no path is provided, the file will be saved next to the input checkpoint folder with the same name and a"
            " '.consolidated' suffix.",
        ),
    ),
    callback=_consolidate_folder,
)

fabric_command = CommandGroup((consolidate_command, run_command))


def main(argv: Sequence[str] | None = None, prog_name: str = "fabric") -> int:
    """`fulgor fabric ...` / `python -m fulgor.fabric_cli ...`: run a Fabric subcommand; returns the exit status."""
    status: int = fabric_command.main(argv, prog_name, standalone_mode=False)
    return status


# --------------------------------------------------------------------------------------- what Fabric reads back
def launched_by_cli() -> bool:
    """Whether this process was started by `fabric run` (its processes exist already: Fabric must not launch)."""
    return os.environ.get("LT_CLI_USED", "0") == "1"


def cli_flags(
    accelerator: Any, strategy: Any, devices: Any, num_nodes: Any, precision: Any
) -> tuple[Any, Any, Any, int, Any]:
    """Fabric's constructor flags with the `fabric run` flags (`LT_ACCELERATOR`, ...) in place of the ones they set.

    A flag the script passes explicitly (not its default) that differs from the command line's is an error, so the
    command line cannot silently change what the code says.

    Raises:
        ValueError: such a conflict, naming both values.
    """
    given = {"accelerator": accelerator, "strategy": strategy, "devices": devices, "num_nodes": num_nodes}
    given["precision"] = precision
    for name, current in given.items():
        given[name] = _flag_from_env(name, current, _DEFAULTS.get(name))
    return given["accelerator"], given["strategy"], given["devices"], int(given["num_nodes"]), given["precision"]


def _flag_from_env(name: str, current: Any, default: Any) -> Any:
    value = os.environ.get("LT_" + name.upper())
    if value is None:
        return current
    if value != str(current) and str(current) != str(default) and launched_by_cli():
        raise ValueError(
            f"Your code has `Fabric({name}={current!r}, ...)` but it conflicts with the value `--{name}={value}` set"
            " through the CLI. Remove it either from the CLI or from the Lightning Fabric object."
        )
    return value


if __name__ == "__main__":
    sys.exit(main(prog_name="python -m fulgor.fabric_cli"))
