"""The benchmark suite of issue 8: W1-W6 run raw, by fulgor and by its installed peers; prints a markdown table.

Runners: a raw PyTorch loop, fulgor, and pytorch-lightning, PyTorch-Ignite and HF Accelerate (each when installed);
same math checked run by run, interleaved, one torch thread, warm-up excluded.

Ignite and Accelerate (the "peers", peers.py) run W1, W3 and W4's import time only: they have no default features
(W2) and no LightningModule for the fresh-process workloads. To keep the full suite under 10 minutes on 2 cores with
them: W1/W2 run 5 rounds by default (was 7; the other workloads still derive theirs from 7), and the peers run at most
PEER_ROUNDS (3) rounds of W3 and of W4 import, each paired with the raw run of its round. The price: W1/W2 medians,
the noisiest numbers here, and the peers' W3/W4 numbers rest on fewer samples, so their min..max shows less of the
spread. Every run that is made is still checked against the raw run.

Usage: python benchmarks/run.py [--quick] [--only W1,W3] [--repeats N]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"  # before torch is imported, here and in every child process

import argparse  # noqa: E402
import compileall  # noqa: E402
import contextlib  # noqa: E402
import gc  # noqa: E402
import importlib  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from types import ModuleType  # noqa: E402
from typing import Any  # noqa: E402

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
sys.path[:0] = [str(HERE), str(SRC)]
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))

import peers  # noqa: E402
import torch  # noqa: E402
import workloads as w  # noqa: E402

torch.set_num_threads(1)

TARGETS = {
    "W1": "≤ +15 µs",
    "W2": "≤ +40 µs",
    "W3": "≤ 1.03x",
    "W4 import": "≤ +0.10 s",
    "W4 first step": "≤ raw + 0.05 s",
    "W5": "≤ +10 MB",
    "W6": "≤ 1.05x",
}
PEER_ROUNDS = 3  # measured rounds of W3 and W4 import for each peer (see the docstring)
NO_DEFAULTS = "n/a (no default features)"


class Table:
    """Rows of the markdown table and the correctness-check lines printed under it."""

    def __init__(self, frameworks: list[str]) -> None:
        self.frameworks = frameworks
        self.rows: list[list[str]] = []
        self.checks: list[str] = []

    def add(self, workload: str, metric: str, raw: str, cells: dict[str, str]) -> None:
        row = [workload, metric, raw, *(cells.get(name, "not run") for name in self.frameworks)]
        self.rows.append([*row, TARGETS[workload]])
        print("| " + " | ".join(self.rows[-1]) + " |", flush=True)

    def check(self, workload: str, name: str, line: str) -> None:
        self.checks.append(f"- {workload} {name}: {line}")
        print(self.checks[-1], flush=True)

    def render(self) -> str:
        head = ["workload", "metric", "raw", *self.frameworks, "fulgor target"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(
            [*lines, "", "Correctness checks (every run, vs the raw run of the same round):", *self.checks]
        )


def spread(values: list[float], fmt: str) -> str:
    """The median with the min..max of the runs, e.g. `+12 (-3..+30)`."""
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}..{fmt.format(max(values))})"


def fresh(fn: Callable[[], w.Result]) -> w.Result:
    gc.collect()
    return fn()


def run_w1(name: str, module: ModuleType, steps: int, defaults: bool) -> w.Result:
    return peers.W1[name](steps) if name in peers.W1 else w.framework_w1(module, steps, defaults)


def run_w3(name: str, module: ModuleType, n_train: int, n_val: int = w.W3_VAL) -> w.Result:
    return peers.W3[name](n_train, n_val) if name in peers.W3 else w.framework_w3(module, n_train, n_val)


# ------------------------------------------------------------------------------------------- in-process workloads


def bench_w1_w2(table: Table, frameworks: dict[str, ModuleType], steps: int, repeats: int, only: set[str]) -> None:
    """W1 (minimal config) and W2 (default features): per-step overhead over raw, from the paired CPU times."""
    cases = [
        (f"{wl} {name}", name, wl == "W2")
        for wl in ("W1", "W2")
        if wl in only
        for name in frameworks
        if wl == "W1" or name not in peers.MODULES  # the peers have no default features
    ]
    w.raw_w1(200)  # warm-up: first-call costs of torch and each framework, excluded
    for _, name, defaults in cases:
        run_w1(name, frameworks[name], 200, defaults)
    raw_us: list[float] = []
    over: dict[str, list[float]] = {key: [] for key, _, _ in cases}
    for _ in range(repeats):
        raw = fresh(lambda: w.raw_w1(steps))
        raw_us.append(raw.cpu / steps * 1e6)
        for key, name, defaults in cases:
            result = fresh(lambda: run_w1(name, frameworks[name], steps, defaults))  # noqa: B023
            over[key].append((result.cpu - raw.cpu) / steps * 1e6)
            table.check(key.split()[0], name, w.check(raw, result, loss_rtol=0.0))
    for wl in ("W1", "W2"):
        cells = {name: spread(over[f"{wl} {name}"], "{:+.0f} µs") for name in frameworks if f"{wl} {name}" in over}
        if cells and wl == "W2":
            cells |= {name: NO_DEFAULTS for name in frameworks if name in peers.MODULES}
        if cells:
            metric = f"overhead per step over raw ({steps} steps, CPU time)"
            table.add(wl, metric, spread(raw_us, "{:.0f} µs/step"), cells)


def bench_w3(table: Table, frameworks: dict[str, ModuleType], n_train: int, repeats: int) -> None:
    """W3: one epoch + validation of the seed's autoencoder, time ratio vs raw (CPU time, paired per round)."""
    w.raw_w3(2_048, 640)  # warm-up
    for name, pl in frameworks.items():
        run_w3(name, pl, 2_048, 640)
    raw_s: list[float] = []
    ratios: dict[str, list[float]] = {name: [] for name in frameworks}
    for round_ in range(repeats):
        raw = fresh(lambda: w.raw_w3(n_train))
        raw_s.append(raw.cpu)
        for name, pl in frameworks.items():
            if name in peers.MODULES and round_ >= PEER_ROUNDS:
                continue
            result = fresh(lambda: run_w3(name, pl, n_train))  # noqa: B023
            ratios[name].append(result.cpu / raw.cpu)
            table.check("W3", name, w.check(raw, result, loss_rtol=1e-6))
    cells = {name: spread(values, "{:.3f}x") for name, values in ratios.items()}
    table.add("W3", f"epoch + val time vs raw ({n_train:,} samples, CPU time)", spread(raw_s, "{:.2f} s"), cells)


