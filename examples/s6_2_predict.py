"""Seed notes, section 6.2 "Predict with LightningModule": load a checkpoint and call the model, `predict_step`
with `trainer.predict`, and Monte Carlo dropout in `predict_step`.

The `load_from_checkpoint` part needs fulgor's checkpointing; while this build has none it is skipped with a
message saying so (the rest runs either way).
Run: `python examples/s6_2_predict.py [--root DIR]` (default: a new temp directory).
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

import fulgor as pl
from fulgor import LightningModule, Trainer


class LitModel(LightningModule):
    """A digit classifier on the 64 pixels of the 8x8 digits (the notes' `torch.randn(1, 64)` input)."""

    def __init__(self, hidden=32):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


class MyModel(LitModel):
    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        return self(batch)


# Enable complicated predict logic -- When you need to add complicated pre-processing or post-processing logic to
# your data use the predict step. For example here we do Monte Carlo Dropout for predictions:
class LitMCdropoutModel(pl.LightningModule):
    def __init__(self, model, mc_iteration):
        super().__init__()
        self.model = model
        self.dropout = nn.Dropout()
        self.mc_iteration = mc_iteration

    def predict_step(self, batch, batch_idx):
        # enable Monte Carlo Dropout
        self.dropout.train()

        x = batch  # not in the notes (nor in Lightning's docs, which read an undefined `x`)
        # take average of `self.mc_iteration` iterations
        pred = [self.dropout(self.model(x)).unsqueeze(0) for _ in range(self.mc_iteration)]
        pred = torch.vstack(pred).mean(dim=0)
        return pred


def checkpointing_available():
    """Whether this fulgor build can write checkpoints (fulgor.checkpointing lands with the checkpoint work)."""
    import importlib.util

    return importlib.util.find_spec("fulgor.checkpointing") is not None


if __name__ == "__main__":
    from _digits import enter_root
    from sklearn.datasets import load_digits

    enter_root(__doc__)
    pl.seed_everything(0)
    digits = load_digits()
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32).view(-1, 64)
    labels = torch.tensor(digits.target)
    train_set = torch.utils.data.TensorDataset(images[:1500], labels[:1500])
    test_images = images[1500:]  # 297 unlabeled images to predict

    trained = MyModel()
    trainer = Trainer(max_epochs=5, enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=10)
    trainer.fit(trained, DataLoader(train_set, batch_size=50, shuffle=True))

    # 1. the notes' first version: load a checkpoint, eval(), call the model
    if checkpointing_available():
        trainer.save_checkpoint("best_model.ckpt")
        model = LitModel.load_from_checkpoint("best_model.ckpt")
        model.eval()
        x = torch.randn(1, 64)
        with torch.no_grad():
            y_hat = model(x)
        same = torch.equal(y_hat, trained.eval()(x))
        print(f"load_from_checkpoint: hparams={dict(model.hparams)} output shape={tuple(y_hat.shape)} same={same}")
    else:
        print("load_from_checkpoint: skipped (this fulgor build has no checkpointing yet)")

    # 2. the notes' improved version: predict_step + trainer.predict
    data_loader = DataLoader(test_images, batch_size=100)
    model = trained
    trainer = Trainer(enable_progress_bar=False, logger=False)
    predictions = trainer.predict(model, data_loader)
    classes = torch.cat(predictions).argmax(dim=1)
    accuracy = (classes == labels[1500:]).float().mean().item()
    print(
        f"predict: {len(predictions)} batches, shapes {[tuple(p.shape) for p in predictions]}, accuracy {accuracy:.3f}"
    )

    # 3. Monte Carlo dropout in predict_step
    mc_model = LitMCdropoutModel(trained.net, mc_iteration=20)
    mc_predictions = trainer.predict(mc_model, data_loader)
    mc_classes = torch.cat(mc_predictions).argmax(dim=1)
    mc_accuracy = (mc_classes == labels[1500:]).float().mean().item()
    print(
        f"mc dropout predict: {len(mc_predictions)} batches, shapes {[tuple(p.shape) for p in mc_predictions]},"
        f" dropout active={mc_model.dropout.training}, accuracy {mc_accuracy:.3f}"
    )
