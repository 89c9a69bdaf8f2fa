"""One Fabric training script, run under fulgor or Lightning Fabric (the oracle): `fabric_train.py BACKEND STRATEGY
DEVICES PRECISION OUT`. Writes OUT/weights.pt (final state dict, float64), OUT/ckpt.pt (fabric.save), OUT/logs."""

import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

backend, strategy, devices, precision, out = sys.argv[1:6]
if backend == "fulgor":
    from fulgor.fabric import Fabric
    from fulgor.fabric_loggers import CSVLogger
else:
    from lightning_fabric import Fabric
    from lightning_fabric.loggers import CSVLogger

out_dir = Path(out)
logger = CSVLogger(str(out_dir / "logs"), name="run", version=0, flush_logs_every_n_steps=1)
fabric = Fabric(accelerator="cpu", strategy=strategy, devices=int(devices), precision=precision, loggers=logger)
fabric.launch()
fabric.seed_everything(1234, verbose=False)
model = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 3))
optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
model, optimizer = fabric.setup(model, optimizer)
gen = torch.Generator().manual_seed(0)
x, y = torch.randn(96, 6, generator=gen), torch.randint(0, 3, (96,), generator=gen)
loader = fabric.setup_dataloaders(DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True))
step = 0
for epoch in range(2):
    for xb, yb in loader:
        loss = nn.functional.cross_entropy(model(xb), yb)
        optimizer.zero_grad()
        fabric.backward(loss)
        fabric.clip_gradients(model, optimizer, max_norm=0.5)
        optimizer.step()
        fabric.log_dict({"loss": fabric.all_reduce(loss.detach()), "epoch": epoch}, step=step)
        step += 1
fabric.save(out_dir / "ckpt.pt", {"model": model, "optimizer": optimizer, "step": step})
if fabric.is_global_zero:
    torch.save({k: v.double() for k, v in model.state_dict().items()}, out_dir / "weights.pt")
    logger.finalize("success")