# ------------------------------------------------------------------------------------------- fresh-process workloads


def child(mode: str, runner: str, *args: str, timeout: float = 300) -> dict[str, Any]:
    """Run benchmarks/child.py in a fresh interpreter and return what it saved."""
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "result.pt")
        cmd = [sys.executable, str(HERE / "child.py"), mode, runner, out, *args]
        if mode == "first_step":
            cmd.append(str(time.time()))  # the clock starts as the process is started
        proc = subprocess.run(cmd, cwd=HERE, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0 or not Path(out).exists():
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        result: dict[str, Any] = torch.load(out, weights_only=True)
    return result


def bench_w4(table: Table, names: list[str], n_train: int, repeats: int, warm: int) -> None:
    """W4: import time over `import torch`, and process start to first optimizer step, in fresh interpreters.
    The first `warm` rounds (they fill the OS file cache) are dropped. The peers run the import part only."""
    torch_s: list[float] = []
    imports: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats + warm):
        for name in names:
            if name in peers.MODULES and round_ >= PEER_ROUNDS + warm:
                continue
            result = child("import", name)
            if round_ >= warm:
                torch_s.append(result["torch_s"])
            imports[name].append(result["framework_s"])
    cells = {name: spread(values[warm:], "{:+.3f} s") for name, values in imports.items()}
    table.add("W4 import", "import time over `import torch`", spread(torch_s, "{:.3f} s"), cells)
    names = [name for name in names if name not in peers.MODULES]

    runners = ["raw", *names]
    first: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats + warm):
        for name in runners:
            first[name].append(child("first_step", name, str(n_train))["seconds"])
    raw = first["raw"][warm:]
    over = {name: [a - b for a, b in zip(first[name][warm:], raw, strict=True)] for name in names}
    cells = {name: spread(values, "{:+.3f} s") for name, values in over.items()}
    table.add("W4 first step", "process start to first `optimizer.step` (W3)", spread(raw, "{:.3f} s"), cells)

    # The same, less the noise: each runner's own part (framework import + setup; raw: optimizer + first batch), with
    # torch._dynamo (imported by the first optimizer constructor of every runner, ~2 s) imported before the clock.
    share: dict[str, list[float]] = {name: [] for name in runners}
    share_rounds = min(repeats, 3)  # it varies by ~10 ms: three rounds are enough, and keep the suite under 10 min
    for _ in range(share_rounds + warm):
        for name in runners:
            share[name].append(child("first_step_share", name, str(n_train))["seconds"])
    raw = share["raw"][warm:]
    over = {name: [a - b for a, b in zip(share[name][warm:], raw, strict=True)] for name in names}
    cells = {name: spread(values, "{:+.3f} s") for name, values in over.items()}
    metric = "framework import to first `optimizer.step` (raw: optimizer creation to it), torch._dynamo preloaded"
    table.add("W4 first step", metric, spread(raw, "{:.3f} s"), cells)


