"""fulgor.demos against Lightning 2.6.6's demos: the same names and constructor signatures, the same numbers from the
same seed (datasets, initial weights, outputs), and fits that end with the same losses and weights (BoringModel with
its datamodules, the manual-optimization model, DemoModel, the LSTM and transformer language models, MNIST from
files placed by hand). The datasets that need a download fail offline with an error naming the folder."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.error import URLError

import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset

import fulgor
from fulgor import demos
from fulgor.demos import boring_classes, downloads, lstm, mnist_datamodule, transformer
from fulgor.demos.downloads import DatasetNotAvailableError

SURFACE = Path("/work/notes/lightning_surface.json")
DEMO_MODULES = ("demos", "demos.boring_classes", "demos.lstm", "demos.transformer", "demos.mnist_datamodule")
WORDS = ("the", "cat", "sat", "on", "a", "mat", "while", "dogs", "ran", "far", "away", "from", "home", "and", "birds",
         "sang")  # fmt: skip


def oracle() -> ModuleType:
    return pytest.importorskip("pytorch_lightning")


def demo_module(lib: ModuleType, name: str) -> ModuleType:
    return importlib.import_module(f"{lib.__name__}.{name}")


def write_text(path: Path, lines: int = 80, seed: int = 0) -> Path:
    """A small corpus of `lines` lines drawn from 16 words: WikiText-2's format (plain text, whitespace tokens)."""
    g = torch.Generator().manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [" ".join(WORDS[i] for i in torch.randint(len(WORDS), (12,), generator=g).tolist()) for _ in range(lines)]
    path.write_text("\n".join(rows) + "\n", encoding="utf8")
    return path


