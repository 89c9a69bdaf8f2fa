"""Lightning's LSTM language-model demo (`demos.lstm`, after PyTorch's word_language_model example): SimpleLSTM, the
SequenceSampler that keeps each batch row a contiguous stream of text, and LightningLSTM trained on WikiText-2."""

from __future__ import annotations

from collections.abc import Iterator, Sized

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.utils.data import DataLoader, Sampler

from fulgor.demos.transformer import WikiText2
from fulgor.module import LightningModule

__all__ = ["LightningLSTM", "SequenceSampler", "SimpleLSTM"]


class SimpleLSTM(nn.Module):
    """Embedding -> dropout -> stacked LSTM -> dropout -> linear decoder -> log-softmax over the vocabulary.

    Args:
        vocab_size: words in the vocabulary.
        ninp: embedding size.
        nhid: LSTM hidden size.
        nlayers: LSTM layers.
        dropout: dropout probability (between LSTM layers too).
    """

    def __init__(
        self, vocab_size: int = 33278, ninp: int = 512, nhid: int = 512, nlayers: int = 4, dropout: float = 0.2
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(vocab_size, ninp)
        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout, batch_first=True)
        self.decoder = nn.Linear(nhid, vocab_size)
        self.nlayers = nlayers
        self.nhid = nhid
        self.init_weights()

    def init_weights(self) -> None:
        """Uniform(-0.1, 0.1) embedding and decoder weights, zero decoder bias."""
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def forward(self, input: Tensor, hidden: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Log-probabilities ``[batch * t, vocab_size]`` of the next word, and the LSTM's new (h, c)."""
        output, hidden = self.rnn(self.drop(self.encoder(input)), hidden)
        decoded = self.decoder(self.drop(output)).view(-1, self.vocab_size)
        return F.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, batch_size: int) -> tuple[Tensor, Tensor]:
        """Zero (h, c) for `batch_size` sequences, on the model's device and dtype."""
        weight = next(self.parameters())
        shape = (self.nlayers, batch_size, self.nhid)
        return weight.new_zeros(shape), weight.new_zeros(shape)


class SequenceSampler(Sampler[list[int]]):
    """Batches whose row r at step i is block ``i + r * chunk_size``: the dataset is cut into `batch_size` chunks
    read side by side, so a row's hidden state carries over from one batch to the next.

    Args:
        dataset: the dataset (its length is used).
        batch_size: rows per batch.
    """

    def __init__(self, dataset: Sized, batch_size: int) -> None:
        super().__init__()
        self.dataset = dataset
        self.batch_size = batch_size
        self.chunk_size = len(self.dataset) // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        n = len(self.dataset)
        usable = n - n % self.batch_size
        for step in range(self.chunk_size):
            yield list(range(step, usable, self.chunk_size))

    def __len__(self) -> int:
        return self.chunk_size


class LightningLSTM(LightningModule):
    """`SimpleLSTM` trained on WikiText-2 with SGD (lr 20), the hidden state carried across batches (truncated
    backpropagation through time) and reset at each epoch's end.

    Args:
        vocab_size: words in the vocabulary.
    """

    def __init__(self, vocab_size: int = 33278) -> None:
        super().__init__()
        self.model = SimpleLSTM(vocab_size=vocab_size)
        self.hidden: tuple[Tensor, Tensor] | None = None

    def on_train_epoch_end(self) -> None:
        self.hidden = None

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        inputs, target = batch
        if self.hidden is None:
            self.hidden = self.model.init_hidden(inputs.size(0))
        hidden = (self.hidden[0].detach(), self.hidden[1].detach())  # no gradient into earlier batches
        output, self.hidden = self.model(inputs, hidden)
        loss = F.nll_loss(output, target.view(-1))
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def prepare_data(self) -> None:
        WikiText2(download=True)

    def train_dataloader(self) -> DataLoader[tuple[Tensor, Tensor]]:
        dataset = WikiText2()
        return DataLoader(dataset, batch_sampler=SequenceSampler(dataset, batch_size=20))

    def configure_optimizers(self) -> Optimizer:
        return torch.optim.SGD(self.parameters(), lr=20.0)
