"""Fabric + FSDP on 2 CPU processes (gloo), for tests/fabric/test_fabric_fsdp_checkpoints.py: train a few steps, save
with `fabric.save` (sharded folder or full file), restore into a freshly built (or meta-device) model, step on.

Usage: python fabric_fsdp_ckpt.py MODE FOLDER    (MODE: sharded | full | empty_init | precision)
Rank 0 writes FOLDER/result.pt: the gathered weights and optimizer state after training, after restoring, and after
one more step of the original and of the restored run ("precision": the dtypes FSDP computes in with
`mixed_precision=MixedPrecision(param_dtype=bfloat16, reduce_dtype=float32)` and one step's change).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fulgor.fabric import Fabric
from fulgor.strategies.fsdp import FSDPStrategy

DATA = torch.arange(48, dtype=torch.float32).reshape(12, 4) / 48


def build(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def step(fabric: Fabric, model: Any, optimizer: Any, i: int) -> None:
    batch = DATA[(i % 3) * 4 : (i % 3) * 4 + 4]
    loss = model(batch).pow(2).mean()
    fabric.backward(loss)
    optimizer.step()
    optimizer.zero_grad()


def gathered(fabric: Fabric, model: Any, optimizer: Any) -> dict[str, Any]:
    """The full weights and Adam moments (a collective; the real values on rank 0)."""
    strategy = fabric.strategy
    weights = strategy.get_module_state_dict(model.module)
    moments = strategy.get_optimizer_state(optimizer.optimizer)
    return {"weights": weights, "exp_avg": {k: v["exp_avg"] for k, v in moments.get("state", {}).items()}}


def run(fabric: Fabric, mode: str, folder: Path) -> None:
    model = fabric.setup_module(build(1))  # FSDP2 replaces the parameters: the optimizer comes after
    optimizer = fabric.setup_optimizers(torch.optim.Adam(model.parameters(), lr=0.1))
    for i in range(3):
        step(fabric, model, optimizer, i)
    result: dict[str, Any] = {"trained": gathered(fabric, model, optimizer)}
    path = folder / ("ckpt" if mode != "full" else "model.ckpt")
    fabric.save(path, {"model": model, "optimizer": optimizer, "step": 3, "extra": {"note": "kept"}})
    step(fabric, model, optimizer, 3)
    result["original_next"] = gathered(fabric, model, optimizer)

    if mode == "empty_init":
        with fabric.init_module(empty_init=True):
            fresh = build(2)
        result["was_meta"] = all(p.is_meta for p in fresh.parameters())
    else:
        fresh = build(2)
    restored = fabric.setup_module(fresh)
    restored_optimizer = fabric.setup_optimizers(torch.optim.Adam(restored.parameters(), lr=0.5))
    target = {"model": restored, "optimizer": restored_optimizer, "step": 0}
    rest = fabric.load(path, target)
    result["loaded"] = gathered(fabric, restored, restored_optimizer)
    result["step"], result["rest"] = target["step"], rest
    result["lr"] = restored_optimizer.param_groups[0]["lr"]
    step(fabric, restored, restored_optimizer, 3)
    result["restored_next"] = gathered(fabric, restored, restored_optimizer)
    if fabric.is_global_zero:
        torch.save(result, folder / "result.pt")


def precision_run(fabric: Fabric, folder: Path) -> None:
    model = fabric.setup_module(build(1))
    optimizer = fabric.setup_optimizers(torch.optim.SGD(model.parameters(), lr=0.1))
    before = gathered(fabric, model, optimizer)["weights"]
    seen: list[torch.dtype] = []
    model.module[0].register_forward_hook(  # type: ignore[index]
        lambda module, args, out: seen.append(out.dtype)
    )
    output = model(DATA[:4])
    fabric.backward(output.float().pow(2).mean())
    grad = next(iter(model.parameters())).grad
    optimizer.step()
    result = {
        "output_dtype": output.dtype,  # Fabric returns float32 outputs, as Lightning's FSDPPrecision does
        "inner_dtype": seen[0],  # what the first layer computed in
        "param_dtype": next(iter(model.parameters())).dtype,
        "grad_dtype": None if grad is None else grad.dtype,
        "before": before,
        "after": gathered(fabric, model, optimizer)["weights"],
    }
    if fabric.is_global_zero:
        torch.save(result, folder / "result.pt")


def main() -> None:
    mode, folder = sys.argv[1], Path(sys.argv[2])
    if mode == "precision":
        from torch.distributed.fsdp import MixedPrecision

        policy = MixedPrecision(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        strategy = FSDPStrategy(mixed_precision=policy, start_method="spawn")
        fabric = Fabric(accelerator="cpu", devices=2, strategy=strategy)
        fabric.launch(precision_run, folder)
        return
    state_dict_type = "full" if mode == "full" else None  # None: Fabric's default, sharded
    strategy = FSDPStrategy(state_dict_type=state_dict_type, start_method="spawn")
    fabric = Fabric(accelerator="cpu", devices=2, strategy=strategy)
    fabric.launch(run, mode, folder)


if __name__ == "__main__":
    main()