def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every download fail as it does on a machine without network; return the URLs tried."""
    tried: list[str] = []

    def offline(url: str, timeout: float) -> Any:
        tried.append(url)
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(downloads, "urlopen", offline)
    return tried


# ------------------------------------------------------------------------------------------------- names, signatures
def test_the_package_exports_lightnings_demo_names() -> None:
    assert sorted(demos.__all__) == [
        "BoringDataModule", "BoringModel", "DemoModel", "LightningLSTM", "LightningTransformer", "SequenceSampler",
        "SimpleLSTM", "Transformer", "WikiText2",
    ]  # fmt: skip
    assert demos.BoringModel is boring_classes.BoringModel


@pytest.mark.skipif(not SURFACE.exists(), reason="the recorded Lightning surface is not on this machine")
@pytest.mark.parametrize("name", DEMO_MODULES)
def test_every_recorded_name_exists(name: str) -> None:
    expected = json.loads(SURFACE.read_text())[f"pytorch_lightning.{name}"]
    module = importlib.import_module(f"fulgor.{name}")
    assert [n for n in expected if not hasattr(module, n)] == []


@pytest.mark.oracle
@pytest.mark.parametrize("name", DEMO_MODULES[1:])
def test_signatures_match_lightning(name: str) -> None:
    theirs = demo_module(oracle(), name)
    ours = importlib.import_module(f"fulgor.{name}")
    for public in json.loads(SURFACE.read_text())[f"pytorch_lightning.{name}"] if SURFACE.exists() else []:
        a, b = getattr(ours, public), getattr(theirs, public)
        for attr in ("__init__", "forward", "training_step", "loss", "step", "__getitem__", "download"):
            if attr in vars(b) or (not inspect.isclass(b) and attr == "__init__"):
                fa, fb = (a, b) if not inspect.isclass(b) else (getattr(a, attr), getattr(b, attr))
                pa = [(p.name, p.default, p.kind) for p in inspect.signature(fa).parameters.values()]
                pb = [(p.name, p.default, p.kind) for p in inspect.signature(fb).parameters.values()]
                assert pa == pb, f"{name}.{public}.{attr}"


# ---------------------------------------------------------------------------------------------- datasets and models
@pytest.mark.oracle
@pytest.mark.parametrize("cls", ["RandomDataset", "RandomDictDataset", "RandomIterableDatasetWithLen"])
def test_random_datasets_draw_lightnings_numbers(cls: str) -> None:
    def draw(lib: ModuleType) -> list[Any]:
        torch.manual_seed(3)
        dataset = getattr(demo_module(lib, "demos.boring_classes"), cls)(5, 7)
        if isinstance(dataset, IterableDataset):
            return [len(dataset), *list(dataset)]
        return [len(dataset), *(dataset[i] for i in range(len(dataset)))]

    assert str(draw(fulgor)) == str(draw(oracle()))


@pytest.mark.oracle
def test_iterable_dataset_draws_lightnings_numbers() -> None:
    def draw(lib: ModuleType) -> list[list[float]]:
        torch.manual_seed(5)
        dataset = demo_module(lib, "demos.boring_classes").RandomIterableDataset(3, 4)
        return [t.tolist() for t in dataset] + [t.tolist() for t in dataset]

    ours = draw(fulgor)
    assert ours == draw(oracle()) and len(ours) == 8  # noqa: PT018


@pytest.mark.oracle
@pytest.mark.parametrize(
    ("module", "cls", "args", "inputs"),
    [
        ("demos.boring_classes", "BoringModel", (), lambda: (torch.randn(4, 32),)),
        ("demos.boring_classes", "DemoModel", (3, 0.5), lambda: (torch.randn(4, 32),)),
        ("demos.boring_classes", "Net", (), lambda: (torch.randn(2, 1, 28, 28),)),
        ("demos.lstm", "SimpleLSTM", (30, 8, 6, 2, 0.1), lambda: (torch.randint(30, (2, 5)), None)),
        ("demos.transformer", "Transformer", (25, 8, 2, 16, 2, 0.1), lambda: (torch.randint(25, (2, 6)),) * 2),
        ("demos.transformer", "PositionalEncoding", (8, 0.1, 50), lambda: (torch.randn(2, 5, 8),)),
    ],
)
def test_models_initialise_and_compute_like_lightning(
    module: str, cls: str, args: tuple[Any, ...], inputs: Callable[[], tuple[Any, ...]]
) -> None:
    def compute(lib: ModuleType) -> tuple[dict[str, torch.Tensor], Any]:
        torch.manual_seed(11)
        model = getattr(demo_module(lib, module), cls)(*args)
        values = inputs()
        if cls == "SimpleLSTM":
            values = (values[0], model.init_hidden(2))
        torch.manual_seed(12)  # dropout masks
        output = model(*values)
        return model.state_dict(), output

    (ours_state, ours_out), (theirs_state, theirs_out) = compute(fulgor), compute(oracle())
    assert ours_state.keys() == theirs_state.keys()
    for key in ours_state:
        assert torch.equal(ours_state[key], theirs_state[key]), key
    assert torch.allclose(flat(ours_out), flat(theirs_out), atol=1e-6)


def flat(value: Any) -> torch.Tensor:
    """Every number of a tensor or a (nested) tuple of tensors, in one vector."""
    if isinstance(value, torch.Tensor):
        return value.flatten()
    return torch.cat([flat(v) for v in value])


def test_sequence_sampler_reads_chunks_side_by_side() -> None:
    sampler = lstm.SequenceSampler(list(range(23)), batch_size=4)  # 23 blocks -> 4 chunks of 5, 3 left over
    assert len(sampler) == 5
    assert list(sampler) == [[0, 5, 10, 15], [1, 6, 11, 16], [2, 7, 12, 17], [3, 8, 13, 18], [4, 9, 14, 19]]


@pytest.mark.oracle
def test_sequence_sampler_and_tokenizer_match_lightning(tmp_path: Path) -> None:
    path = write_text(tmp_path / "corpus.txt", lines=9)
    ours_data, ours_dict = transformer.tokenize(path)
    theirs_data, theirs_dict = demo_module(oracle(), "demos.transformer").tokenize(path)
    assert torch.equal(ours_data, theirs_data) and ours_data.dtype == torch.int64  # noqa: PT018
    assert (ours_dict.idx2word, ours_dict.word2idx, len(ours_dict)) == (
        theirs_dict.idx2word,
        theirs_dict.word2idx,
        len(theirs_dict),
    )
    theirs_sampler = demo_module(oracle(), "demos.lstm").SequenceSampler(range(47), 6)
    assert list(lstm.SequenceSampler(range(47), 6)) == list(theirs_sampler)


# ------------------------------------------------------------------------------------------------------------- fits
def recorded_fit(
    lib: ModuleType, root: Path, make: Callable[[ModuleType], tuple[Any, Any]], fn: str = "fit", **flags: Any
) -> dict[str, Any]:
    """Seed, build (model, datamodule) with `make(lib)`, run `trainer.<fn>`; return the losses of every training
    step, what the entry point returned, the batch counts and the final weights."""
    losses: list[float] = []

    class LossRecorder(lib.Callback):  # type: ignore[misc,name-defined]
        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            losses.append(round(float(loss), 6))

    settings: dict[str, Any] = {
        "max_epochs": 2,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "default_root_dir": root / lib.__name__,
        "callbacks": [LossRecorder()],
    }
    settings.update(flags)
    lib.seed_everything(1234)
    model, datamodule = make(lib)
    trainer = lib.Trainer(**settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        returned = getattr(trainer, fn)(model, datamodule=datamodule) if datamodule else getattr(trainer, fn)(model)
    return {
        "losses": losses,
        "returned": _rounded(returned),
        "counts": (trainer.global_step, trainer.current_epoch, trainer.num_training_batches),
        "weights": {k: v.detach().clone() for k, v in model.state_dict().items()},
    }


def _rounded(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return [round(x, 5) for x in value.flatten().tolist()]
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return round(value, 5) if isinstance(value, float) else value


def assert_same_fit(tmp_path: Path, make: Callable[[ModuleType], tuple[Any, Any]], **kwargs: Any) -> dict[str, Any]:
    ours = recorded_fit(fulgor, tmp_path, make, **kwargs)
    theirs = recorded_fit(oracle(), tmp_path, make, **kwargs)
    assert ours["losses"] == pytest.approx(theirs["losses"], abs=1e-6)
    assert ours["returned"] == theirs["returned"]
    assert ours["counts"] == theirs["counts"]
    assert ours["weights"].keys() == theirs["weights"].keys()
    for key in ours["weights"]:
        assert torch.allclose(ours["weights"][key], theirs["weights"][key], atol=1e-6), key
    return ours


def boring(name: str, datamodule: str | None = None) -> Callable[[ModuleType], tuple[Any, Any]]:
    def make(lib: ModuleType) -> tuple[Any, Any]:
        classes = demo_module(lib, "demos.boring_classes")
        model = getattr(classes, name)()
        return model, getattr(classes, datamodule)() if datamodule else None

    return make


@pytest.mark.oracle
@pytest.mark.parametrize("fn", ["fit", "validate", "test", "predict"])
def test_boring_model_matches_lightning(tmp_path: Path, fn: str) -> None:
    ours = assert_same_fit(tmp_path, boring("BoringModel"), fn=fn, limit_train_batches=6, limit_val_batches=3)
    if fn == "fit":
        assert len(ours["losses"]) == 12 and ours["counts"] == (12, 2, 6)  # noqa: PT018
    if fn == "predict":
        assert len(ours["returned"]) == 64


@pytest.mark.oracle
@pytest.mark.parametrize("fn", ["fit", "validate", "test", "predict"])
def test_boring_datamodule_matches_lightning(tmp_path: Path, fn: str) -> None:
    ours = assert_same_fit(tmp_path, boring("BoringModel", "BoringDataModule"), fn=fn, limit_train_batches=5)
    if fn == "fit":
        assert ours["counts"] == (10, 2, 5)


@pytest.mark.oracle
def test_manual_optimization_model_matches_lightning(tmp_path: Path) -> None:
    ours = assert_same_fit(tmp_path, boring("ManualOptimBoringModel"), limit_train_batches=4, limit_val_batches=2)
    assert len(ours["losses"]) == 8


@pytest.mark.oracle
@pytest.mark.parametrize("fn", ["fit", "validate", "test"])
def test_datamodule_without_length_matches_lightning(tmp_path: Path, fn: str) -> None:
    assert_same_fit(
        tmp_path, boring("BoringModel", "BoringDataModuleNoLen"), fn=fn, limit_train_batches=7, limit_val_batches=5,
        limit_test_batches=9,
    )  # fmt: skip


@pytest.mark.oracle
@pytest.mark.parametrize("fn", ["fit", "validate", "test", "predict"])
def test_iterable_datamodule_matches_lightning(tmp_path: Path, fn: str) -> None:
    """Two loaders per stage: training reads them side by side (an epoch ends when both ran out), evaluation one
    after the other."""

    def make(lib: ModuleType) -> tuple[Any, Any]:
        classes = demo_module(lib, "demos.boring_classes")

        class FourFeatures(classes.BoringModel):  # type: ignore[misc,name-defined]
            def __init__(self) -> None:
                super().__init__()
                self.layer = torch.nn.Linear(4, 2)

            def training_step(self, batch: Any, batch_idx: int) -> Any:
                return {"loss": self.step(batch[0]) + self.step(batch[1])}

            def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
                self.log("v", self.step(batch))

            def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
                self.log("t", self.step(batch))

            def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
                return self(batch)

        return FourFeatures(), classes.IterableBoringDataModule()

    ours = assert_same_fit(tmp_path, make, fn=fn, limit_val_batches=6, limit_test_batches=5, limit_predict_batches=3)
    if fn == "fit":
        assert ours["counts"] == (32, 2, float("inf"))


@pytest.mark.oracle
def test_demo_model_matches_lightning(tmp_path: Path) -> None:
    def make(lib: ModuleType) -> tuple[Any, Any]:
        classes = demo_module(lib, "demos.boring_classes")
        model = classes.DemoModel(out_dim=4, learning_rate=0.05)
        model.train_dataloader = lambda: DataLoader(classes.RandomDataset(32, 12), batch_size=3)
        return model, None

    assert len(assert_same_fit(tmp_path, make)["losses"]) == 8


# ---------------------------------------------------------------------------------------------------- WikiText-2 fits
def lightning_reads_placed_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lightning's WikiText2 imports `requests` before it looks for the file; the file is there, so a stand-in for the
    (uninstalled) package lets it look."""
    monkeypatch.setattr(demo_module(oracle(), "demos.transformer"), "_REQUESTS_AVAILABLE", True)
    monkeypatch.setitem(sys.modules, "requests", ModuleType("requests"))


