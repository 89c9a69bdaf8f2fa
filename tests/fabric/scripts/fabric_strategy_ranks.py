"""Run by test_fabric_strategy_ddp.py: 2 CPU processes (ddp_spawn) through the strategy's launcher; `rank_zero_first`
order, `all_reduce` through the strategy (Lightning's argument order), `setup_environment` once per process."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch

from fulgor.fabric import Fabric
from fulgor.strategies.ddp import DDPStrategy


class Recording(DDPStrategy):
    """Counts `setup_environment` calls and records `all_reduce` arguments in each process."""

    def setup_environment(self, trainer: Any = None) -> None:
        self.environments = getattr(self, "environments", 0) + 1
        super().setup_environment(trainer)

    def all_reduce(self, tensor: Any, group: Any | None = None, reduce_op: Any = "mean") -> Any:
        self.reduced = (group is torch.distributed.group.WORLD, reduce_op)
        return super().all_reduce(tensor, group=group, reduce_op=reduce_op)


def work(fabric: Fabric, log: Path) -> dict[str, Any]:
    with fabric.rank_zero_first():
        with log.open("a") as file:
            file.write(f"{fabric.global_rank} in {time.monotonic()}\n")
        if fabric.global_rank == 0:
            time.sleep(1.0)  # rank 1 must still be waiting at the barrier
        with log.open("a") as file:
            file.write(f"{fabric.global_rank} out {time.monotonic()}\n")
    total = fabric.all_reduce(torch.tensor(float(fabric.global_rank + 1)), reduce_op="sum")
    mean = fabric.all_reduce({"x": torch.tensor(float(fabric.global_rank))})
    strategy = fabric.strategy
    return {
        "total": total.item(),
        "mean": mean["x"].item(),
        "environments": strategy.environments,  # type: ignore[attr-defined]
        "reduced": strategy.reduced,  # type: ignore[attr-defined]
    }


if __name__ == "__main__":
    fabric = Fabric(accelerator="cpu", devices=2, strategy=Recording(start_method="spawn"))
    print("RESULT", fabric.launch(work, Path(sys.argv[1])))
