"""LightningDataModule: defaults and messages, hyperparameters, hooks, from_datasets (compared with Lightning's)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset, RandomSampler, SequentialSampler, TensorDataset

from fulgor.datamodule import LightningDataModule, dataloader_is_defined
from fulgor.errors import MisconfigurationException


class Stream(IterableDataset[int]):
    def __iter__(self) -> Any:
        return iter(range(3))


def _data(n: int = 6) -> TensorDataset:
    return TensorDataset(torch.arange(n, dtype=torch.float32))


def test_defaults() -> None:
    dm = LightningDataModule()
    assert dm.trainer is None
    assert dm.prepare_data_per_node is True
    assert dm.allow_zero_length_dataloader_with_multiple_devices is False
    assert dm.name is None
    assert (dm.CHECKPOINT_HYPER_PARAMS_KEY, dm.CHECKPOINT_HYPER_PARAMS_NAME, dm.CHECKPOINT_HYPER_PARAMS_TYPE) == (
        "datamodule_hyper_parameters",
        "datamodule_hparams_name",
        "datamodule_hparams_type",
    )
    assert dm.prepare_data() is None
    assert dm.setup("fit") is None
    assert dm.teardown("fit") is None
    assert dm.state_dict() == {}
    assert dm.load_state_dict({"a": 1}) is None
    assert dm.on_exception(RuntimeError()) is None
    batch = [torch.ones(1)]
    assert dm.on_before_batch_transfer(batch, 0) is batch
    assert dm.on_after_batch_transfer(batch, 0) is batch
    moved = dm.transfer_batch_to_device({"x": batch}, torch.device("cpu"), 0)
    assert torch.equal(moved["x"][0], torch.ones(1))
    assert dm.hparams == {}
    assert dm._log_hyperparams is False


@pytest.mark.parametrize("hook", ["train_dataloader", "val_dataloader", "test_dataloader", "predict_dataloader"])
def test_missing_dataloader_message(hook: str) -> None:
    dm = LightningDataModule()
    with pytest.raises(MisconfigurationException) as err:
        getattr(dm, hook)()
    assert str(err.value) == f"`{hook}` must be implemented to be used with the Lightning Trainer"
    assert not dataloader_is_defined(dm, hook)


class MyData(LightningDataModule):
    def __init__(self, data_dir: str = "./data", batch_size: int = 4, **kwargs: Any) -> None:
        super().__init__()
        self.save_hyperparameters(ignore="data_dir")

    def train_dataloader(self) -> DataLoader[Any]:
        return DataLoader(_data(), batch_size=self.hparams.batch_size)


def test_hyperparameters() -> None:
    dm = MyData(batch_size=2, seed=3)
    assert list(dm.hparams.items()) == [("batch_size", 2), ("seed", 3)]
    assert dm._hparams_name == "kwargs"
    assert dm._log_hyperparams is True
    dm.hparams.batch_size = 5
    assert dm.hparams_initial == {"batch_size": 2, "seed": 3}
    assert len(dm.train_dataloader()) == 2
    assert dataloader_is_defined(dm, "train_dataloader")
    assert not dataloader_is_defined(dm, "val_dataloader")


@pytest.mark.oracle
def test_hyperparameters_same_as_lightning() -> None:
    pl = pytest.importorskip("pytorch_lightning")

    class Theirs(pl.LightningDataModule):
        def __init__(self, data_dir: str = "./data", batch_size: int = 4, **kwargs: Any) -> None:
            super().__init__()
            self.save_hyperparameters(ignore="data_dir")

    ours, theirs = MyData(batch_size=2, seed=3), Theirs(batch_size=2, seed=3)
    assert repr(ours.hparams) == repr(theirs.hparams)
    assert (ours._hparams_name, ours._log_hyperparams) == (theirs._hparams_name, theirs._log_hyperparams)


@pytest.mark.filterwarnings("ignore:'pin_memory' argument")
def test_from_datasets() -> None:
    dm = MyData.from_datasets(_data(6), val_dataset=[_data(4), Stream()], batch_size=3, num_workers=0, seed=1)
    assert isinstance(dm, MyData)
    # __init__ takes **kwargs, so both batch_size and num_workers reach it
    assert dm.hparams == {"batch_size": 3, "seed": 1, "num_workers": 0}
    train = dm.train_dataloader()
    assert isinstance(train.sampler, RandomSampler)
    assert (train.batch_size, train.num_workers, train.pin_memory) == (3, 0, True)
    val = dm.val_dataloader()
    assert isinstance(val, list)
    assert isinstance(val[0].sampler, SequentialSampler)
    assert [len(list(loader)) for loader in val] == [2, 1]
    assert dataloader_is_defined(dm, "val_dataloader")
    assert not dataloader_is_defined(dm, "test_dataloader")
    with pytest.raises(MisconfigurationException, match="`test_dataloader` must be implemented"):
        dm.test_dataloader()
    # __init__ without batch_size/num_workers: they are not passed
    plain = LightningDataModule.from_datasets(predict_dataset={"a": _data(2)})
    assert list(plain.predict_dataloader()) == ["a"]
    assert isinstance(plain.predict_dataloader()["a"], DataLoader)


@pytest.mark.oracle
@pytest.mark.filterwarnings("ignore:'pin_memory' argument")
def test_from_datasets_same_as_lightning() -> None:
    pl = pytest.importorskip("pytorch_lightning")

    def describe(dm: Any) -> list[Any]:
        out = []
        for hook in ("train_dataloader", "val_dataloader"):
            loaders = getattr(dm, hook)()
            for loader in loaders if isinstance(loaders, list) else [loaders]:
                out.append((type(loader.sampler).__name__, loader.batch_size, loader.num_workers, loader.pin_memory))
        return out

    args = {"train_dataset": _data(6), "val_dataset": [_data(4), Stream()], "batch_size": 3}
    assert describe(LightningDataModule.from_datasets(**args)) == describe(pl.LightningDataModule.from_datasets(**args))


@pytest.mark.filterwarnings("ignore:'pin_memory' argument")
def test_str() -> None:
    assert str(MyData()).splitlines() == [
        "{Train dataloader: size=6}",
        "{Validation dataloader: None}",
        "{Test dataloader: None}",
        "{Predict dataloader: None}",
    ]
    dm = LightningDataModule.from_datasets(val_dataset=[_data(4), Stream()], test_dataset=Stream())
    assert str(dm).splitlines()[1:3] == [
        "{Validation dataloader: 1. size=4 ; 2. size=NA}",
        "{Test dataloader: size=NA}",
    ]


@pytest.mark.oracle
@pytest.mark.filterwarnings("ignore:'pin_memory' argument")
def test_str_same_as_lightning() -> None:
    pl = pytest.importorskip("pytorch_lightning")
    args = {"train_dataset": _data(6), "val_dataset": [_data(4), Stream()], "predict_dataset": Stream()}
    assert str(LightningDataModule.from_datasets(**args)) == str(pl.LightningDataModule.from_datasets(**args))
