"""Seed notes, section 2.1 "Validate and test a model": `test_step`, `validation_step`, `trainer.test` and
`trainer.fit(model, train_loader, valid_loader)`; then the notes' question "can test_step return other things?".

Run: `python examples/s2_1_validate_and_test.py [--root DIR]` (default: a new temp directory).
"""

import os

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

import fulgor as pl
from fulgor import Trainer


class LitAutoEncoder(pl.LightningModule):
    # Section 1's model (the notes extend the same class; here the steps are written out in full).
    def __init__(self, encoder, decoder):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def training_step(self, batch, batch_idx):
        x, y = batch  # noqa: RUF059 (the notes' code, as written)
        x = x.view(x.size(0), -1)
        z = self.encoder(x)
        x_hat = self.decoder(z)
        loss = F.mse_loss(x_hat, x)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)

    # --- section 2.1, as written in the notes
    def test_step(self, batch, batch_idx):
        # this is the test loop
        x, y = batch  # noqa: RUF059 (the notes' code, as written)
        x = x.view(x.size(0), -1)
        z = self.encoder(x)
        x_hat = self.decoder(z)
        test_loss = F.mse_loss(x_hat, x)
        self.log("test_loss", test_loss)

    def validation_step(self, batch, batch_idx):
        # this is the validation loop
        x, y = batch  # noqa: RUF059 (the notes' code, as written)
        x = x.view(x.size(0), -1)
        z = self.encoder(x)
        x_hat = self.decoder(z)
        val_loss = F.mse_loss(x_hat, x)
        self.log("val_loss", val_loss)


class ScoredAutoEncoder(LitAutoEncoder):
    """The notes' question: yes, test_step may return anything; it reaches `on_test_batch_end(outputs, ...)`."""

    def test_step(self, batch, batch_idx):
        x, y = batch
        x = x.view(x.size(0), -1)
        x_hat = self.decoder(self.encoder(x))
        per_image = F.mse_loss(x_hat, x, reduction="none").mean(dim=1)
        self.log("test_loss", per_image.mean())
        return {"per_image_mse": per_image, "labels": y}  # any object: a dict, a tensor, a tuple, ...

    def on_test_epoch_start(self):
        self.collected = []

    def on_test_batch_end(self, outputs, batch, batch_idx, dataloader_idx=0):
        self.collected.append(outputs)  # `outputs` is exactly what test_step returned

    def on_test_epoch_end(self):
        errors = torch.cat([o["per_image_mse"] for o in self.collected])
        labels = torch.cat([o["labels"] for o in self.collected])
        worst = max(range(10), key=lambda digit: errors[labels == digit].mean().item())
        self.log("images_scored", float(len(errors)))
        self.log("worst_digit", float(worst))


if __name__ == "__main__":
    from _digits import enter_root, mnist_like
    from s1_train_autoencoder import Decoder, Encoder

    enter_root(__doc__)
    pl.seed_everything(0)
    data = mnist_like(600)
    train_set, valid_set, test_set = torch.utils.data.random_split(data, [400, 100, 100])
    train_loader = DataLoader(train_set, batch_size=16, shuffle=True)
    valid_loader = DataLoader(valid_set, batch_size=50)
    model = LitAutoEncoder(Encoder(), Decoder())

    # train with both splits (the notes' `Trainer()`, with max_epochs set so it stops after 3 epochs)
    trainer = Trainer(max_epochs=3, log_every_n_steps=5)
    trainer.fit(model, train_loader, valid_loader)
    print(f"val_loss after fit: {trainer.callback_metrics['val_loss'].item():.4f}")

    # initialize the Trainer
    trainer = Trainer()

    # test the model
    results = trainer.test(model, dataloaders=DataLoader(test_set))
    print(f"trainer.test returned: {[sorted(r) for r in results]}, test_loss={results[0]['test_loss']:.4f}")

    # The open question in the notes: test_step returning more than a loss.
    scored = ScoredAutoEncoder(model.encoder, model.decoder)
    (scores,) = Trainer(logger=False).test(scored, dataloaders=DataLoader(test_set, batch_size=25), verbose=False)
    print(
        f"scored {int(scores['images_scored'])} images in {len(scored.collected)} batches;"
        f" hardest digit to reconstruct: {int(scores['worst_digit'])}; test_loss={scores['test_loss']:.4f}"
    )

    for version in sorted(os.listdir("lightning_logs")):
        with open(os.path.join("lightning_logs", version, "metrics.csv")) as f:
            print(f"lightning_logs/{version}/metrics.csv header: {f.readline().strip()}")
