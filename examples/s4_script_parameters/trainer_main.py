"""Seed notes section 4 (trainer_main.py), as written with only the import changed: program args, model args and
all Trainer flags on one command line. Try:

    python trainer_main.py --accelerator cpu --devices 1 --max_epochs 2 --conda_env my_env --encoder_layers 2
    python trainer_main.py --accelerator 'gpu' --devices 2 --num_nodes 2 --conda_env 'my_env' --encoder_layers 12

(the second needs 2 nodes with 2 GPUs each; on a machine without GPUs it stops after parsing with a clear error).
"""

from argparse import ArgumentParser

import torch
from model import LitModel
from torch.utils.data import DataLoader, TensorDataset

from fulgor import Trainer  # the seed: `from pytorch_lightning import Trainer`

parser = ArgumentParser()

# add PROGRAM level args
parser.add_argument("--conda_env", type=str, default="some_name")
parser.add_argument("--notification_email", type=str, default="will@email.com")

# add model specific args
parser = LitModel.add_model_specific_args(parser)

# add all the available trainer options to argparse
# ie: now --accelerator --devices --num_nodes ... --fast_dev_run all work in the cli
parser = Trainer.add_argparse_args(parser)

args = parser.parse_args()

# init the trainer like this
trainer = Trainer.from_argparse_args(args, early_stopping_callback=...)

# NOT like this
# trainer = Trainer(accelerator=hparams.accelerator, devices=hparams.devices, ...)

# init the model with Namespace directly
model = LitModel(args)

# or init the model with all the key-value pairs
dict_args = vars(args)
model = LitModel(**dict_args)

# (not in the seed) train on a small seeded regression problem so the run shows something
g = torch.Generator().manual_seed(0)
x = torch.randn(64, 8, generator=g)
data = DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=16)
trainer.fit(model, data)
print(f"conda_env={args.conda_env} encoder_layers={model.encoder_layers} global_step={trainer.global_step}")
