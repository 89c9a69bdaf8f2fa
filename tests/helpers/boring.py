"""Test helpers shared by the suite: Lightning's BoringModel shape, random datasets, and a HookRecorder that
records every hook call and works unchanged with both `fulgor` and `pytorch_lightning` (the package is passed in)."""

from __future__ import annotations

import inspect
from types import ModuleType, SimpleNamespace
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset


class RandomDataset(Dataset[torch.Tensor]):
    """`length` random vectors of `size` features, seeded so two runs see the same numbers."""

    def __init__(self, size: int, length: int, seed: int = 0) -> None:
        self.len = length
        self.data = torch.randn(length, size, generator=torch.Generator().manual_seed(seed))

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.data[index]

    def __len__(self) -> int:
        return self.len


class XYDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """`length` seeded (x, y) pairs with `in_features` inputs and `out_features` targets."""

    def __init__(self, length: int = 16, in_features: int = 4, out_features: int = 2, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(length, in_features, generator=g)
        self.y = torch.randn(length, out_features, generator=g)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index], self.y[index]

    def __len__(self) -> int:
        return len(self.x)


def boring_classes(pl: ModuleType) -> SimpleNamespace:
    """BoringModel / BoringDataModule built on `pl` (fulgor or pytorch_lightning): Linear(32, 2), SGD lr 0.1,
    StepLR(step_size=1), loaders of 64 random samples with batch size 2."""

    class BoringModel(pl.LightningModule):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(32, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layer(x)

        def loss(self, preds: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.mse_loss(preds, torch.ones_like(preds))

        def step(self, batch: torch.Tensor) -> torch.Tensor:
            return self.loss(self(batch))

        def training_step(self, batch: torch.Tensor, batch_idx: int) -> Any:
            return {"loss": self.step(batch)}

        def validation_step(self, batch: torch.Tensor, batch_idx: int) -> Any:
            return {"x": self.step(batch)}

        def test_step(self, batch: torch.Tensor, batch_idx: int) -> Any:
            return {"y": self.step(batch)}

        def configure_optimizers(self) -> Any:
            optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
            return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)]

        def train_dataloader(self) -> DataLoader[Any]:
            return DataLoader(RandomDataset(32, 64, seed=1), batch_size=2)

        def val_dataloader(self) -> DataLoader[Any]:
            return DataLoader(RandomDataset(32, 64, seed=2), batch_size=2)

        def test_dataloader(self) -> DataLoader[Any]:
            return DataLoader(RandomDataset(32, 64, seed=3), batch_size=2)

        def predict_dataloader(self) -> DataLoader[Any]:
            return DataLoader(RandomDataset(32, 64, seed=4), batch_size=2)

    class BoringDataModule(pl.LightningDataModule):  # type: ignore[misc,name-defined]
        def setup(self, stage: str) -> None:
            self.train = RandomDataset(32, 64, seed=1)
            self.val = RandomDataset(32, 64, seed=2)
            self.test = RandomDataset(32, 64, seed=3)
            self.predict = RandomDataset(32, 64, seed=4)

        def train_dataloader(self) -> DataLoader[Any]:
            return DataLoader(self.train, batch_size=2)

        def val_dataloader(self) -> DataLoader[Any]:
            return DataLoader(self.val, batch_size=2)

        def test_dataloader(self) -> DataLoader[Any]:
            return DataLoader(self.test, batch_size=2)

        def predict_dataloader(self) -> DataLoader[Any]:
            return DataLoader(self.predict, batch_size=2)

    return SimpleNamespace(BoringModel=BoringModel, BoringDataModule=BoringDataModule)


def _fulgor_classes() -> SimpleNamespace:
    import fulgor

    return boring_classes(fulgor)


_FULGOR = _fulgor_classes()
BoringModel = _FULGOR.BoringModel
BoringDataModule = _FULGOR.BoringDataModule