@pytest.mark.oracle
def test_lstm_language_model_matches_lightning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lightning_reads_placed_text(monkeypatch)
    # The tests run in tmp_path: this is the default ./data. 62 blocks of 35 words: 3 batches of 20 sequences.
    write_text(Path("data") / "wikitext-2.txt", lines=170)

    def make(lib: ModuleType) -> tuple[Any, Any]:
        vocab = demo_module(lib, "demos.transformer").WikiText2().vocab_size
        return demo_module(lib, "demos.lstm").LightningLSTM(vocab_size=vocab), None

    ours = assert_same_fit(tmp_path, make, max_epochs=1, limit_train_batches=3)
    assert len(ours["losses"]) == 3


@pytest.mark.oracle
def test_transformer_language_model_matches_lightning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lightning_reads_placed_text(monkeypatch)
    write_text(Path("data") / "wikitext-2.txt", lines=15)

    def make(lib: ModuleType) -> tuple[Any, Any]:
        vocab = demo_module(lib, "demos.transformer").WikiText2().vocab_size
        return demo_module(lib, "demos.transformer").LightningTransformer(vocab_size=vocab), None

    ours = assert_same_fit(tmp_path, make, max_epochs=1, limit_train_batches=3)
    assert len(ours["losses"]) == 3


def test_wikitext2_reads_a_placed_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tried = no_network(monkeypatch)
    (tmp_path / "wikitext-2.txt").write_text("a b c\nb c d e\n", encoding="utf8")
    dataset = transformer.WikiText2(data_dir=tmp_path, block_size=2)
    assert tried == []  # the file is there: nothing is downloaded
    assert dataset.vocab_size == 6  # a b c <eos> d e
    assert dataset.data.tolist() == [0, 1, 2, 3, 1, 2, 4, 5, 3]
    assert len(dataset) == 3
    inputs, target = dataset[1]
    assert (inputs.tolist(), target.tolist()) == ([2, 3], [3, 1])


