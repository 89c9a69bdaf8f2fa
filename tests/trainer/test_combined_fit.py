"""The Trainer reading several loaders, against Lightning 2.6.6: a dict/list/nested collection or a CombinedLoader for
training (read side by side, `max_size_cycle` by default), for validation/test (one after the other, with
`dataloader_idx`, or side by side in the other modes) and for prediction. The same script runs on both; the batches
each step sees, the batch counts, the returned metrics and predictions and the final weights must be the same."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset

import fulgor
from fulgor.combined_loader import CombinedLoader

pl = pytest.importorskip("pytorch_lightning")
combined_module = pytest.importorskip("pytorch_lightning.utilities.combined_loader")

# Lightning's own CombinedLoader warns about a torch pytree API it uses.
pytestmark = [pytest.mark.oracle, pytest.mark.filterwarnings("ignore:.*LeafSpec")]


def data(n: int, start: int = 0) -> torch.Tensor:
    """`n` rows of 4 features; the first feature (start, start + 4, ...) / 100 identifies the row."""
    return torch.arange(start, start + n * 4, dtype=torch.float32).view(n, 4) / 100


class Stream(IterableDataset[torch.Tensor]):
    """An iterable dataset of `n` rows (no length)."""

    def __init__(self, n: int, start: int = 0) -> None:
        self.rows = data(n, start)

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(self.rows)


def plain(value: Any) -> Any:
    """What a step saw, comparable across libraries: each tensor as its rows' first feature."""
    if isinstance(value, torch.Tensor):
        return [round(x, 4) for x in value[:, 0].tolist()] if value.dim() == 2 else value.tolist()
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [plain(v) for v in value])
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def tensors(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from tensors(item)


def model_class(lib: ModuleType) -> type:
    class Recorder(lib.LightningModule):  # type: ignore[misc,name-defined]
        """A linear layer trained on every tensor of the batch (None entries of `max_size` skipped)."""

        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.layer = torch.nn.Linear(4, 1)
            self.seen: list[Any] = []

        def loss(self, batch: Any) -> torch.Tensor:
            return sum((self.layer(t).pow(2).mean() for t in tensors(batch)), torch.tensor(0.0))

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            self.seen.append(("train", batch_idx, plain(batch)))
            return self.loss(batch)

        def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: Any = "not passed") -> None:
            self.seen.append(("val", batch_idx, dataloader_idx, plain(batch)))
            self.log("v", self.loss(batch))

        def test_step(self, batch: Any, batch_idx: int, dataloader_idx: Any = "not passed") -> None:
            self.seen.append(("test", batch_idx, dataloader_idx, plain(batch)))
            self.log("t", self.loss(batch))

        def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: Any = "not passed") -> Any:
            self.seen.append(("predict", batch_idx, dataloader_idx, plain(batch)))
            return self.layer(next(tensors(batch))).detach()

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Recorder


def run(
    lib: ModuleType, root: Path, fn: str, loaders: Callable[[type], dict[str, Any]], **flags: Any
) -> SimpleNamespace:
    """`trainer.<fn>` on a fresh Recorder with the loaders `loaders(CombinedLoader class of lib)` builds."""
    combined_cls = CombinedLoader if lib is fulgor else combined_module.CombinedLoader
    settings: dict[str, Any] = {
        "max_epochs": 2,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "default_root_dir": root / lib.__name__,
    }
    settings.update(flags)
    model = model_class(lib)()
    trainer = lib.Trainer(**settings)
    torch.manual_seed(7)  # shuffled loaders draw from here: both libraries must draw at the same moments
    arguments = loaders(combined_cls)
    error = None
    returned = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            returned = getattr(trainer, fn)(model, **arguments)
        except (ValueError, RuntimeError) as err:
            error = (type(err).__name__, str(err))
    return SimpleNamespace(
        seen=model.seen,
        error=error,
        returned=_comparable(returned),
        weights={k: v.detach().clone() for k, v in model.state_dict().items()},
        counts=(trainer.global_step, trainer.current_epoch),
        num_training_batches=trainer.num_training_batches,
        num_val_batches=list(trainer.num_val_batches),
        num_test_batches=list(trainer.num_test_batches),
        num_predict_batches=list(trainer.num_predict_batches),
        callback_metrics={k: round(float(v), 5) for k, v in trainer.callback_metrics.items()},
        loader_views=[shape(getattr(trainer, name)) for name in LOADER_VIEWS],
    )


