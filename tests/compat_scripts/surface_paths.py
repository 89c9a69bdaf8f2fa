"""A 2.x script importing across Lightning's wider surface (`lightning.fabric` utilities, `utilities.types`,
`core.mixins`, `utilities.grads`, `plugins`, refused DeepSpeed imported but unused), unchanged."""

import sys

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.data import suggested_max_num_workers
from lightning.fabric.utilities.seed import seed_everything
from lightning.pytorch.callbacks.early_stopping import EarlyStopping
from lightning.pytorch.core.mixins import HyperparametersMixin
from lightning.pytorch.strategies import DeepSpeedStrategy  # noqa: F401 (imported at the top, never used)
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.grads import grad_norm
from lightning.pytorch.utilities.imports import _TORCHVISION_AVAILABLE
from lightning.pytorch.utilities.types import STEP_OUTPUT, OptimizerLRScheduler
from lightning_fabric.utilities.apply_func import convert_tensors_to_scalars
from lightning_utilities.core.rank_zero import rank_zero_only as lu_rank_zero_only
from torch.utils.data import DataLoader, TensorDataset


class Regressor(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3, 1)
        self.norms: list[float] = []

    def training_step(self, batch, batch_idx) -> STEP_OUTPUT:
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("train_loss", loss, on_epoch=True)
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        self.norms.append(float(grad_norm(self, norm_type=2)["grad_2.0_norm_total"]))

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.layer(x), y))

    def configure_optimizers(self) -> OptimizerLRScheduler:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Settings(HyperparametersMixin):
    def __init__(self, max_epochs: int = 3) -> None:
        super().__init__()
        self.save_hyperparameters()


if __name__ == "__main__":
    seed_everything(7)
    x = torch.randn(32, 3)
    data = DataLoader(TensorDataset(x, x @ torch.tensor([[1.0], [-2.0], [0.5]])), batch_size=8)
    settings = Settings()
    trainer = pl.Trainer(
        callbacks=[EarlyStopping(monitor="val_loss", patience=100)],
        max_epochs=settings.hparams.max_epochs,
        default_root_dir=sys.argv[1],
        enable_progress_bar=False,
        logger=False,
    )
    model = Regressor()
    trainer.fit(model, data, data)
    metrics = convert_tensors_to_scalars(dict(trainer.callback_metrics))
    report = rank_zero_only(print)
    report(
        f"RESULT step={trainer.global_step} val_loss={metrics['val_loss']:.6f}"
        f" weight_sum={model.layer.weight.sum().item():.6f}"
    )
    lu_rank_zero_only(print)(
        f"EXTRA norms={len(model.norms)} workers>=1={suggested_max_num_workers(1) >= 1}"
        f" torchvision={_TORCHVISION_AVAILABLE}"
    )
