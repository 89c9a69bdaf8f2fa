"""The seed notes' checkpoint examples (sections 2.2 and 10.1) as written, with only the import changed, on a small
synthetic data set, in a temporary directory. Run: `PYTHONPATH=src python examples/checkpointing.py`."""

import os
import tempfile

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import fulgor as pl
from fulgor.callbacks.model_checkpoint import ModelCheckpoint

Trainer = pl.Trainer
LightningModule = pl.LightningModule


class MyLightningModule(pl.LightningModule):
    """A small classifier that logs `val_loss`, so checkpoints can be chosen by it."""

    def __init__(self, hparams=None, lr=0.05):
        super().__init__()
        self.save_hyperparameters()
        self.backbone = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))

    def train_dataloader(self):
        return make_loader(0)

    def val_dataloader(self):
        return make_loader(1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.backbone(x), y)
        self.log("my_metric", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        y_hat = self.backbone(x)
        # 1. calculate loss
        loss = F.cross_entropy(y_hat, y)
        # 2. log val_loss
        self.log("val_loss", loss)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def make_loader(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 8, generator=g)
    return DataLoader(TensorDataset(x, x[:, :3].argmax(1)), batch_size=16)


def main():
    workdir = tempfile.mkdtemp(prefix="fulgor-ckpt-")
    os.chdir(workdir)  # the seed's relative paths ("some/path/", "my/path/", "example.ckpt") land here
    model = MyLightningModule(hparams={"note": "seed 2.2"})

    # --- 2.2 Save your model progress
    # saves checkpoints to 'some/path/' at every epoch end
    trainer = Trainer(default_root_dir="some/path/", max_epochs=2)
    trainer.fit(model)
    ckpt = trainer.checkpoint_callback.best_model_path
    # load checkpoints
    model = MyLightningModule.load_from_checkpoint(ckpt)
    # resume training state - automatically restores model, epoch, step, LR schedulers, apex, etc...
    trainer = Trainer(default_root_dir="some/path/", max_epochs=3)
    trainer.fit(model, ckpt_path=ckpt)
    print("resumed to epoch", trainer.current_epoch, "step", trainer.global_step)

    # --- 10.1 Alter checkpoint behavior: keep the 2 best checkpoints by val_loss
    checkpoint_callback = ModelCheckpoint(dirpath="my/path/", save_top_k=2, monitor="val_loss")
    trainer = Trainer(callbacks=[checkpoint_callback], max_epochs=4)
    trainer.fit(model)
    print("best:", checkpoint_callback.best_model_path, float(checkpoint_callback.best_model_score))
    best = MyLightningModule.load_from_checkpoint(checkpoint_callback.best_model_path)

    # 'my_metric' is now able to be monitored
    checkpoint_callback = ModelCheckpoint(monitor="my_metric")

    # saves top-K checkpoints based on "val_loss" metric
    checkpoint_callback = ModelCheckpoint(
        save_top_k=10,
        monitor="val_loss",
        mode="min",
        dirpath="my/path/",
        filename="sample-mnist-{epoch:02d}-{val_loss:.2f}",
    )
    Trainer(callbacks=[checkpoint_callback], max_epochs=2).fit(best)
    print(sorted(os.listdir("my/path/")))

    # 3. Init ModelCheckpoint callback, monitoring "val_loss"
    checkpoint_callback = ModelCheckpoint(monitor="val_loss")
    # 4. Add your callback to the callbacks list
    trainer = Trainer(callbacks=[checkpoint_callback], max_epochs=1)
    trainer.fit(model)

    # Save checkpoints manually
    model = MyLightningModule(hparams={"note": "manual"})
    trainer.fit(model)
    trainer.save_checkpoint("example.ckpt")
    # load the checkpoint later as normal
    new_model = MyLightningModule.load_from_checkpoint(checkpoint_path="example.ckpt")
    print("loaded hparams:", dict(new_model.hparams))


if __name__ == "__main__":
    main()
