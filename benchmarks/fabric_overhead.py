"""Fabric's own overhead per training step on W1's tiny MLP: the same math as a raw PyTorch loop, under fulgor's Fabric
and under Lightning Fabric (when installed), in the same run.

    python benchmarks/fabric_overhead.py [--steps 1000] [--rounds 15]

Two measurements. Whole loops: each loop runs in rounds, in an order that rotates every round, timed in this
process's CPU time; overheads and ratios are taken per round against that round's raw loop, and the median round
counts (the loops must end with the same weights). Interleaved: the three loops advance one step each in turn, and
the overhead is the median difference between a framework's step and the raw step next to it (the steadier number on
a shared, loaded machine). Prints the load average, µs per step, each framework's overhead over raw (µs per step)
and the ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workloads import w1_loader, w1_net


def _clock() -> float:
    """This process's CPU time: on a shared machine, time spent waiting for a core is not the loop's cost."""
    return time.process_time()


def raw_loop(steps: int) -> tuple[float, nn.Module]:
    net, loader = w1_net(), w1_loader(steps)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    start = _clock()
    for x, y in loader:
        loss = F.mse_loss(net(x), y)
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    return _clock() - start, net


def fabric_loop(fabric_class: Any) -> Callable[[int], tuple[float, nn.Module]]:
    def run(steps: int) -> tuple[float, nn.Module]:
        fabric = fabric_class(accelerator="cpu", devices=1)
        net = w1_net()
        model, opt = fabric.setup(net, torch.optim.SGD(net.parameters(), lr=0.01))
        loader = fabric.setup_dataloaders(w1_loader(steps))
        start = _clock()
        for x, y in loader:
            loss = F.mse_loss(model(x), y)
            opt.zero_grad()
            fabric.backward(loss)
            opt.step()
        return _clock() - start, net

    return run


Stepper = Callable[[int], tuple[Callable[[], None], nn.Module]]


def raw_stepper(steps: int) -> tuple[Callable[[], None], nn.Module]:
    """One raw step per call (the next batch included), for the interleaved measurement."""
    net, batches = w1_net(), iter(w1_loader(steps))
    opt = torch.optim.SGD(net.parameters(), lr=0.01)

    def step() -> None:
        x, y = next(batches)
        loss = F.mse_loss(net(x), y)
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()

    return step, net


def fabric_stepper(fabric_class: Any) -> Stepper:
    def make(steps: int) -> tuple[Callable[[], None], nn.Module]:
        fabric = fabric_class(accelerator="cpu", devices=1)
        net = w1_net()
        model, opt = fabric.setup(net, torch.optim.SGD(net.parameters(), lr=0.01))
        batches = iter(fabric.setup_dataloaders(w1_loader(steps)))

        def step() -> None:
            x, y = next(batches)
            loss = F.mse_loss(model(x), y)
            opt.zero_grad()
            fabric.backward(loss)
            opt.step()

        return step, net

    return make


def measure_interleaved(makers: dict[str, Stepper], steps: int) -> dict[str, list[float]]:
    """µs of each framework's step i, taken right after (or before) the raw step i: the loops advance together, one
    step each in turn (the order rotating), so every pair of steps sees the same load. Paired per-step differences
    resist a loaded machine far better than whole loops do."""
    steppers = {name: make(steps)[0] for name, make in makers.items()}
    names = list(steppers)
    times: dict[str, list[float]] = {name: [] for name in names}
    for index in range(steps):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter_ns()
            steppers[name]()
            times[name].append((time.perf_counter_ns() - start) / 1e3)
    return times


def measure(
    loops: dict[str, Callable[[int], tuple[float, nn.Module]]], steps: int, rounds: int
) -> tuple[dict[str, list[float]], dict[str, list[torch.Tensor]]]:
    """µs per step of each loop in each round, and each loop's final weights. The order rotates every round, so that
    no loop always runs first (or right after the same neighbour) on a machine whose load drifts."""
    for loop in loops.values():  # warm-up (imports, allocator)
        loop(50)
    names = list(loops)
    times: dict[str, list[float]] = {name: [] for name in names}
    weights: dict[str, list[torch.Tensor]] = {}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            seconds, net = loops[name](steps)
            times[name].append(seconds / steps * 1e6)
            weights[name] = [p.detach().clone() for p in net.parameters()]
    return times, weights


def main() -> None:
    parser = argparse.ArgumentParser(description="Fabric overhead per step on W1 (tiny MLP, CPU)")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)

    from fulgor.fabric import Fabric

    classes: dict[str, Any] = {"fulgor": Fabric}
    try:
        from lightning_fabric import Fabric as LightningFabric

        classes["lightning_fabric"] = LightningFabric
    except ImportError:
        print("lightning_fabric is not installed: its row is left out")
    loops: dict[str, Callable[[int], tuple[float, nn.Module]]] = {"raw": raw_loop}
    loops.update({name: fabric_loop(cls) for name, cls in classes.items()})
    load_before = os.getloadavg()[0]
    times, weights = measure(loops, args.steps, args.rounds)
    raw = times["raw"]
    print(
        f"W1 tiny MLP, {args.steps} steps x {args.rounds} rounds, CPU, 1 thread; load average {load_before:.2f} ->"
        f" {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)"
    )
    # Overhead and ratio per round against the raw loop of the same round (paired: drifting load cancels), then the
    # median over rounds.
    print(f"{'loop':<18}{'us/step':>10}{'overhead us/step':>18}{'ratio vs raw':>14}")
    for name, values in times.items():
        overhead = statistics.median(v - r for v, r in zip(values, raw))
        ratio = statistics.median(v / r for v, r in zip(values, raw))
        print(f"{name:<18}{statistics.median(values):>10.1f}{overhead:>18.1f}{ratio:>14.3f}")
    if "lightning_fabric" in times:
        ratio = statistics.median(a / b for a, b in zip(times["fulgor"], times["lightning_fabric"]))
        print(f"fulgor / lightning_fabric: {ratio:.3f}")
    same = all(all(torch.equal(a, b) for a, b in zip(weights["raw"], other)) for other in weights.values())
    print(f"same final weights in every loop: {same}")
    makers: dict[str, Stepper] = {"raw": raw_stepper, **{name: fabric_stepper(cls) for name, cls in classes.items()}}
    measure_interleaved(makers, 100)  # warm-up
    steps = args.steps * args.rounds
    paired = measure_interleaved(makers, steps)
    print(f"interleaved, {steps} steps of each loop in turn (median per-step difference to the raw step next to it):")
    for name, values in paired.items():
        overhead = statistics.median(v - r for v, r in zip(values, paired["raw"]))
        ratio = statistics.median(v / r for v, r in zip(values, paired["raw"]))
        print(f"{name:<18}{statistics.median(values):>10.1f}{overhead:>18.1f}{ratio:>14.3f}")


if __name__ == "__main__":
    main()
