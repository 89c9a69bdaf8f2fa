"""Manual optimization: a tiny GAN that learns a 2-D gaussian, with two optimizers stepped in `training_step`.

`self.automatic_optimization = False`, `self.optimizers()`, `self.toggled_optimizer`, `self.manual_backward`; every
`opt.step()` counts one global step, so two optimizers make two steps per batch.
Run: `python examples/gan_manual_optimization.py [--root DIR]` (default: a new temp directory).
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import fulgor as pl

TARGET_MEAN = torch.tensor([2.0, -1.0])
TARGET_STD = 0.5
NOISE = 4


class GAN(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.automatic_optimization = False  # training_step drives both optimizers itself
        self.generator = nn.Sequential(nn.Linear(NOISE, 16), nn.ReLU(), nn.Linear(16, 2))
        self.discriminator = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 1))

    def forward(self, z):
        return self.generator(z)

    def training_step(self, batch, batch_idx):
        (real,) = batch
        opt_g, opt_d = self.optimizers()
        z = torch.randn(real.size(0), NOISE)

        # Generator: make the discriminator say "real" (only the generator's parameters get gradients).
        with self.toggled_optimizer(opt_g):
            fake = self(z)
            loss_g = F.softplus(-self.discriminator(fake)).mean()
            opt_g.zero_grad()
            self.manual_backward(loss_g)
            opt_g.step()

        # Discriminator: real -> 1, fake -> 0.
        with self.toggled_optimizer(opt_d):
            loss_d = F.softplus(-self.discriminator(real)).mean() + F.softplus(self.discriminator(fake.detach())).mean()
            opt_d.zero_grad()
            self.manual_backward(loss_d)
            opt_d.step()

        self.log_dict({"loss_g": loss_g, "loss_d": loss_d}, prog_bar=True)

    def configure_optimizers(self):
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=2e-3, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=2e-3, betas=(0.5, 0.999))
        return [opt_g, opt_d]


def real_data(n=1024):
    g = torch.Generator().manual_seed(0)
    return TensorDataset(TARGET_MEAN + TARGET_STD * torch.randn(n, 2, generator=g))


def sample_stats(model, n=2000):
    with torch.no_grad():
        samples = model(torch.randn(n, NOISE, generator=torch.Generator().manual_seed(1)))
    return samples.mean(0), samples.std(0)


if __name__ == "__main__":
    from _digits import enter_root

    enter_root(__doc__)
    pl.seed_everything(0)
    model = GAN()
    mean, _ = sample_stats(model)
    print(f"before: generated mean ({mean[0]:.2f}, {mean[1]:.2f}), target ({TARGET_MEAN[0]:.2f}, {TARGET_MEAN[1]:.2f})")
    trainer = pl.Trainer(max_epochs=15, enable_progress_bar=False, enable_model_summary=False, logger=False)
    trainer.fit(model, DataLoader(real_data(), batch_size=64, shuffle=True))
    metrics = trainer.callback_metrics
    print(f"batches: {trainer.num_training_batches * trainer.current_epoch}, global_step: {trainer.global_step}")
    print(f"last losses: generator {metrics['loss_g']:.4f}, discriminator {metrics['loss_d']:.4f}")
    mean, std = sample_stats(model)
    print(f"after: generated mean ({mean[0]:.2f}, {mean[1]:.2f}), std ({std[0]:.2f}, {std[1]:.2f})")
    print(f"distance of the generated mean to the target: {torch.dist(mean, TARGET_MEAN):.3f}")