def bench_w5(table: Table, names: list[str], n_train: int, repeats: int) -> None:
    """W5: peak resident memory (ru_maxrss) of W3 in a fresh process, minus the raw loop's."""
    raw_mib: list[float] = []
    over: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(repeats):
        raw = child("memory", "raw", str(n_train))
        raw_mib.append(raw["rss_mib"])
        raw_result = w.Result(raw["wall"], raw["wall"], raw["weights"], raw["loss"])
        for name in names:
            result = child("memory", name, str(n_train))
            over[name].append((result["rss_mib"] - raw["rss_mib"]) * 1.048576)  # MiB -> MB
            other = w.Result(result["wall"], result["wall"], result["weights"], result["loss"])
            table.check("W5", name, w.check(raw_result, other, loss_rtol=1e-6))
    cells = {name: spread(values, "{:+.1f} MB") for name, values in over.items()}
    raw_mb = spread([m * 1.048576 for m in raw_mib], "{:.0f} MB")
    table.add("W5", "peak RSS of W3 over raw (fresh process)", raw_mb, cells)


def bench_w6(table: Table, names: list[str], n_train: int, repeats: int) -> None:
    """W6: W3 under DDP on 2 CPU processes (gloo), every framework against the raw DDP loop."""
    raw_s: list[float] = []
    ratios: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(repeats):
        raw = child("ddp", "raw", str(n_train))
        raw_s.append(raw["wall"])
        raw_result = w.Result(raw["wall"], raw["wall"], raw["weights"], raw["loss"])
        for name in names:
            result = child("ddp", name, str(n_train))
            ratios[name].append(result["wall"] / raw["wall"])
            other = w.Result(result["wall"], result["wall"], result["weights"], result["loss"])
            table.check("W6", name, w.check(raw_result, other, loss_rtol=1e-6))
    cells = {name: spread(values, "{:.3f}x") for name, values in ratios.items()}
    table.add("W6", "W3 on 2 gloo processes vs raw DDP (wall time, rank 0)", spread(raw_s, "{:.2f} s"), cells)


# ------------------------------------------------------------------------------------------------------ main


def frameworks_available() -> dict[str, ModuleType]:
    """fulgor, then each of pytorch-lightning and the peers (peers.py) that is installed."""
    found = {"fulgor": importlib.import_module("fulgor")}
    for name, module in {"pytorch-lightning": "pytorch_lightning", **peers.MODULES}.items():
        try:
            found[name] = importlib.import_module(module)
        except ImportError:
            print(f"{name} is not installed: its column is skipped")
    return found


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError, StopIteration), open("/proc/cpuinfo") as info:
        cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    return f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, torch {torch.__version__}, 1 thread"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps, samples and repeats (2-3 minutes here)")
    parser.add_argument(
        "--only",
        default=None,
        help="comma-separated workloads, e.g. W1,W3 (default: all;"
        " --quick leaves out W6, whose two DDP processes alone take a minute here)",
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="measured rounds per workload (default 7; W1/W2: 5; --quick: 2)"
    )
    args = parser.parse_args()
    default = "W1,W2,W3,W4,W5" if args.quick else "W1,W2,W3,W4,W5,W6"
    only = {name.strip().upper() for name in (args.only or default).split(",")}
    repeats = args.repeats or (2 if args.quick else 7)
    w12_repeats = args.repeats or (2 if args.quick else 5)  # W1/W2 at 7 rounds would push the suite past 10 minutes
    steps, n_train = (300, 6_400) if args.quick else (2_000, w.W3_TRAIN)
    frameworks = frameworks_available()
    names = list(frameworks)
    lightning_like = [name for name in names if name not in peers.MODULES]  # the runners of W4 first step, W5, W6
    table = Table(names)
    print(
        f"machine: {machine()}; repeats: {repeats} (W1/W2: {w12_repeats}){' (quick)' if args.quick else ''}\n",
        flush=True,
    )
    # An installed package carries bytecode (pip compiles it at install time), as torch and pytorch-lightning here
    # do; without this, PYTHONDONTWRITEBYTECODE (set on some machines) would make every fresh process of W4-W6
    # compile fulgor's sources again, a cost no installed user pays.
    compileall.compile_dir(SRC / "fulgor", quiet=1)
    started = time.perf_counter()
    if only & {"W1", "W2"}:
        bench_w1_w2(table, frameworks, steps, w12_repeats, only)
    if "W3" in only:
        bench_w3(table, frameworks, n_train, max(1, repeats - 2))
    if "W4" in only:
        bench_w4(table, names, n_train, repeats, warm=0 if args.quick else 1)
    if "W5" in only:
        bench_w5(table, lightning_like, n_train, max(1, (repeats + 1) // 3))
    if "W6" in only:
        bench_w6(table, lightning_like, n_train, max(1, (repeats + 1) // 3))
    print(f"\n{machine()}; {repeats} rounds (W1/W2: {w12_repeats}); {time.perf_counter() - started:.0f} s in all\n")
    print(table.render())


if __name__ == "__main__":
    main()
