"""Load a Fabric checkpoint written by fabric_train.py: `fabric_load.py BACKEND CKPT OUT`; writes OUT (the weights)."""

import sys

import torch
from torch import nn

backend, ckpt, out = sys.argv[1:4]
if backend == "fulgor":
    from fulgor.fabric import Fabric
else:
    from lightning_fabric import Fabric
fabric = Fabric(accelerator="cpu", devices=1)
model = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 3))
optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
model, optimizer = fabric.setup(model, optimizer)
state = {"model": model, "optimizer": optimizer, "step": 0}
remainder = fabric.load(ckpt, state)
assert remainder == {}, remainder
torch.save(
    {
        "weights": {k: v.double() for k, v in model.state_dict().items()},
        "step": state["step"],
        "optimizer_steps": [float(s["step"]) for s in optimizer.state_dict()["state"].values()],
    },
    out,
)
