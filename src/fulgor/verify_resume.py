"""`fulgor verify-resume SCRIPT`: run a user's training script once uninterrupted and once stopped at random steps and
resumed each time, then report whether the final weights and optimizer states are bit-identical."""

# ruff: noqa: T201  (a command-line tool: it reports on stdout/stderr)

from __future__ import annotations

import argparse
import os
import random
import runpy
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from fulgor import compat
from fulgor.callbacks.callback import Callback
from fulgor.trainer.trainer import Trainer

__all__ = ["main"]

_ENV = "FULGOR_VERIFY_RESUME"  # set in the child processes: "<workdir>|<stop_step>"


def main(argv: list[str] | None = None) -> int:
    """Run the self-test; return 0 (identical), 1 (different) or 2 (the script failed).

    The script must train with `Trainer.fit` and be deterministic given `seed_everything`. Each child run gets a
    callback that stops it at a chosen step (a real SIGTERM: fulgor saves at the next safe point and exits with code
    75) and resumes from that checkpoint; `ckpt_path` is filled in for `fit` calls that pass none. Lightning imports
    in the script are answered by fulgor, as under `fulgor run`. Each run's output is kept in `<workdir>/*.log` and
    shown only with `--verbose` or when that run fails.
    """
    args = _parser().parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="fulgor-verify-"))
    print("verify-resume: uninterrupted run ...", flush=True)
    reference = _child(args, workdir / "reference", stop=0)
    if reference.returncode != 0:
        _show(reference)
        print(f"verify-resume: the uninterrupted run failed (exit code {reference.returncode}).", file=sys.stderr)
        return 2
    total = int((workdir / "reference" / "steps").read_text())
    if total < 2:
        print(f"verify-resume: the script trains only {total} step(s); nothing to interrupt.", file=sys.stderr)
        return 2
    stops = sorted(random.Random(args.seed).sample(range(1, total), min(args.kills, total - 1)))
    run_dir = workdir / "resumed"
    for stop in [*stops, 0]:
        print(f"verify-resume: {'stop at step ' + str(stop) if stop else 'resume to the end'} ...", flush=True)
        result = _child(args, run_dir, stop)
        expected = 0 if stop == 0 else 75
        if result.returncode != expected:
            _show(result)
            print(f"verify-resume: the run stopped at step {stop} exited with {result.returncode}.", file=sys.stderr)
            return 2
    differences = _compare(workdir / "reference" / "final.pt", run_dir / "final.pt")
    print(f"verify-resume: stopped at steps {stops} of {total} and resumed each time.")
    if not differences:
        print("verify-resume: final weights and optimizer states are bit-identical.")
        return 0
    print("verify-resume: NOT identical:\n  " + "\n  ".join(differences))
    return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fulgor verify-resume",
        description="Train SCRIPT once uninterrupted, then stop it at random steps (SIGTERM) and resume it each time;"
        " report whether the final weights and optimizer states are bit-identical (exit 0), differ (1), or a run"
        " failed (2). Lightning imports in SCRIPT are answered by fulgor, as under `fulgor run`.",
    )
    parser.add_argument("script", help="the training script (run as `python SCRIPT ARGS...`)")
    parser.add_argument("script_args", nargs=argparse.REMAINDER, help="arguments for the script")
    parser.add_argument("--kills", type=int, default=3, help="how many times to stop and resume (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed for choosing the stop steps")
    parser.add_argument("--workdir", default=None, help="folder for checkpoints and results (default: a temp dir)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per run")
    parser.add_argument("--verbose", action="store_true", help="show every run's full output (progress bars, logs)")
    return parser


def _child(args: Any, folder: Path, stop: int) -> subprocess.CompletedProcess[str]:
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, _ENV: f"{folder}|{stop}", "PL_TRAINER_DEFAULT_ROOT_DIR": str(folder / "root")}
    command = [sys.executable, "-c", "import sys, fulgor.verify_resume as v; v._run_child(sys.argv[1:])",
               args.script, *args.script_args]  # fmt: skip
    if args.verbose:  # the transcripts go straight to the terminal
        return subprocess.run(command, env=env, timeout=args.timeout, check=False, text=True)
    result = subprocess.run(command, env=env, timeout=args.timeout, check=False, capture_output=True, text=True)
    log = folder.parent / f"{folder.name}-stop{stop}.log"
    log.write_text(result.stdout + result.stderr)
    return result


def _show(result: subprocess.CompletedProcess[str]) -> None:
    """Print a failed run's captured output (nothing when it went to the terminal already)."""
    for text, stream in ((result.stdout, sys.stdout), (result.stderr, sys.stderr)):
        if text:
            stream.write(text)


def _run_child(argv: list[str]) -> None:
    """In the child: wrap `Trainer.fit` (resume file, stop callback, final dump), then run the script as __main__."""
    folder_text, stop_text = os.environ[_ENV].split("|")
    folder, stop = Path(folder_text), int(stop_text)
    resume_file = folder / "resume.ckpt"
    original = Trainer.fit

    def fit(self: Trainer, model: Any, *rest: Any, ckpt_path: Any = None, **kw: Any) -> None:
        os.environ["FULGOR_PREEMPT_CKPT"] = str(resume_file)
        self.callbacks.append(_StopAt(stop))
        if ckpt_path is None and resume_file.exists():
            ckpt_path = str(resume_file)
        original(self, model, *rest, ckpt_path=ckpt_path, **kw)  # type: ignore[misc]
        (folder / "steps").write_text(str(self.global_step))
        state = {"model": model.state_dict(), "optimizers": [o.state_dict() for o in self.optimizers]}
        torch.save(state, folder / "final.pt")

    Trainer.fit = fit  # type: ignore[method-assign]
    compat.install()  # an unchanged Lightning script imports pytorch_lightning / lightning: answer with fulgor
    sys.argv = argv
    sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))  # the script's own folder, as `python SCRIPT`
    runpy.run_path(argv[0], run_name="__main__")


class _StopAt(Callback):
    """Sends this process SIGTERM at the end of the batch that reaches optimizer step `step` (0: never)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
        if self.step and trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def _compare(reference: Path, resumed: Path) -> list[str]:
    a = torch.load(reference, weights_only=True)
    b = torch.load(resumed, weights_only=True)
    return [f"{name}: {detail}" for name, detail in _diff(a, b, "")]


def _diff(a: Any, b: Any, where: str) -> list[tuple[str, str]]:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape or a.dtype != b.dtype:
            return [(where, f"shape/dtype {tuple(a.shape)}/{a.dtype} vs {tuple(b.shape)}/{b.dtype}")]
        if torch.equal(a, b):
            return []
        return [(where, f"max abs difference {(a.double() - b.double()).abs().max().item():.3g}")]
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [(where, f"keys differ: {sorted(map(str, a.keys() ^ b.keys()))}")]
        return [d for k in a for d in _diff(a[k], b[k], f"{where}.{k}" if where else str(k))]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _diff(x, y, f"{where}[{i}]")]
    return [] if a == b else [(where, f"{a!r} vs {b!r}")]


if __name__ == "__main__":
    raise SystemExit(main())