def test_wikitext2_offline_names_the_folder_and_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tried = no_network(monkeypatch)
    folder = tmp_path / "nested" / "data"
    with pytest.raises(DatasetNotAvailableError) as info:
        transformer.WikiText2(data_dir=folder)
    message = str(info.value)
    assert tried == [transformer.WIKITEXT2_URL]
    assert str(folder.resolve()) in message and "'wikitext-2.txt'" in message  # noqa: PT018
    assert "Without network access, place the file in" in message and "plain UTF-8 text" in message  # noqa: PT018
    assert "Temporary failure in name resolution" in message
    assert list(folder.iterdir()) == []  # no partial file left behind
    with pytest.raises(FileNotFoundError, match=r"wikitext-2\.txt"):
        transformer.WikiText2(data_dir=folder, download=False)


# ------------------------------------------------------------------------------------------------------------- MNIST
def place_mnist(root: Path, train: int = 20, test: int = 8) -> Path:
    """Tiny synthetic MNIST files where Lightning's hosted copy goes: <root>/MNIST/complete/{training,test}.pt."""
    folder = root / "MNIST" / "complete"
    folder.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    for name, n in (("training.pt", train), ("test.pt", test)):
        images = torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=g)
        torch.save((images, torch.arange(n, dtype=torch.int64) % 10), folder / name)
    return folder


