"""Lightning's transformer language-model demo (`demos.transformer`, after PyTorch's word_language_model example):
Transformer, PositionalEncoding, the WikiText2 dataset with its Dictionary and `tokenize`, and LightningTransformer."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from fulgor.demos.downloads import download
from fulgor.module import LightningModule

__all__ = ["Dictionary", "LightningTransformer", "PositionalEncoding", "Transformer", "WikiText2", "tokenize"]

WIKITEXT2_URL = "https://raw.githubusercontent.com/pytorch/examples/main/word_language_model/data/wikitext-2/train.txt"
_WIKITEXT2_FORMAT = (
    "the training split of WikiText-2 as plain UTF-8 text (the `train.txt` of pytorch/examples'"
    " word_language_model/data/wikitext-2), or any text: one sentence per line, tokens separated by whitespace."
)


class Transformer(nn.Module):
    """An encoder-decoder `nn.Transformer` language model over a `vocab_size`-word vocabulary.

    Args:
        vocab_size: words in the vocabulary (33278: WikiText-2's).
        ninp: embedding size.
        nhead: attention heads.
        nhid: feed-forward size.
        nlayers: encoder layers, and decoder layers.
        dropout: dropout probability.
    """

    def __init__(
        self,
        vocab_size: int = 33278,
        ninp: int = 200,
        nhead: int = 2,
        nhid: int = 200,
        nlayers: int = 2,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.pos_encoder = PositionalEncoding(ninp, dropout)
        self.embedding = nn.Embedding(vocab_size, ninp)
        self.transformer = nn.Transformer(
            d_model=ninp,
            nhead=nhead,
            num_encoder_layers=nlayers,
            num_decoder_layers=nlayers,
            dim_feedforward=nhid,
            dropout=dropout,
            batch_first=True,
        )
        self.decoder = nn.Linear(ninp, vocab_size)
        self.ninp = ninp
        self.vocab_size = vocab_size
        self.src_mask: Tensor | None = None

    def generate_square_subsequent_mask(self, size: int) -> Tensor:
        """A `size` x `size` mask with -inf above the diagonal: position i sees positions <= i only."""
        return torch.zeros(size, size).masked_fill(torch.ones(size, size).triu(diagonal=1) == 1, float("-inf"))

    def forward(self, inputs: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        """Log-probabilities of the next word, one row per (sequence, position): shape ``[batch * t, vocab_size]``."""
        t = inputs.shape[1]
        if self.src_mask is None or self.src_mask.size(0) != t:
            self.src_mask = self.generate_square_subsequent_mask(t).to(inputs.device)  # kept as Lightning's is
        if mask is None:
            mask = self.generate_square_subsequent_mask(t).to(inputs.device)
        scale = math.sqrt(self.ninp)
        src = self.pos_encoder(self.embedding(inputs) * scale)
        tgt = self.pos_encoder(self.embedding(target) * scale)
        output = self.decoder(self.transformer(src, tgt, tgt_mask=mask))
        return F.log_softmax(output, dim=-1).view(-1, self.vocab_size)


class PositionalEncoding(nn.Module):
    """Sinusoidal position encodings added to the embeddings, then dropout.

    Like Lightning's, it adds the encoding row at index ``x.size(1)`` (the sequence length) to every position, so
    the demo's numbers match Lightning's.

    Args:
        dim: embedding size.
        dropout: dropout probability.
        max_len: positions encoded.
    """

    def __init__(self, dim: int, dropout: float = 0.1, max_len: int = 5000) -> None:
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        self.dim = dim
        self.max_len = max_len
        # Built at the first forward on the input's device; neither a buffer nor a parameter, as in Lightning (a
        # buffer would change the state dict, and DDP wants every parameter used).
        self.pe: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.pe is None:
            self.pe = self._init_pos_encoding(device=x.device)
        return self.dropout(x + self.pe[:, x.size(1)])  # type: ignore[no-any-return]

    def _init_pos_encoding(self, device: torch.device) -> Tensor:
        position = torch.arange(0, self.max_len, dtype=torch.float, device=device).unsqueeze(1)
        frequencies = torch.exp(torch.arange(0, self.dim, 2, device=device).float() * (-math.log(10000.0) / self.dim))
        pe = torch.zeros(self.max_len, self.dim, device=device)
        pe[:, 0::2] = torch.sin(position * frequencies)
        pe[:, 1::2] = torch.cos(position * frequencies)
        return pe.unsqueeze(0)


class Dictionary:
    """Words <-> ids, in order of first appearance."""

    def __init__(self) -> None:
        self.word2idx: dict[str, int] = {}
        self.idx2word: list[str] = []

    def add_word(self, word: str) -> int:
        """The id of `word`, added at the end if new."""
        if word not in self.word2idx:
            self.word2idx[word] = len(self.idx2word)
            self.idx2word.append(word)
        return self.word2idx[word]

    def __len__(self) -> int:
        return len(self.idx2word)


def tokenize(path: Path) -> tuple[Tensor, Dictionary]:
    """The ids of every word of the text file `path`, each line ending with ``<eos>``, and the dictionary built.

    Raises:
        FileNotFoundError: `path` does not exist.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"No text to tokenize at {str(path)!r}: place {_WIKITEXT2_FORMAT}")
    dictionary = Dictionary()
    ids: list[int] = []
    with open(path, encoding="utf8") as text:
        for line in text:
            ids.extend(dictionary.add_word(word) for word in [*line.split(), "<eos>"])
    return torch.tensor(ids, dtype=torch.int64), dictionary