LOADER_VIEWS = ("train_dataloader", "val_dataloaders", "test_dataloaders", "predict_dataloaders")


def shape(loaders: Any) -> Any:
    """A Trainer's loader view as comparable structure: the collection's shape, each loader by its class name."""
    if isinstance(loaders, dict):
        return {k: shape(v) for k, v in loaders.items()}
    if isinstance(loaders, (list, tuple)):
        return [type(loaders).__name__, *(shape(v) for v in loaders)]
    return None if loaders is None else type(loaders).__name__


def _comparable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return [round(x, 5) for x in value.flatten().tolist()]
    if isinstance(value, (list, tuple)):
        return [_comparable(v) for v in value]
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()}
    if isinstance(value, float):
        return round(value, 5)
    return value


def assert_same(tmp_path: Path, fn: str, loaders: Callable[[type], dict[str, Any]], **flags: Any) -> SimpleNamespace:
    ours = run(fulgor, tmp_path, fn, loaders, **flags)
    theirs = run(pl, tmp_path, fn, loaders, **flags)
    assert ours.error == theirs.error
    assert ours.seen == theirs.seen
    for name in ("returned", "counts", "num_training_batches", "num_val_batches", "num_test_batches", "loader_views"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert ours.num_predict_batches == theirs.num_predict_batches
    assert ours.callback_metrics == pytest.approx(theirs.callback_metrics, abs=1e-5)
    assert ours.weights.keys() == theirs.weights.keys()
    for key in ours.weights:
        assert torch.allclose(ours.weights[key], theirs.weights[key], atol=1e-6), key
    return ours


def two(shuffle: bool = False) -> dict[str, DataLoader[Any]]:
    """Two loaders of different lengths (2 and 3 batches), the second optionally shuffled."""
    return {"a": DataLoader(data(3), batch_size=2), "b": DataLoader(data(5, 100), batch_size=2, shuffle=shuffle)}


# ------------------------------------------------------------------------------------------------------------ training
TRAIN_CASES: dict[str, Callable[[type], Any]] = {
    "dict": lambda C: two(shuffle=True),
    "list": lambda C: [DataLoader(data(4), batch_size=2), DataLoader(data(7, 50), batch_size=3, shuffle=True)],
    "nested": lambda C: {
        "x": [DataLoader(data(2), batch_size=1), DataLoader(data(4, 9), batch_size=2)],
        "y": (DataLoader(data(6, 70), batch_size=2, shuffle=True),),
    },
    "combined_max_size_cycle": lambda C: C(two(shuffle=True), "max_size_cycle"),
    "combined_min_size": lambda C: C(two(shuffle=True), "min_size"),
    "combined_max_size": lambda C: C(two(shuffle=True), "max_size"),
    "combined_single_loader": lambda C: C(DataLoader(data(5), batch_size=2), "max_size"),
    "with_iterable_dataset": lambda C: [DataLoader(data(4), batch_size=2), DataLoader(Stream(6, 40), batch_size=2)],
    "min_size_with_iterable_dataset": lambda C: C(
        [DataLoader(data(8), batch_size=2), DataLoader(Stream(6, 40))], "min_size"
    ),
}


@pytest.mark.parametrize("case", list(TRAIN_CASES))
def test_training_reads_collections_like_lightning(tmp_path: Path, case: str) -> None:
    ours = assert_same(tmp_path, "fit", lambda C: {"train_dataloaders": TRAIN_CASES[case](C)})
    assert ours.counts[0] > 0


@pytest.mark.parametrize(
    "flags",
    [
        {"limit_train_batches": 2},
        {"limit_train_batches": 0.5},
        {"limit_train_batches": 1, "max_epochs": 3},
        {"accumulate_grad_batches": 2},
        {"max_steps": 4},
        {"overfit_batches": 2},
    ],
    ids=lambda flags: ",".join(f"{k}={v}" for k, v in flags.items()),
)
@pytest.mark.parametrize("mode", ["max_size_cycle", "min_size", "max_size", "dict"])
def test_training_limits_like_lightning(tmp_path: Path, mode: str, flags: dict[str, Any]) -> None:
    def loaders(C: type) -> dict[str, Any]:
        return {"train_dataloaders": two(shuffle=True) if mode == "dict" else C(two(shuffle=True), mode)}

    assert_same(tmp_path, "fit", loaders, **flags)


def test_training_with_validation_inside_the_epoch(tmp_path: Path) -> None:
    def loaders(C: type) -> dict[str, Any]:
        return {
            "train_dataloaders": {"a": DataLoader(data(8), batch_size=2), "b": DataLoader(data(3, 60), batch_size=1)},
            "val_dataloaders": {"p": DataLoader(data(2, 200), batch_size=1), "q": DataLoader(data(3, 300))},
        }

    assert_same(tmp_path, "fit", loaders, val_check_interval=0.5, num_sanity_val_steps=1)


def test_sequential_mode_is_refused_for_training(tmp_path: Path) -> None:
    ours = assert_same(tmp_path, "fit", lambda C: {"train_dataloaders": C(two(), "sequential")})
    assert ours.error == (
        "ValueError",
        '`_FitLoop` does not support the `CombinedLoader(mode="sequential")` mode.'
        " The available modes are: ['min_size', 'max_size_cycle', 'max_size']",
    )


# ---------------------------------------------------------------------------------------------------------- evaluation
EVAL_CASES: dict[str, Callable[[type], Any]] = {
    "combined_sequential": lambda C: C(two(), "sequential"),
    "dict": lambda C: two(),
    "list": lambda C: [DataLoader(data(3), batch_size=2), DataLoader(data(2, 50))],
    "nested": lambda C: {"x": [DataLoader(data(2)), DataLoader(data(3, 9), batch_size=2)], "y": DataLoader(data(1))},
    "combined_sequential_single": lambda C: C(DataLoader(data(3), batch_size=2), "sequential"),
    "combined_max_size_cycle": lambda C: C(two(), "max_size_cycle"),
    "combined_min_size": lambda C: C(two(), "min_size"),
    "combined_max_size": lambda C: C(two(), "max_size"),
}


@pytest.mark.parametrize("fn", ["validate", "test"])
@pytest.mark.parametrize("case", list(EVAL_CASES))
def test_evaluation_reads_collections_like_lightning(tmp_path: Path, case: str, fn: str) -> None:
    ours = assert_same(tmp_path, fn, lambda C: {"dataloaders": EVAL_CASES[case](C)})
    assert ours.seen


@pytest.mark.parametrize("case", list(EVAL_CASES))
def test_validation_inside_fit_like_lightning(tmp_path: Path, case: str) -> None:
    def loaders(C: type) -> dict[str, Any]:
        return {"train_dataloaders": DataLoader(data(4), batch_size=2), "val_dataloaders": EVAL_CASES[case](C)}

    assert_same(tmp_path, "fit", loaders, limit_val_batches=2, num_sanity_val_steps=1)


@pytest.mark.parametrize("case", ["combined_sequential", "dict", "nested", "combined_sequential_single"])
def test_prediction_reads_collections_like_lightning(tmp_path: Path, case: str) -> None:
    ours = assert_same(tmp_path, "predict", lambda C: {"dataloaders": EVAL_CASES[case](C)}, limit_predict_batches=2)
    assert ours.returned


def test_prediction_refuses_other_modes_like_lightning(tmp_path: Path) -> None:
    ours = assert_same(tmp_path, "predict", lambda C: {"dataloaders": C(two(), "max_size")})
    assert ours.error == (
        "ValueError",
        '`trainer.predict()` only supports the `CombinedLoader(mode="sequential")` mode.',
    )


def test_single_loader_is_read_directly() -> None:
    """No per-step wrapper for the common case: a single training loader stays the loader the user gave."""
    loader = DataLoader(data(4), batch_size=2)
    model = model_class(fulgor)()
    trainer = fulgor.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(model, loader)
    assert trainer.train_dataloader is loader
    assert [s[:2] for s in model.seen] == [("train", 0), ("train", 1)]
