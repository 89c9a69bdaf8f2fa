"""Fabric's own overhead per training step on W1's tiny MLP: the same math as a raw PyTorch loop, under fulgor's Fabric
and under Lightning Fabric (when installed). Each loop runs in rounds, alternating, and the median round counts.

    python benchmarks/fabric_overhead.py [--steps 2000] [--rounds 5]

Prints µs per step, each framework's overhead over raw (µs per step) and the ratios, and checks that all three end
with the same weights.
"""

from __future__ import annotations

import argparse
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


def raw_loop(steps: int) -> tuple[float, nn.Module]:
    net, loader = w1_net(), w1_loader(steps)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    start = time.perf_counter()
    for x, y in loader:
        loss = F.mse_loss(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - start, net


def fabric_loop(fabric_class: Any) -> Callable[[int], tuple[float, nn.Module]]:
    def run(steps: int) -> tuple[float, nn.Module]:
        fabric = fabric_class(accelerator="cpu", devices=1)
        net = w1_net()
        model, opt = fabric.setup(net, torch.optim.SGD(net.parameters(), lr=0.01))
        loader = fabric.setup_dataloaders(w1_loader(steps))
        start = time.perf_counter()
        for x, y in loader:
            loss = F.mse_loss(model(x), y)
            opt.zero_grad()
            fabric.backward(loss)
            opt.step()
        return time.perf_counter() - start, net

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description="Fabric overhead per step on W1 (tiny MLP, CPU)")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)

    from fulgor.fabric import Fabric

    loops: dict[str, Callable[[int], tuple[float, nn.Module]]] = {"raw": raw_loop, "fulgor": fabric_loop(Fabric)}
    try:
        from lightning_fabric import Fabric as LightningFabric

        loops["lightning_fabric"] = fabric_loop(LightningFabric)
    except ImportError:
        print("lightning_fabric is not installed: its row is left out")
    for loop in loops.values():  # warm-up (imports, allocator)
        loop(50)
    times: dict[str, list[float]] = {name: [] for name in loops}
    weights: dict[str, list[torch.Tensor]] = {}
    for _ in range(args.rounds):
        for name, loop in loops.items():
            seconds, net = loop(args.steps)
            times[name].append(seconds)
            weights[name] = [p.detach().clone() for p in net.parameters()]
    per_step = {name: statistics.median(values) / args.steps * 1e6 for name, values in times.items()}
    raw = per_step["raw"]
    print(f"W1 tiny MLP, {args.steps} steps x {args.rounds} rounds (median), CPU, 1 thread")
    print(f"{'loop':<18}{'us/step':>10}{'overhead us/step':>18}{'ratio vs raw':>14}")
    for name, value in per_step.items():
        print(f"{name:<18}{value:>10.1f}{value - raw:>18.1f}{value / raw:>14.3f}")
    if "lightning_fabric" in per_step:
        print(f"fulgor / lightning_fabric: {per_step['fulgor'] / per_step['lightning_fabric']:.3f}")
    same = all(all(torch.equal(a, b) for a, b in zip(weights["raw"], other)) for other in weights.values())
    print(f"same final weights in every loop: {same}")


if __name__ == "__main__":
    main()
