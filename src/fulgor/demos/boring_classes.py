"""Lightning's testing and debugging models and data (`demos.boring_classes`): BoringModel and its datamodules, the
random datasets, ManualOptimBoringModel, DemoModel and the MNIST Net. Bug reports and test suites are written
against these: with the same seed they draw the same numbers and train to the same weights as Lightning's."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset

from fulgor.datamodule import LightningDataModule
from fulgor.module import LightningModule
from fulgor.optimizer import LightningOptimizer

__all__ = [
    "BoringDataModule",
    "BoringDataModuleNoLen",
    "BoringModel",
    "DemoModel",
    "IterableBoringDataModule",
    "ManualOptimBoringModel",
    "Net",
    "RandomDataset",
    "RandomDictDataset",
    "RandomIterableDataset",
    "RandomIterableDatasetWithLen",
]

# ---------------------------------------------------------------------------------------------------------------------
# random datasets: the data is drawn from torch's global generator when the dataset is made (map-style) or each time
# it is iterated (iterable), so `seed_everything` fixes it


class RandomDataset(Dataset[Tensor]):
    """`length` random vectors of `size` features.

    Args:
        size: features per sample.
        length: number of samples.
    """

    def __init__(self, size: int, length: int) -> None:
        self.len = length
        self.data = torch.randn(length, size)

    def __getitem__(self, index: int) -> Tensor:
        return self.data[index]

    def __len__(self) -> int:
        return self.len


class RandomDictDataset(Dataset[dict[str, Tensor]]):
    """`length` samples ``{"a": x, "b": x + 2}`` with ``x`` a random vector of `size` features.

    Args:
        size: features per sample.
        length: number of samples.
    """

    def __init__(self, size: int, length: int) -> None:
        self.len = length
        self.data = torch.randn(length, size)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        sample = self.data[index]
        return {"a": sample, "b": sample + 2}

    def __len__(self) -> int:
        return self.len


class RandomIterableDataset(IterableDataset[Tensor]):
    """`count` random vectors of `size` features, drawn anew on every pass; no length.

    Args:
        size: features per sample.
        count: samples per pass.
    """

    def __init__(self, size: int, count: int) -> None:
        self.count = count
        self.size = size

    def __iter__(self) -> Iterator[Tensor]:
        for _ in range(self.count):
            yield torch.randn(self.size)


class RandomIterableDatasetWithLen(IterableDataset[Tensor]):
    """Like `RandomIterableDataset`, with ``len()`` = `count`.

    Args:
        size: features per sample.
        count: samples per pass.
    """

    def __init__(self, size: int, count: int) -> None:
        self.count = count
        self.size = size

    def __iter__(self) -> Iterator[Tensor]:
        for _ in range(len(self)):
            yield torch.randn(self.size)

    def __len__(self) -> int:
        return self.count


# ---------------------------------------------------------------------------------------------------------------------
# models


class BoringModel(LightningModule):
    """A `Linear(32, 2)` pulled towards ones by an MSE loss, with SGD (lr 0.1), StepLR (step_size 1) and loaders of 64
    random samples (batch size 1) for every stage. Subclass it and change what your test is about::

        class TestModel(BoringModel):
            def training_step(self, batch, batch_idx):
                ...
    """

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(32, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x)  # type: ignore[no-any-return]

    def loss(self, preds: Tensor, labels: Tensor | None = None) -> Tensor:
        """MSE against `labels` (ones by default): any loss that moves the weights will do."""
        target = torch.ones_like(preds) if labels is None else labels
        return F.mse_loss(preds, target)

    def step(self, batch: Any) -> Tensor:
        return self.loss(self(batch))

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        return {"loss": self.step(batch)}

    def validation_step(self, batch: Any, batch_idx: int) -> Any:
        return {"x": self.step(batch)}

    def test_step(self, batch: Any, batch_idx: int) -> Any:
        return {"y": self.step(batch)}

    def configure_optimizers(self) -> tuple[list[Optimizer], list[LRScheduler]]:
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
        return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)]

    def train_dataloader(self) -> DataLoader[Any]:
        return DataLoader(RandomDataset(32, 64))

    def val_dataloader(self) -> DataLoader[Any]:
        return DataLoader(RandomDataset(32, 64))

    def test_dataloader(self) -> DataLoader[Any]:
        return DataLoader(RandomDataset(32, 64))

    def predict_dataloader(self) -> DataLoader[Any]:
        return DataLoader(RandomDataset(32, 64))


class ManualOptimBoringModel(BoringModel):
    """BoringModel with manual optimization: zero_grad, `manual_backward`, step in `training_step`."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        optimizer = self.optimizers()
        assert isinstance(optimizer, (Optimizer, LightningOptimizer))
        loss = self.step(batch)
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()
        return loss