def test_mnist_offline_names_the_folder_and_the_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tried = no_network(monkeypatch)
    monkeypatch.setenv("PL_USE_MOCKED_MNIST", "1")
    with pytest.raises(DatasetNotAvailableError) as info:
        mnist_datamodule.MNIST(str(tmp_path), train=True, download=True)
    message = str(info.value)
    assert tried == [mnist_datamodule._MNIST.RESOURCES[0]]
    assert str((tmp_path / "MNIST" / "complete").resolve()) in message
    assert "'training.pt'" in message and "uint8 images of shape [N, 28, 28]" in message  # noqa: PT018
    with pytest.raises(DatasetNotAvailableError, match=r"^Dataset not found\. .*MNIST/complete"):
        mnist_datamodule.MNIST(str(tmp_path), train=True, download=False)
    datamodule = mnist_datamodule.MNISTDataModule(data_dir=str(tmp_path), num_workers=0)
    with pytest.raises(DatasetNotAvailableError, match="MNIST/complete"):
        datamodule.prepare_data()


def test_mnist_reads_placed_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tried = no_network(monkeypatch)
    place_mnist(tmp_path)
    dataset = mnist_datamodule.MNIST(str(tmp_path), train=False, normalize=(0.5, 2.0))
    assert tried == [] and len(dataset) == 8  # noqa: PT018
    image, label = dataset[3]
    raw = torch.load(tmp_path / "MNIST" / "complete" / "test.pt")[0][3].float()
    assert image.shape == (1, 28, 28) and label == 3  # noqa: PT018
    assert torch.allclose(image[0], (raw - 0.5) / 2.0)


@pytest.mark.oracle
def test_mnist_datamodule_matches_lightning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    no_network(monkeypatch)
    monkeypatch.setenv("PL_USE_MOCKED_MNIST", "1")  # Lightning needs torchvision otherwise
    place_mnist(tmp_path, train=24, test=8)

    def make(lib: ModuleType) -> tuple[Any, Any]:
        class Classifier(lib.LightningModule):  # type: ignore[misc,name-defined]
            def __init__(self) -> None:
                super().__init__()
                self.layer = torch.nn.Linear(28 * 28, 10)

            def training_step(self, batch: Any, batch_idx: int) -> Any:
                x, y = batch
                return torch.nn.functional.cross_entropy(self.layer(x.flatten(1) / 255), y)

            def validation_step(self, batch: Any, batch_idx: int) -> None:
                self.log("val", self.training_step(batch, batch_idx))

            def test_step(self, batch: Any, batch_idx: int) -> None:
                self.log("test", self.training_step(batch, batch_idx))

            def configure_optimizers(self) -> Any:
                return torch.optim.SGD(self.parameters(), lr=0.1)

        datamodule = demo_module(lib, "demos.mnist_datamodule").MNISTDataModule(
            data_dir=str(tmp_path), val_split=8, num_workers=0, batch_size=4
        )
        return Classifier(), datamodule

    ours = assert_same_fit(tmp_path, make)
    assert ours["counts"] == (8, 2, 4)
    assert assert_same_fit(tmp_path, make, fn="test")["returned"]


def test_mnist_datamodule_attributes() -> None:
    datamodule = mnist_datamodule.MNISTDataModule()
    assert (datamodule.name, datamodule.num_classes, datamodule.data_dir) == ("mnist", 10, "./data")
    assert (datamodule.val_split, datamodule.num_workers, datamodule.seed, datamodule.batch_size) == (5000, 16, 42, 32)
    assert datamodule.normalize is False
    assert os.environ.get("PL_USE_MOCKED_MNIST") is None or datamodule.default_transforms is None
