"""A Lightning 2.x script in the `import lightning as L` style (unchanged)."""

import sys

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset


class Regressor(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("train_loss", loss, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.layer(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


if __name__ == "__main__":
    L.seed_everything(7)
    x = torch.randn(32, 3)
    data = DataLoader(TensorDataset(x, x @ torch.tensor([[1.0], [-2.0], [0.5]])), batch_size=8)
    trainer = L.Trainer(max_epochs=3, default_root_dir=sys.argv[1], enable_progress_bar=False, logger=False)
    model = Regressor()
    trainer.fit(model, data, data)
    print(
        f"RESULT step={trainer.global_step} val_loss={trainer.callback_metrics['val_loss'].item():.6f}"
        f" weight_sum={model.layer.weight.sum().item():.6f}"
    )