# ---------------------------------------------------------------------------------------------------- hook recording
MODULE_HOOKS = (
    "prepare_data", "setup", "teardown", "configure_model", "configure_callbacks", "configure_optimizers",
    "train_dataloader", "val_dataloader", "test_dataloader", "predict_dataloader",
    "on_fit_start", "on_fit_end", "on_train_start", "on_train_end", "on_validation_start", "on_validation_end",
    "on_test_start", "on_test_end", "on_predict_start", "on_predict_end",
    "on_train_batch_start", "on_train_batch_end", "on_validation_batch_start", "on_validation_batch_end",
    "on_test_batch_start", "on_test_batch_end", "on_predict_batch_start", "on_predict_batch_end",
    "on_validation_model_zero_grad", "on_validation_model_eval", "on_test_model_eval", "on_predict_model_eval",
    "on_validation_model_train", "on_test_model_train",
    "on_train_epoch_start", "on_train_epoch_end", "on_validation_epoch_start", "on_validation_epoch_end",
    "on_test_epoch_start", "on_test_epoch_end", "on_predict_epoch_start", "on_predict_epoch_end",
    "on_before_zero_grad", "on_before_backward", "on_after_backward", "on_before_optimizer_step",
    "transfer_batch_to_device", "on_before_batch_transfer", "on_after_batch_transfer",
    "on_load_checkpoint", "on_save_checkpoint", "training_step", "validation_step", "test_step", "predict_step",
    "forward", "backward", "optimizer_step", "optimizer_zero_grad", "lr_scheduler_step", "configure_gradient_clipping",
)  # fmt: skip

CALLBACK_HOOKS = (
    "setup", "teardown", "on_fit_start", "on_fit_end", "on_sanity_check_start", "on_sanity_check_end",
    "on_train_batch_start", "on_train_batch_end", "on_train_epoch_start", "on_train_epoch_end",
    "on_validation_epoch_start", "on_validation_epoch_end", "on_test_epoch_start", "on_test_epoch_end",
    "on_predict_epoch_start", "on_predict_epoch_end", "on_validation_batch_start", "on_validation_batch_end",
    "on_test_batch_start", "on_test_batch_end", "on_predict_batch_start", "on_predict_batch_end",
    "on_train_start", "on_train_end", "on_validation_start", "on_validation_end", "on_test_start", "on_test_end",
    "on_predict_start", "on_predict_end", "on_exception", "state_dict", "load_state_dict", "on_save_checkpoint",
    "on_load_checkpoint", "on_before_backward", "on_after_backward", "on_before_optimizer_step",
    "on_before_zero_grad",
)  # fmt: skip

DATAMODULE_HOOKS = (
    "prepare_data", "setup", "teardown", "train_dataloader", "val_dataloader", "test_dataloader",
    "predict_dataloader", "transfer_batch_to_device", "on_before_batch_transfer", "on_after_batch_transfer",
    "state_dict", "load_state_dict",
)  # fmt: skip

_STAGES = {"fit": "TrainerFn.FITTING", "validate": "TrainerFn.VALIDATING", "test": "TrainerFn.TESTING",
           "predict": "TrainerFn.PREDICTING"}  # fmt: skip
_STEPS = ("training_step", "validation_step", "test_step", "predict_step", "optimizer_step", "optimizer_zero_grad")
_TRANSFER = ("transfer_batch_to_device", "on_before_batch_transfer", "on_after_batch_transfer")
CHECKPOINT_LINES = ("C.state_dict", "C.on_save_checkpoint", "M.on_save_checkpoint", "DM.state_dict")


def _describe(prefix: str, name: str, args: dict[str, Any]) -> str:
    """The trace line of §2: batch_idx for steps and train batch hooks, dl for transfer hooks, both for eval."""
    details = []
    if name in ("setup", "teardown"):
        stage = args.get("stage")
        details.append(f"stage={next((v for k, v in _STAGES.items() if stage == k), stage)}")
    elif name in _STEPS or name.startswith("on_train_batch_"):
        details.append(f"batch_idx={args.get('batch_idx')}")
    elif name in _TRANSFER:
        details.append(f"dl={args.get('dataloader_idx')}")
    elif "_batch_" in name:
        details.append(f"batch_idx={args.get('batch_idx')}")
        details.append(f"dl={args.get('dataloader_idx')}")
    return f"{prefix}.{name}" + (f"({', '.join(details)})" if details else "")


