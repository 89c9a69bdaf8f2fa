"""Seed notes, section 7.1 "Hardware agnostic training": new tensors with `Tensor.to`, buffers with
`register_buffer`, and `self.device` following the module wherever it goes.

Run: `python examples/s7_1_hardware_agnostic.py [--root DIR]` (default: a new temp directory). On a machine with a
GPU the same script trains on it (`accelerator="auto"`) and the printed devices say cuda.
"""

import torch
from torch import nn
from torch.utils.data import DataLoader

import fulgor as pl
from fulgor import LightningModule


class LitModel(LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(3, 3)
        self.register_buffer("sigma", torch.eye(3))
        # you can now access self.sigma anywhere in your module
        self.seen = []

    # with lightning
    def forward(self, x):
        z = torch.Tensor(2, 3)
        z = z.to(x)
        self.seen.append((x.device, z.device, z.dtype, self.sigma.device, self.device))
        return self.layer(x) @ self.sigma

    # before lightning (device-specific; not run here):
    #   def forward(self, x):
    #       z = torch.Tensor(2, 3)
    #       z = z.cuda(0)

    def training_step(self, batch, batch_idx):
        (x,) = batch
        return self(x).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


if __name__ == "__main__":
    from _digits import enter_root

    enter_root(__doc__)
    pl.seed_everything(0)
    model = LitModel()
    print(f"before fit: self.device={model.device} sigma on {model.sigma.device}, dtype {model.dtype}")
    trainer = pl.Trainer(max_epochs=1, enable_progress_bar=False, enable_model_summary=False, logger=False)
    trainer.fit(model, DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 3)), batch_size=4))
    x_device, z_device, z_dtype, sigma_device, module_device = model.seen[-1]
    print(
        f"in training_step: x on {x_device}, z.to(x) on {z_device}, sigma on {sigma_device},"
        f" self.device={module_device}"
    )

    model.to(torch.float64)  # .to() moves buffers with the parameters; dtype and device follow
    out = model(torch.ones(2, 3, dtype=torch.float64))
    print(
        f"after .to(float64): self.dtype={model.dtype} sigma dtype {model.sigma.dtype},"
        f" z dtype {model.seen[-1][2]}, output dtype {out.dtype}"
    )
    print(f"state_dict has sigma: {'sigma' in model.state_dict()}")
