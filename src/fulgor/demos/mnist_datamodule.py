"""Lightning's MNIST demo data (`demos.mnist_datamodule`): `MNIST` (torchvision's when installed, else the copy
Lightning hosts as two `torch.save`d files) and MNISTDataModule (train/validation split, test set, loaders)."""

from __future__ import annotations

import os
import random
import sys
import time
import warnings
from collections.abc import Callable, Sized
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, random_split

from fulgor.datamodule import LightningDataModule
from fulgor.demos.downloads import DatasetNotAvailableError, download

__all__ = ["MNIST", "MNISTDataModule"]

_DATASETS_PATH = "./data"
_HOSTED_FORMAT = (
    "each file a `torch.save`d tuple `(images, labels)`: uint8 images of shape [N, 28, 28] and int64 labels of"
    " shape [N] (the files of https://pl-public-data.s3.amazonaws.com/MNIST/processed/)."
)


class _MNIST(Dataset[tuple[Tensor, int]]):
    """MNIST from Lightning's hosted copy: ``<root>/MNIST/complete/training.pt`` and ``test.pt``.

    Args:
        root: the data folder.
        train: the training set (else the test set).
        normalize: (mean, std) applied to the images; None keeps raw pixel values.
        download: download the files when they are missing.
        kwargs: ignored (accepts torchvision's `transform` and friends).
    """

    RESOURCES = (
        "https://pl-public-data.s3.amazonaws.com/MNIST/processed/training.pt",
        "https://pl-public-data.s3.amazonaws.com/MNIST/processed/test.pt",
    )
    TRAIN_FILE_NAME = "training.pt"
    TEST_FILE_NAME = "test.pt"
    cache_folder_name = "complete"

    def __init__(
        self,
        root: str,
        train: bool = True,
        normalize: tuple[float, float] | None = (0.1307, 0.3081),
        download: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.root = root
        self.train = train
        self.normalize = normalize
        self.prepare_data(download)
        name = self.TRAIN_FILE_NAME if self.train else self.TEST_FILE_NAME
        self.data, self.targets = self._try_load(os.path.join(self.cached_folder_path, name))

    def __getitem__(self, idx: int) -> tuple[Tensor, int]:
        image = self.data[idx].float().unsqueeze(0)
        if self.normalize is not None and len(self.normalize) == 2:
            image = self.normalize_tensor(image, *self.normalize)
        return image, int(self.targets[idx])

    def __len__(self) -> int:
        return len(self.data)

    @property
    def cached_folder_path(self) -> str:
        return os.path.join(self.root, "MNIST", self.cache_folder_name)

    def _check_exists(self, data_folder: str) -> bool:
        names = (self.TRAIN_FILE_NAME, self.TEST_FILE_NAME)
        return all(os.path.isfile(os.path.join(data_folder, name)) for name in names)

    def prepare_data(self, download: bool = True) -> None:
        """Download the files if asked and missing.

        Raises:
            DatasetNotAvailableError: they are missing (and could not be downloaded); the message says where to put
                them.
        """
        folder = self.cached_folder_path
        if download and not self._check_exists(folder):
            self._download(folder)
        if not self._check_exists(folder):
            raise DatasetNotAvailableError(
                f"Dataset not found. MNIST looked for {self.TRAIN_FILE_NAME!r} and {self.TEST_FILE_NAME!r} in"
                f" {os.path.abspath(folder)!r}: place them there ({_HOSTED_FORMAT}), or pass `download=True`."
            )

    def _download(self, data_folder: str) -> None:
        for url in self.RESOURCES:
            download(url, os.path.join(data_folder, os.path.basename(url)), _HOSTED_FORMAT)

    @staticmethod
    def _try_load(path_data: str, trials: int = 30, delta: float = 1.0) -> tuple[Tensor, Tensor]:
        """Load a data file, retrying a while: another process may be writing it (several ranks preparing data)."""
        assert trials, "at least some trial has to be set"
        assert os.path.isfile(path_data), f"missing file: {path_data}"
        for trial in range(trials):
            try:
                loaded: tuple[Tensor, Tensor] = torch.load(path_data, weights_only=True)
                return loaded
            except Exception:
                if trial == trials - 1:
                    raise
                time.sleep(delta * random.random())  # a jitter, so concurrent readers do not retry in step
        raise AssertionError("unreachable")

    @staticmethod
    def normalize_tensor(tensor: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
        """``(tensor - mean) / std`` in the tensor's dtype and device."""
        mean_t = torch.as_tensor(mean, dtype=tensor.dtype, device=tensor.device)
        std_t = torch.as_tensor(std, dtype=tensor.dtype, device=tensor.device)
        return tensor.sub(mean_t).div(std_t)


# Lightning's name: a function that stands for a dataset class.
def MNIST(*args: Any, **kwargs: Any) -> Dataset[Any]:
    """The MNIST dataset: torchvision's when it is installed (and ``PL_USE_MOCKED_MNIST`` is not set) and reachable,
    else Lightning's hosted copy (`root`, `train`, `normalize`, `download`)."""
    if not os.getenv("PL_USE_MOCKED_MNIST") and _torchvision_available():
        from torchvision.datasets import MNIST as TorchvisionMNIST

        try:
            return TorchvisionMNIST(*args, **kwargs)  # type: ignore[no-any-return]
        except (OSError, RuntimeError) as err:  # no network, or the files are missing
            print(f"Error {err} loading `torchvision.datasets.MNIST`. Using our hosted version")  # noqa: T201
    return _MNIST(*args, **kwargs)


def _torchvision_available() -> bool:
    try:
        import torchvision  # noqa: F401
    except ImportError:
        return False
    return True


class MNISTDataModule(LightningDataModule):
    """MNIST's training set split into training and validation sets, and its test set.

    Args:
        data_dir: where the data is saved and loaded.
        val_split: how many training images form the validation set.
        num_workers: loader worker processes (0 on Windows, with a warning).
        normalize: normalize the images (with torchvision's transforms).
        seed: kept as an attribute; the split is drawn with seed 42, as in Lightning.
        batch_size: samples per batch.
    """

    name = "mnist"

    def __init__(
        self,
        data_dir: str = _DATASETS_PATH,
        val_split: int = 5000,
        num_workers: int = 16,
        normalize: bool = False,
        seed: int = 42,
        batch_size: int = 32,
    ) -> None:
        super().__init__()
        if num_workers and sys.platform == "win32":
            warnings.warn(
                f"You have requested num_workers={num_workers} on Windows,"
                " but currently recommended is 0, so we set it for you",
                stacklevel=2,
            )
            num_workers = 0
        self.data_dir = data_dir
        self.val_split = val_split
        self.num_workers = num_workers
        self.normalize = normalize
        self.seed = seed
        self.batch_size = batch_size

    @property
    def num_classes(self) -> int:
        return 10

    def prepare_data(self) -> None:
        """Download the training and test sets to `data_dir` (when missing)."""
        MNIST(self.data_dir, train=True, download=True)
        MNIST(self.data_dir, train=False, download=True)

    def setup(self, stage: str) -> None:
        """Split the training set into `dataset_train` and `dataset_val` (`val_split` images)."""
        dataset = MNIST(self.data_dir, train=True, download=False, **self._transform_kwargs())
        assert isinstance(dataset, Sized)
        sizes = [len(dataset) - self.val_split, self.val_split]
        self.dataset_train, self.dataset_val = random_split(dataset, sizes, generator=torch.Generator().manual_seed(42))

    def train_dataloader(self) -> DataLoader[Any]:
        return self._loader(self.dataset_train, shuffle=True)

    def val_dataloader(self) -> DataLoader[Any]:
        return self._loader(self.dataset_val, shuffle=False)

    def test_dataloader(self) -> DataLoader[Any]:
        dataset = MNIST(self.data_dir, train=False, download=False, **self._transform_kwargs())
        return self._loader(dataset, shuffle=False)

    def _loader(self, dataset: Dataset[Any], shuffle: bool) -> DataLoader[Any]:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            drop_last=True,
            pin_memory=True,
        )

    def _transform_kwargs(self) -> dict[str, Any]:
        transform = self.default_transforms
        return {"transform": transform} if transform else {}

    @property
    def default_transforms(self) -> Callable[..., Any] | None:
        """torchvision's `ToTensor` (then `Normalize((0.5,), (0.5,))` with `normalize`); None without torchvision."""
        if not _torchvision_available():
            return None
        from torchvision import transforms

        if self.normalize:
            return transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean=(0.5,), std=(0.5,))])  # type: ignore[no-any-return]
        return transforms.ToTensor()  # type: ignore[no-any-return]
