"""Seed notes section 4 (model.py): the LightningModule declares its own command-line arguments.

The seed's snippet shows only `add_model_specific_args`; the `__init__` below is the smallest one that accepts both
ways the seed builds the model, `LitModel(args)` and `LitModel(**vars(args))`, and a tiny network so it can train.
"""

from argparse import Namespace
from typing import Any

import torch
from torch import nn

from fulgor import LightningModule  # the seed: `from pytorch_lightning import LightningModule`


class LitModel(LightningModule):
    def __init__(self, args: Namespace | None = None, **kwargs: Any) -> None:
        super().__init__()
        hparams = {**(vars(args) if args is not None else {}), **kwargs}
        self.encoder_layers = int(hparams.get("encoder_layers", 12))
        self.data_path = hparams.get("data_path", "/some/path")
        self.save_hyperparameters({"encoder_layers": self.encoder_layers, "data_path": self.data_path})
        self.net = nn.Sequential(*[nn.Linear(8, 8) for _ in range(self.encoder_layers)], nn.Linear(8, 1))

    @staticmethod
    def add_model_specific_args(parent_parser):
        parser = parent_parser.add_argument_group("LitModel")
        parser.add_argument("--encoder_layers", type=int, default=12)
        parser.add_argument("--data_path", type=str, default="/some/path")
        return parent_parser

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)