def _recording(prefix: str, name: str, original: Any, calls: list[str]) -> Any:
    """A method that appends its trace line to `calls` then runs `original`. No `__wrapped__` on purpose: Lightning
    must see the hook as overridden (the recorded traces were made that way), but it keeps the signature."""
    signature = inspect.signature(original)

    def hook(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
        except TypeError:
            arguments = {}
        calls.append(_describe(prefix, name, arguments))
        return original(self, *args, **kwargs)

    hook.__signature__ = signature  # type: ignore[attr-defined]
    hook.__name__ = hook.__qualname__ = name
    return hook


class HookRecorder:
    """Records hook calls as `M.<hook>`, `C.<hook>`, `DM.<hook>` lines into `self.calls`.

    Args:
        pl: the package whose classes are recorded (``fulgor`` or ``pytorch_lightning``).
    """

    def __init__(self, pl: ModuleType) -> None:
        self.pl = pl
        self.calls: list[str] = []

    def _subclass(self, base: type, prefix: str, names: tuple[str, ...]) -> type:
        namespace = {}
        for name in names:
            original = getattr(base, name, None)
            if callable(original):
                namespace[name] = _recording(prefix, name, original, self.calls)
        return type(f"Recorded{base.__name__}", (base,), namespace)

    def module_class(self, base: type) -> type:
        """`base` (a LightningModule subclass) with every module hook recorded."""
        return self._subclass(base, "M", MODULE_HOOKS)

    def datamodule_class(self, base: type, names: tuple[str, ...] = DATAMODULE_HOOKS) -> type:
        """`base` (a LightningDataModule subclass) with its hooks recorded."""
        return self._subclass(base, "DM", names)

    def callback(self) -> Any:
        """A Callback instance whose every hook is recorded."""
        return self._subclass(self.pl.Callback, "C", CALLBACK_HOOKS)()

    def only(self, names: set[str]) -> list[str]:
        """The calls whose `X.hook` part (without details) is in `names`."""
        return [c for c in self.calls if c.split("(")[0] in names]


def without_checkpoint_lines(trace: list[str]) -> list[str]:
    """The trace minus the lines written by the default ModelCheckpoint saving a file."""
    return [line for line in trace if line not in CHECKPOINT_LINES]


# ---------------------------------------------------------------------------------------------------- §2 model
def trace_model_class(pl: ModuleType, n_samples: int = 16, batch_size: int = 4, val_loaders: int = 1) -> type:
    """The model of the recorded traces (§2): Linear(4, 2), 16 seeded samples, batch 4, SGD + StepLR dict,
    `self.log` in every step. `val_loaders=2` gives two validation loaders (and a `dataloader_idx` parameter)."""

    def loader(seed: int, n: int = n_samples) -> DataLoader[Any]:
        return DataLoader(XYDataset(n, seed=seed), batch_size=batch_size)

    class TraceModel(pl.LightningModule):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.layer = torch.nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layer(x)

        def _loss(self, batch: Any) -> torch.Tensor:
            x, y = batch
            return torch.nn.functional.mse_loss(self(x), y)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            loss = self._loss(batch)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
            loss = self._loss(batch)
            self.log("val_loss", loss)
            return loss

        def test_step(self, batch: Any, batch_idx: int) -> Any:
            loss = self._loss(batch)
            self.log("test_loss", loss)
            return loss

        def predict_step(self, batch: Any, batch_idx: int) -> Any:
            return self(batch[0])

        def configure_optimizers(self) -> Any:
            optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
            return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)}

        def train_dataloader(self) -> Any:
            return loader(1)

        def val_dataloader(self) -> Any:
            return loader(2) if val_loaders == 1 else [loader(2 + i, n_samples - 4 * i) for i in range(val_loaders)]

        def test_dataloader(self) -> Any:
            return loader(3)

        def predict_dataloader(self) -> Any:
            return loader(4)

    return TraceModel
