"""`LightningDataModule`: the data hooks (prepare/setup/teardown, the four dataloaders, batch transfer), its
hyperparameters and state, and `from_datasets`."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterable, Sized
from typing import TYPE_CHECKING, Any, ClassVar

from torch.utils.data import DataLoader, Dataset, IterableDataset

from fulgor.checkpoint_loading import class_only, load_datamodule_from_checkpoint
from fulgor.hook_defaults import DataHooks
from fulgor.hparams_mixin import HyperparametersMixin
from fulgor.trainer import legacy_argparse

if TYPE_CHECKING:
    from fulgor.trainer.trainer import Trainer

__all__ = ["LightningDataModule", "dataloader_is_defined"]

_DATALOADER_HOOKS = ("train_dataloader", "val_dataloader", "test_dataloader", "predict_dataloader")
_LOADER_LABELS = tuple(zip(("Train", "Validation", "Test", "Predict"), _DATALOADER_HOOKS))  # for __str__


class LightningDataModule(HyperparametersMixin, DataHooks):
    """Groups the data steps of a project: download, split, transform, and the dataloaders for each stage.

    Example::

        class MNISTData(LightningDataModule):
            def __init__(self, batch_size: int = 32):
                super().__init__()
                self.save_hyperparameters()

            def setup(self, stage):
                self.train, self.val = random_split(load_mnist(), [55000, 5000])

            def train_dataloader(self):
                return DataLoader(self.train, batch_size=self.hparams.batch_size)
    """

    name: str | None = None
    CHECKPOINT_HYPER_PARAMS_KEY: ClassVar[str] = "datamodule_hyper_parameters"
    CHECKPOINT_HYPER_PARAMS_NAME: ClassVar[str] = "datamodule_hparams_name"
    CHECKPOINT_HYPER_PARAMS_TYPE: ClassVar[str] = "datamodule_hparams_type"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.trainer: Trainer | None = None
        # True: prepare_data runs on local rank 0 of every node; False: only on global rank 0.
        self.prepare_data_per_node: bool = True
        self.allow_zero_length_dataloader_with_multiple_devices: bool = False
        self._log_hyperparams = False

    # -- hyperparameters ----------------------------------------------------------------------------------------------

    # -- state --------------------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """State to store in checkpoints (default: none)."""
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the state returned by :meth:`state_dict`."""

    @class_only
    def load_from_checkpoint(
        cls: Any,
        checkpoint_path: str | os.PathLike[str] | Any,
        map_location: Any = None,
        hparams_file: str | os.PathLike[str] | None = None,
        weights_only: bool | None = None,
        **kwargs: Any,
    ) -> Any:
        """Build the datamodule from a checkpoint's datamodule hparams (overridden by ``kwargs``) and state."""
        return load_datamodule_from_checkpoint(cls, checkpoint_path, map_location, hparams_file, weights_only, **kwargs)

    def on_exception(self, exception: BaseException) -> None:
        """Called when a Trainer run is interrupted by ``exception``."""

    # -- Lightning 1.x argparse helpers (removed in 2.0, kept so 1.x scripts run) -----------------------------------

    @classmethod
    def add_argparse_args(cls, parent_parser: Any, **kwargs: Any) -> Any:
        """Add one `--flag` per `__init__` argument (1.x API)."""
        return legacy_argparse.add_argparse_args(cls, parent_parser, **kwargs)

    @classmethod
    def from_argparse_args(cls, args: Any, **kwargs: Any) -> Any:
        """Build the datamodule from parsed arguments; `kwargs` win (1.x API)."""
        return legacy_argparse.from_argparse_args(cls, args, **kwargs)

    @classmethod
    def parse_argparser(cls, arg_parser: Any) -> Any:
        """Parse `sys.argv` with `arg_parser` and fix up boolean flags (1.x API)."""
        return legacy_argparse.parse_argparser(cls, arg_parser)

    @classmethod
    def get_init_arguments_and_types(cls) -> list[tuple[str, tuple[Any, ...], Any]]:
        """(name, types, default) of every `__init__` argument (1.x API)."""
        return legacy_argparse.get_init_arguments_and_types(cls)

    def __str__(self) -> str:
        """One line per dataloader hook with the dataset size(s), e.g. ``{Train dataloader: size=80}``."""
        lines = []
        for stage, hook in _LOADER_LABELS:
            try:
                info = _describe_loaders(getattr(self, hook)())
            except Exception:  # a missing or failing hook is shown as unavailable, as Lightning does
                info = "None"
            lines.append(f"{{{stage} dataloader: {info}}}")
        return os.linesep.join(lines)

    # -- construction -------------------------------------------------------------------------------------------------

    @classmethod
    def from_datasets(
        cls,
        train_dataset: Dataset[Any] | Iterable[Dataset[Any]] | None = None,
        val_dataset: Dataset[Any] | Iterable[Dataset[Any]] | None = None,
        test_dataset: Dataset[Any] | Iterable[Dataset[Any]] | None = None,
        predict_dataset: Dataset[Any] | Iterable[Dataset[Any]] | None = None,
        batch_size: int = 1,
        num_workers: int = 0,
        **datamodule_kwargs: Any,
    ) -> LightningDataModule:
        """Build a datamodule whose dataloaders wrap the given datasets.

        Each dataset (or each dataset in a list/dict of them) gets a ``DataLoader(batch_size, num_workers,
        pin_memory=True)``; training data is shuffled unless it is an ``IterableDataset``.

        Args:
            train_dataset: dataset(s) for ``train_dataloader``.
            val_dataset: dataset(s) for ``val_dataloader``.
            test_dataset: dataset(s) for ``test_dataloader``.
            predict_dataset: dataset(s) for ``predict_dataloader``.
            batch_size: batch size of every dataloader; also passed to ``__init__`` if it takes ``batch_size``.
            num_workers: worker processes per dataloader; also passed to ``__init__`` if it takes ``num_workers``.
            **datamodule_kwargs: more arguments for ``__init__``.
        """

        def loaders(datasets: Any, shuffle: bool) -> Callable[[], Any]:
            def make() -> Any:
                return _map_datasets(datasets, batch_size, num_workers, shuffle)

            return make

        params = inspect.signature(cls.__init__).parameters
        special = {"batch_size": batch_size, "num_workers": num_workers}
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            special = {k: v for k, v in special.items() if k in params}
        datamodule = cls(**datamodule_kwargs, **special)
        given = (train_dataset, val_dataset, test_dataset, predict_dataset)
        for hook, datasets in zip(_DATALOADER_HOOKS, given):
            if datasets is not None:
                # An instance attribute overrides the hook for this object only; see `dataloader_is_defined`.
                setattr(datamodule, hook, loaders(datasets, shuffle=hook == "train_dataloader"))
        return datamodule


