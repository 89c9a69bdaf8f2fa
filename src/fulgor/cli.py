"""The `fulgor` console command (also `python -m fulgor`): subcommands such as `fulgor demo`."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

QUICK_EPOCHS = 3
DEFAULT_EPOCHS = 20


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `fulgor` command."""
    parser = argparse.ArgumentParser(prog="fulgor", description="fulgor: the PyTorch Lightning API, small and fast.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="train the seed's LitAutoEncoder on scikit-learn's 8x8 digits (fit, validate, test, predict)",
        description="Train the LitAutoEncoder of the seed notes (section 1) on scikit-learn's 8x8 handwritten"
        " digits, with validation, test and predict; logs go to <root>/lightning_logs/.",
    )
    demo.add_argument("--epochs", type=int, default=None, help=f"training epochs (default {DEFAULT_EPOCHS})")
    demo.add_argument("--root", default=".", help="directory for lightning_logs/ (default: current directory)")
    demo.add_argument("--quick", action="store_true", help=f"a short run: {QUICK_EPOCHS} epochs unless --epochs")
    return parser


def run_demo_command(args: argparse.Namespace) -> int:
    """`fulgor demo`: run the demo and print its report; exit status 1 with a clear message when sklearn is missing."""
    import torch

    from fulgor import demo

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
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        return run_demo_command(args)
    parser.print_help()
    return 0
