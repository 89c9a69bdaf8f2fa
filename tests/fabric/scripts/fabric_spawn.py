"""`fabric_spawn.py START_METHOD OUT`: a function run by `Fabric.launch` in 2 workers; prints what rank 0 returned."""

import atexit
import sys

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from fulgor.fabric import Fabric


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x) * 2


def _mark_exit(path: str) -> None:
    with open(path, "w") as f:
        f.write("atexit ran")


def train(fabric: Fabric, out: str) -> dict:
    # A worker's own atexit handlers still run when it ends (spawn; a fork child's would be the parent's).
    atexit.register(_mark_exit, f"{out}.atexit{fabric.global_rank}")
    fabric.seed_everything(3, verbose=False)
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model, optimizer = fabric.setup(model, optimizer)
    model.mark_forward_method("score")
    loader = fabric.setup_dataloaders(DataLoader(TensorDataset(torch.arange(16.0).view(8, 2)), batch_size=2))
    assert isinstance(loader.sampler, DistributedSampler)
    seen = []
    for (x,) in loader:
        seen.append(x[:, 0].tolist())
        with fabric.no_backward_sync(model, enabled=True):
            fabric.backward(model.score(x).sum())
    local_grad = model.module.layer.weight.grad.clone()
    fabric.backward(model(torch.ones(1, 2)).sum())  # synchronised: every rank ends with the same gradient
    optimizer.step()
    weights = fabric.all_gather(model.module.layer.weight.detach())
    fabric.save(out, {"model": model})
    return {
        "rank": fabric.global_rank,
        "world": fabric.world_size,
        "seen": fabric.all_gather(torch.tensor(seen)).tolist(),
        "local_grads_differ": not torch.equal(*fabric.all_gather(local_grad)),
        "same_weights": torch.equal(weights[0], weights[1]),
        "from_rank1": fabric.broadcast(fabric.global_rank * 10, src=1),
        "sum": fabric.all_reduce(torch.tensor(float(fabric.global_rank + 1)), reduce_op="sum").item(),
    }


if __name__ == "__main__":
    fabric = Fabric(accelerator="cpu", devices=2, strategy=f"ddp_{sys.argv[1]}")
    print("RESULT", fabric.launch(train, sys.argv[2]))