def _describe_loaders(loaders: Any) -> str:
    if isinstance(loaders, DataLoader):
        return f"size={_dataset_size(loaders)}"
    if isinstance(loaders, (list, tuple)):
        return " ; ".join(
            f"{i}. size={_dataset_size(loader)}" if isinstance(loader, DataLoader) else "None"
            for i, loader in enumerate(loaders, start=1)
        )
    return "None"


def _dataset_size(loader: DataLoader[Any]) -> str:
    dataset = loader.dataset
    return str(len(dataset)) if isinstance(dataset, Sized) else "NA"


def _map_datasets(datasets: Any, batch_size: int, num_workers: int, shuffle: bool) -> Any:
    """Replace every Dataset in ``datasets`` (a dataset or a list/tuple/dict of them) by a DataLoader."""
    if isinstance(datasets, Dataset):
        shuffle = shuffle and not isinstance(datasets, IterableDataset)
        return DataLoader(datasets, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers, pin_memory=True)
    if isinstance(datasets, dict):
        return {k: _map_datasets(v, batch_size, num_workers, shuffle) for k, v in datasets.items()}
    if isinstance(datasets, (list, tuple)):
        return type(datasets)(_map_datasets(v, batch_size, num_workers, shuffle) for v in datasets)
    return datasets


def dataloader_is_defined(datamodule: LightningDataModule, hook: str) -> bool:
    """Whether ``datamodule`` provides ``hook`` (e.g. "train_dataloader"): overridden in its class or, as
    :meth:`LightningDataModule.from_datasets` does, set on the instance."""
    if hook in vars(datamodule):
        return callable(vars(datamodule)[hook])  # `dm.val_dataloader = None` switches it off
    return getattr(type(datamodule), hook) is not getattr(LightningDataModule, hook)