class WikiText2(Dataset[tuple[Tensor, Tensor]]):
    """WikiText-2's training text as (input, target) blocks of `block_size` word ids, the target shifted by one.

    The text is `data_dir / "wikitext-2.txt"`, downloaded there when missing (with `download=True`). Without network
    access, put the file there yourself: the error says where and what it holds.

    Args:
        data_dir: the folder of ``wikitext-2.txt``.
        block_size: words per block.
        download: download the file when it is missing.
    """

    def __init__(self, data_dir: Path = Path("./data"), block_size: int = 35, download: bool = True) -> None:
        super().__init__()
        self.path = Path(data_dir) / "wikitext-2.txt"
        if download:
            self.download(self.path)
        self.data, self.dictionary = tokenize(self.path)
        self.block_size = block_size

    @property
    def vocab_size(self) -> int:
        return len(self.dictionary)

    def __len__(self) -> int:
        return len(self.data) // self.block_size - 1

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        start = index * self.block_size
        return self.data[start : start + self.block_size], self.data[start + 1 : start + self.block_size + 1]

    @staticmethod
    def download(destination: Path) -> None:
        """Download WikiText-2's training text to `destination`, unless the file is there.

        Raises:
            DatasetNotAvailableError: the file is missing and cannot be downloaded.
        """
        if os.path.exists(destination):
            return
        download(WIKITEXT2_URL, destination, _WIKITEXT2_FORMAT)


class LightningTransformer(LightningModule):
    """`Transformer` trained on WikiText-2 with SGD (lr 0.1), one block per batch.

    Args:
        vocab_size: words in the vocabulary.
    """

    def __init__(self, vocab_size: int = 33278) -> None:
        super().__init__()
        self.model = Transformer(vocab_size=vocab_size)

    def forward(self, inputs: Tensor, target: Tensor) -> Tensor:
        return self.model(inputs, target)  # type: ignore[no-any-return]

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        inputs, target = batch
        return F.nll_loss(self(inputs, target), target.view(-1))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.model.parameters(), lr=0.1)

    def prepare_data(self) -> None:
        WikiText2(download=True)

    def train_dataloader(self) -> DataLoader[tuple[Tensor, Tensor]]:
        return DataLoader(WikiText2())
