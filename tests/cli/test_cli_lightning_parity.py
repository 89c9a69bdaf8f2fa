"""LightningCLI as Lightning's: `subcommands()`, the `# lightning.pytorch==2.6.6` config header, `PL_FIT__*`
environment parsing, optimizer groups with `nested_key`/`link_to`, `OptimizerCallable`/`LRSchedulerCallable`
injection, `_instantiator` hparams and `load_from_checkpoint`, logger `init_args`, `trainer_defaults` callbacks;
differential against the real LightningCLI where it is installed."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

pytest.importorskip("jsonargparse")

from fulgor import LightningModule, Trainer, callbacks
from fulgor.cli_classes import pop_instantiator
from fulgor.demos import BoringDataModule, BoringModel
from fulgor.lightning_cli import (
    LightningArgumentParser,
    LightningCLI,
    LRSchedulerCallable,
    LRSchedulerTypeTuple,
    OptimizerCallable,
    instantiate_class,
    instantiate_module,
)
from fulgor.loggers import TensorBoardLogger


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setattr(sys, "argv", ["main.py"])
    monkeypatch.chdir(tmp_path)
    for key in ("PL_GLOBAL_SEED", "PL_FIT__TRAINER__MAX_EPOCHS", "PL_FIT__CONFIG", "PL_TRAINER__MAX_EPOCHS"):
        monkeypatch.delenv(key, raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--trainer.logger=false"]


class InjectedModel(BoringModel):
    """A model whose optimizer, scheduler and activation the config chooses (dependency injection)."""

    def __init__(
        self,
        activation: torch.nn.Module | None = None,
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: LRSchedulerCallable = torch.optim.lr_scheduler.ConstantLR,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.activation = activation if activation is not None else torch.nn.LeakyReLU(0.05)
        self.optimizer = optimizer
        self.scheduler = scheduler

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer(self.parameters())
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler(optimizer)}


class TwoOptimizerModel(BoringModel):
    """Receives two optimizer configs through `link_to` and builds the optimizers itself."""

    def __init__(self, opt1_config: dict, opt2_config: dict) -> None:  # type: ignore[type-arg]
        super().__init__()
        self.opt1_config = opt1_config
        self.opt2_config = opt2_config


class TwoOptimizerCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_optimizer_args(torch.optim.Adam, nested_key="opt1", link_to="model.opt1_config")
        parser.add_optimizer_args((torch.optim.SGD, torch.optim.Adam), nested_key="opt2", link_to="model.opt2_config")


def test_subcommands_are_lightnings() -> None:
    assert LightningCLI.subcommands() == {
        "fit": {"model", "train_dataloaders", "val_dataloaders", "datamodule"},
        "validate": {"model", "dataloaders", "datamodule"},
        "test": {"model", "dataloaders", "datamodule"},
        "predict": {"model", "dataloaders", "datamodule"},
    }
    assert LRSchedulerTypeTuple[0] is torch.optim.lr_scheduler.LRScheduler


def test_saved_config_starts_with_the_lightning_version_header(tmp_path: Path) -> None:
    cli = LightningCLI(BoringModel, args=["fit", "--trainer.fast_dev_run=0", "--trainer.max_steps=1", *QUIET[:2]])
    text = (Path(cli.trainer.log_dir) / "config.yaml").read_text()
    assert text.splitlines()[0] == "# lightning.pytorch==2.6.6"
    assert yaml.safe_load(text)["trainer"]["max_steps"] == 1


def test_environment_variables_with_default_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PL_FIT__TRAINER__MAX_EPOCHS", "3")
    parser_kwargs = {"default_env": True}
    cli = LightningCLI(BoringModel, parser_kwargs=parser_kwargs, args=["fit", *QUIET], run=True,
                       trainer_defaults={"max_steps": 1})  # fmt: skip
    assert cli.config.fit.trainer.max_epochs == 3
    assert cli.trainer.max_epochs == 3
    out = StringIO()
    with redirect_stdout(out), pytest.raises(SystemExit):
        LightningCLI(BoringModel, parser_kwargs=parser_kwargs, args=["fit", "--help"])
    assert "PL_FIT__TRAINER__MAX_EPOCHS" in out.getvalue()
    assert "PL_FIT__CONFIG" in out.getvalue()


def test_optimizer_groups_with_nested_key_and_link_to() -> None:
    cli = TwoOptimizerCLI(TwoOptimizerModel, run=False,
                          args=["--opt1.lr=0.1", "--opt2=SGD", "--opt2.lr=0.2"])  # fmt: skip
    # a single-class group gets its class path added; a tuple group carries the one the config chose
    adam = instantiate_class(cli.model.parameters(), cli.model.opt1_config)
    assert (type(adam), adam.defaults["lr"]) == (torch.optim.Adam, 0.1)
    assert cli.model.opt2_config["class_path"] == "torch.optim.SGD"
    sgd = instantiate_class(cli.model.parameters(), cli.model.opt2_config)
    assert (type(sgd), sgd.defaults["lr"]) == (torch.optim.SGD, 0.2)
    # linked groups are not AUTOMATIC: the model's own configure_optimizers stays
    assert cli.model.configure_optimizers.__func__ is BoringModel.configure_optimizers


def test_automatic_optimizer_replaces_configure_optimizers_with_a_warning() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli = LightningCLI(BoringModel, run=False, args=["--optimizer=SGD", "--optimizer.lr=0.3"])
    assert any("BoringModel.configure_optimizers` will be overridden by" in str(w.message) for w in caught)
    optimizer = cli.model.configure_optimizers()
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.defaults["lr"] == 0.3


def test_instantiator_hparams_let_load_from_checkpoint_rebuild(tmp_path: Path) -> None:
    args = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
            "--model.activation=torch.nn.LeakyReLU", "--model.activation.negative_slope=0.2",
            "--model.optimizer=torch.optim.SGD", "--model.optimizer.lr=0.01", *QUIET[:2]]  # fmt: skip
    cli = LightningCLI(InjectedModel, run=False, auto_configure_optimizers=False, args=args)
    cli.trainer.fit(cli.model)
    hparams = yaml.safe_load((Path(cli.trainer.log_dir) / "hparams.yaml").read_text())
    assert sorted(hparams) == ["_instantiator", "activation", "optimizer", "scheduler"]
    assert hparams["_instantiator"] == "lightning.pytorch.cli.instantiate_module"
    assert hparams["activation"] == {"class_path": "torch.nn.LeakyReLU", "init_args": {"negative_slope": 0.2,
                                                                                        "inplace": False}}  # fmt: skip
    checkpoint = next(Path(cli.trainer.log_dir, "checkpoints").glob("*.ckpt"))
    stored = torch.load(checkpoint, weights_only=True)["hyper_parameters"]
    assert stored["optimizer"]["class_path"] == "torch.optim.SGD"
    model = InjectedModel.load_from_checkpoint(checkpoint)
    assert isinstance(model.activation, torch.nn.LeakyReLU)
    assert model.activation.negative_slope == 0.2
    optimizer = model.configure_optimizers()["optimizer"]
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.defaults["lr"] == 0.01


def test_untrusted_instantiator_and_unimported_class_are_refused() -> None:
    with pytest.raises(ValueError, match=r"'os\.system' from the checkpoint is not in the allowlist"):
        pop_instantiator(LightningModule, {"_instantiator": "os.system"})
    kwargs = {"_instantiator": "lightning.pytorch.cli.instantiate_module", "_class_path": "evil.Module"}
    with pytest.raises(ValueError, match=r"'evil\.Module' requested by the checkpoint does not resolve"):
        pop_instantiator(LightningModule, kwargs)
    assert pop_instantiator(LightningModule, {"a": 1}) is None


def test_instantiate_module_with_class_path() -> None:
    config = {"_class_path": f"{__name__}.InjectedModel", "activation": {"class_path": "torch.nn.ReLU"}}
    model = instantiate_module(LightningModule, config)
    assert isinstance(model, InjectedModel)
    assert isinstance(model.activation, torch.nn.ReLU)


def test_logger_init_args_resolve_summary_writer_kwargs() -> None:
    out = StringIO()
    # The full class path: a short name is ambiguous once the oracle's TensorBoardLogger is imported too (other tests).
    args = ["--trainer.logger=fulgor.loggers.TensorBoardLogger", "--trainer.logger.save_dir=tb",
            "--trainer.logger.comment=c", "--trainer.logger.dict_kwargs.unknown=1", "--print_config"]  # fmt: skip
    with redirect_stdout(out), pytest.raises(SystemExit):
        LightningCLI(BoringModel, run=False, args=args)
    logger = yaml.safe_load(out.getvalue())["trainer"]["logger"]
    assert logger["class_path"].endswith("TensorBoardLogger")
    assert (logger["init_args"]["save_dir"], logger["init_args"]["comment"]) == ("tb", "c")
    assert logger["dict_kwargs"] == {"unknown": 1}


def test_callbacks_by_short_name_and_save_last_annotation() -> None:
    args = ["--trainer.callbacks=ModelCheckpoint", "--trainer.callbacks.save_last=link",
            "--trainer.callbacks+=DeviceStatsMonitor"]  # fmt: skip
    cli = LightningCLI(BoringModel, run=False, args=args)
    checkpoints = [cb for cb in cli.trainer.callbacks if isinstance(cb, callbacks.ModelCheckpoint)]
    assert [cb.save_last for cb in checkpoints] == ["link"]
    assert any(isinstance(cb, callbacks.DeviceStatsMonitor) for cb in cli.trainer.callbacks)


def test_trainer_defaults_callbacks_given_as_class_path_are_built() -> None:
    defaults = {
        "callbacks": {"class_path": "fulgor.callbacks.ModelCheckpoint", "init_args": {"monitor": "val_loss"}},
        "logger": {"class_path": "fulgor.loggers.TensorBoardLogger", "init_args": {"save_dir": ".", "name": "demo"}},
    }
    cli = LightningCLI(BoringModel, BoringDataModule, trainer_defaults=defaults, run=False, args=[])
    monitors = [cb.monitor for cb in cli.trainer.callbacks if isinstance(cb, callbacks.ModelCheckpoint)]
    assert monitors == ["val_loss"]
    assert isinstance(cli.trainer.logger, TensorBoardLogger)


def test_trainer_without_callbacks_argument_warns() -> None:
    class NoCallbacksTrainer(Trainer):
        def __init__(self) -> None:
            super().__init__()

    warnings.simplefilter("always")
    with pytest.warns(UserWarning, match="NoCallbacksTrainer` class does not expose the `callbacks` argument"):
        LightningCLI(BoringModel, run=False, trainer_class=NoCallbacksTrainer, args=[])


def _cli_module(lib: Any) -> Any:
    return __import__("fulgor.lightning_cli" if lib.__name__ == "fulgor" else f"{lib.__name__}.cli", fromlist=["x"])


def _injected_model_class(lib: Any) -> type:
    cli = _cli_module(lib)

    class Injected(lib.LightningModule):  # type: ignore[misc,name-defined]
        def __init__(
            self,
            hidden: int = 4,
            optimizer: cli.OptimizerCallable = torch.optim.Adam,
            scheduler: cli.LRSchedulerCallable = torch.optim.lr_scheduler.ConstantLR,
        ) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.layer = torch.nn.Linear(3, hidden)

    return Injected


@pytest.mark.oracle
@pytest.mark.parametrize(
    "args",
    [
        ["--model.hidden=7", "--model.optimizer=SGD", "--model.optimizer.lr=0.5", "--seed_everything=1"],
        ["--optimizer=Adam", "--optimizer.lr=0.01", "--lr_scheduler=StepLR", "--lr_scheduler.step_size=2"],
        ["--model.scheduler=ExponentialLR", "--model.scheduler.gamma=0.5", "--seed_everything=false"],
    ],
)
def test_parsed_config_and_hparams_as_lightnings(args: list[str]) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    import fulgor

    results = []
    for lib in (pl, fulgor):
        cli = _cli_module(lib).LightningCLI(_injected_model_class(lib), run=False, args=[*args, *QUIET])
        config = cli.config.as_dict()
        hparams = {k: v for k, v in cli.model.hparams.items() if k != "_instantiator"}
        configured = cli.model.configure_optimizers()
        results.append(
            (
                config["model"],
                config["optimizer"],
                config["lr_scheduler"],
                config["seed_everything"],
                yaml.safe_dump(hparams),
                repr(configured)[:40],
            )
        )
    assert results[0] == results[1]
