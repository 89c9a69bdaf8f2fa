"""Lightning's demo models and data (`lightning.pytorch.demos`): BoringModel and friends for tests and bug reports,
the LSTM and transformer language models on WikiText-2, and MNIST. Not imported by `import fulgor`."""

from fulgor.demos.boring_classes import BoringDataModule, BoringModel, DemoModel
from fulgor.demos.lstm import LightningLSTM, SequenceSampler, SimpleLSTM
from fulgor.demos.transformer import LightningTransformer, Transformer, WikiText2

__all__ = [
    "BoringDataModule",
    "BoringModel",
    "DemoModel",
    "LightningLSTM",
    "LightningTransformer",
    "SequenceSampler",
    "SimpleLSTM",
    "Transformer",
    "WikiText2",
]
