"""The `fulgor` console command (also `python -m fulgor`): `fulgor demo`, `fulgor run SCRIPT [ARGS]` (an unchanged
Lightning script on fulgor) and `fulgor describe SCRIPT [ARGS]` (its plan, without training)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import torch

from fulgor import compat, demo, fabric_cli, plot, verify_resume
from fulgor.describe import intercept_runs

QUICK_EPOCHS = 3
DEFAULT_EPOCHS = 20


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `fulgor` command."""
    parser = argparse.ArgumentParser(prog="fulgor", description="fulgor: the PyTorch Lightning API, small and fast.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo_parser = commands.add_parser(
        "demo",
        help="train the seed's LitAutoEncoder on scikit-learn's 8x8 digits (fit, validate, test, predict)",
        description="Train the LitAutoEncoder of the seed notes (section 1) on scikit-learn's 8x8 handwritten"
        " digits, with validation, test and predict; logs go to <root>/lightning_logs/.",
    )
    demo_parser.add_argument("--epochs", type=int, default=None, help=f"training epochs (default {DEFAULT_EPOCHS})")
    demo_parser.add_argument("--root", default=".", help="directory for lightning_logs/ (default: current directory)")
    demo_parser.add_argument("--quick", action="store_true", help=f"a short run: {QUICK_EPOCHS} epochs unless --epochs")
    run = commands.add_parser(
        "run",
        help="run an unchanged Lightning script on fulgor (pytorch_lightning / lightning imports become fulgor)",
        description="Run SCRIPT as `python SCRIPT ARGS` would, with `import pytorch_lightning`, `lightning.pytorch`"
        " and `lightning` answered by fulgor. Exit status, sys.argv and tracebacks are the script's.",
    )
    run.add_argument("--describe", action="store_true", help="print the plan of the first Trainer run, don't train")
    _add_script_args(run)
    describe_parser = commands.add_parser(
        "describe",
        help="print what a Lightning script's Trainer would do (devices, callbacks, hooks, files), without training",
        description="Run SCRIPT under fulgor until its first trainer.fit/validate/test/predict, print the resolved"
        " plan instead of running it, and stop.",
    )
    _add_script_args(describe_parser)
    commands.add_parser(
        "verify-resume",
        help="kill a short training of SCRIPT at random steps, resume it, and check the final weights are identical",
        add_help=False,  # its own options are parsed by fulgor.verify_resume
    )
    commands.add_parser(
        "fabric",
        help="Lightning Fabric's command: `fulgor fabric run SCRIPT --devices=2 ...`, `fulgor fabric consolidate`",
        add_help=False,  # its own options are parsed by fulgor.fabric_cli
    )
    plot.add_parser(commands)
    return parser


def _add_script_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("script", help="the Python script to run")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the script's own arguments")


def run_script_command(args: argparse.Namespace, describe: bool) -> int:
    """`fulgor run` / `fulgor describe`: run the script under the Lightning aliases; return its exit status."""
    if not describe:
        return compat.run_script(args.script, args.args)
    with intercept_runs():
        return compat.run_script(args.script, args.args)


def run_demo_command(args: argparse.Namespace) -> int:
    """`fulgor demo`: run the demo and print its report; exit status 1 with a clear message when sklearn is missing."""
    epochs = args.epochs if args.epochs is not None else QUICK_EPOCHS if args.quick else DEFAULT_EPOCHS
    if epochs < 1:
        print(f"fulgor demo: --epochs must be >= 1, got {epochs}.", file=sys.stderr)
        return 2
    start = time.perf_counter()
    threads = torch.get_num_threads()
    # The demo's model is tiny: one thread is fastest, and avoids OpenMP spin contention on busy machines.
    torch.set_num_threads(1)
    try:
        result = demo.run_demo(epochs=epochs, root=args.root)
    except ModuleNotFoundError as err:
        if "scikit-learn" not in str(err):
            raise
        print(f"fulgor demo: {err}", file=sys.stderr)
        return 1
    finally:
        torch.set_num_threads(threads)
    print(demo.format_report(result))
    print(f"  time:      {time.perf_counter() - start:.1f} s for {epochs} epochs")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `fulgor` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["verify-resume"]:
        return verify_resume.main(argv[1:])
    if argv[:1] == ["fabric"]:
        return fabric_cli.main(argv[1:], prog_name="fulgor fabric")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "plot":
        return plot.run_command(args)
    if args.command == "demo":
        return run_demo_command(args)
    if args.command in ("run", "describe"):
        return run_script_command(args, describe=args.command == "describe" or args.describe)
    parser.print_help()
    return 0