class DemoModel(LightningModule):
    """A `Linear(32, out_dim)` + ReLU whose training loss is the sum of its outputs, trained with Adam.

    Args:
        out_dim: output features.
        learning_rate: Adam's learning rate.
    """

    def __init__(self, out_dim: int = 10, learning_rate: float = 0.02) -> None:
        super().__init__()
        self.l1 = nn.Linear(32, out_dim)
        self.learning_rate = learning_rate

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.l1(x.view(x.size(0), -1)))

    def training_step(self, batch: Any, batch_nb: int) -> Any:
        return self(batch).sum()

    def configure_optimizers(self) -> Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.learning_rate)


class Net(nn.Module):
    """The classic MNIST convnet (two convolutions, max pooling, dropout, two linear layers, log-softmax)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
        x = torch.flatten(self.dropout1(x), 1)
        x = self.dropout2(F.relu(self.fc1(x)))
        return F.log_softmax(self.fc2(x), dim=1)


# ---------------------------------------------------------------------------------------------------------------------
# datamodules


class BoringDataModule(LightningDataModule):
    """256 random samples of 32 features, split in four blocks of 64: train, validation, test and predict."""

    def __init__(self) -> None:
        super().__init__()
        self.random_full = RandomDataset(32, 64 * 4)

    def setup(self, stage: str) -> None:
        block = {"train": range(64), "val": range(64, 128), "test": range(128, 192), "predict": range(192, 256)}
        if stage == "fit":
            self.random_train = Subset(self.random_full, indices=block["train"])
        if stage in ("fit", "validate"):
            self.random_val = Subset(self.random_full, indices=block["val"])
        if stage == "test":
            self.random_test = Subset(self.random_full, indices=block["test"])
        if stage == "predict":
            self.random_predict = Subset(self.random_full, indices=block["predict"])

    def train_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.random_train)

    def val_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.random_val)

    def test_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.random_test)

    def predict_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.random_predict)


class BoringDataModuleNoLen(LightningDataModule):
    """Iterable random datasets (no length): 512 training, 128 validation, 256 test and 64 predict samples."""

    def __init__(self) -> None:
        super().__init__()

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.random_train = RandomIterableDataset(32, 512)
        if stage in ("fit", "validate"):
            self.random_val = RandomIterableDataset(32, 128)
        if stage == "test":
            self.random_test = RandomIterableDataset(32, 256)
        if stage == "predict":
            self.random_predict = RandomIterableDataset(32, 64)

    def train_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.random_train)

    def val_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.random_val)

    def test_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.random_test)

    def predict_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.random_predict)


class IterableBoringDataModule(LightningDataModule):
    """Two loaders per stage, a map-style and an iterable random dataset of 4 features (16 training, 32 validation,
    64 test and 128 predict samples each): training reads them side by side, the other stages one after the other."""

    def __init__(self) -> None:
        super().__init__()

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.train_datasets = _pair(16)
        if stage in ("fit", "validate"):
            self.val_datasets = _pair(32)
        if stage == "test":
            self.test_datasets = _pair(64)
        if stage == "predict":
            self.predict_datasets = _pair(128)

    def train_dataloader(self) -> list[DataLoader[Any]]:
        return [DataLoader(dataset) for dataset in self.train_datasets]

    def val_dataloader(self) -> list[DataLoader[Any]]:
        return [DataLoader(dataset) for dataset in self.val_datasets]

    def test_dataloader(self) -> list[DataLoader[Any]]:
        return [DataLoader(dataset) for dataset in self.test_datasets]

    def predict_dataloader(self) -> list[DataLoader[Any]]:
        return [DataLoader(dataset) for dataset in self.predict_datasets]


def _pair(length: int) -> list[Dataset[Tensor]]:
    return [RandomDataset(4, length), RandomIterableDataset(4, length)]
