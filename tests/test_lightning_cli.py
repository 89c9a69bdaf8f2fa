"""`LightningCLI` (fulgor.lightning_cli) with a real jsonargparse: fit from flags and from YAML (repeatable
`--config`), `--print_config`, the config saved next to the logs, optimizer/scheduler from the command line,
`class_path`/`init_args`, `run=False`, and error messages that quote the key, the type and the choices."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch.utils.data import DataLoader, TensorDataset

import fulgor
from fulgor import LightningDataModule, LightningModule

pytest.importorskip("jsonargparse")
from fulgor.lightning_cli import LightningCLI, SaveConfigCallback


class Model(LightningModule):
    def __init__(self, hidden: int = 4, lr: float = 0.1) -> None:
        """A tiny regressor.

        Args:
            hidden: width of the hidden layer.
            lr: learning rate.
        """
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(3, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class WideModel(Model):
    def __init__(self, hidden: int = 8, lr: float = 0.1, dropout: float = 0.0) -> None:
        super().__init__(hidden=hidden, lr=lr)
        self.dropout = dropout


class Data(LightningDataModule):
    def __init__(self, batch_size: int = 4) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(16, 3, generator=g)
        self.y = self.x.sum(1, keepdim=True)
        self.batch_size = batch_size

    def train_dataloader(self) -> DataLoader[Any]:
        return DataLoader(TensorDataset(self.x, self.y), batch_size=self.batch_size)

    def val_dataloader(self) -> DataLoader[Any]:
        return DataLoader(TensorDataset(self.x, self.y), batch_size=self.batch_size)


@pytest.fixture(autouse=True)
def _clean_argv(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(sys, "argv", ["main.py"])
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    state = torch.random.get_rng_state()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
    torch.random.set_rng_state(state)


def quiet(root: Path) -> list[str]:
    return [f"--trainer.default_root_dir={root}", "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false", "--trainer.num_sanity_val_steps=0"]  # fmt: skip


def test_fit_from_flags_trains_and_saves_the_config(tmp_path: Path) -> None:
    cli = LightningCLI(Model, Data, args=["fit", *quiet(tmp_path), "--trainer.max_epochs=2", "--model.hidden=5",
                                          "--data.batch_size=8", "--seed_everything=3"])  # fmt: skip
    assert (cli.subcommand, cli.trainer.global_step, cli.trainer.max_epochs) == ("fit", 4, 2)
    assert (cli.model.hparams.hidden, cli.datamodule.batch_size) == (5, 8)
    assert isinstance(cli.trainer.optimizers[0], torch.optim.SGD)  # the model's own configure_optimizers
    saved = yaml.safe_load((tmp_path / "lightning_logs" / "version_0" / "config.yaml").read_text())
    assert saved["seed_everything"] == 3
    assert saved["model"] == {"hidden": 5, "lr": 0.1}
    assert saved["data"] == {"batch_size": 8}
    assert saved["trainer"]["max_epochs"] == 2
    assert saved["trainer"]["accelerator"] == "auto"
    assert saved["ckpt_path"] is None
    assert [type(cb) for cb in cli.trainer.callbacks][-2:] == [SaveConfigCallback, fulgor.callbacks.ModelCheckpoint]


def test_fit_from_repeated_yaml_configs_later_wins(tmp_path: Path) -> None:
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("trainer:\n  max_epochs: 3\n  limit_train_batches: 2\nmodel:\n  hidden: 6\n  lr: 0.5\n")
    second.write_text("model:\n  lr: 0.05\n")
    cli = LightningCLI(Model, Data, args=["fit", "--config", str(first), "--config", str(second), *quiet(tmp_path)])
    assert (cli.trainer.global_step, cli.model.hparams.hidden, cli.model.hparams.lr) == (6, 6, 0.05)


def test_optimizer_and_scheduler_from_the_command_line(tmp_path: Path) -> None:
    cli = LightningCLI(Model, Data, args=["fit", *quiet(tmp_path), "--trainer.max_epochs=1", "--optimizer=Adam",
                                          "--optimizer.lr=0.01", "--lr_scheduler=StepLR",
                                          "--lr_scheduler.step_size=1"])  # fmt: skip
    optimizer = cli.trainer.optimizers[0]
    assert isinstance(optimizer, torch.optim.Adam)
    assert optimizer.defaults["lr"] == 0.01
    assert isinstance(cli.trainer.lr_scheduler_configs[0].scheduler, torch.optim.lr_scheduler.StepLR)


def test_subclass_mode_with_class_path_and_init_args(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"model:\n  class_path: {__name__}.WideModel\n  init_args:\n    dropout: 0.25\n")
    cli = LightningCLI(Model, Data, subclass_mode_model=True, run=False,
                       args=["--config", str(config), *quiet(tmp_path)])  # fmt: skip
    assert type(cli.model) is WideModel
    assert (cli.model.dropout, cli.model.hparams.hidden) == (0.25, 8)
    assert cli.subcommand is None
    assert cli.trainer.global_step == 0


def test_print_config_prints_yaml_and_exits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        LightningCLI(Model, Data, args=["fit", "--model.hidden=7", "--print_config"])
    assert exit_.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"] == {"hidden": 7, "lr": 0.1}
    assert printed["trainer"]["max_epochs"] is None
    assert printed["seed_everything"] is True


def test_existing_config_file_is_not_overwritten(tmp_path: Path) -> None:
    args = ["fit", *quiet(tmp_path), "--trainer.max_epochs=1", "--trainer.logger=false"]
    LightningCLI(Model, Data, args=args)
    with pytest.raises(RuntimeError, match=r"SaveConfigCallback expected .*config\.yaml to NOT exist"):
        LightningCLI(Model, Data, args=args)
    LightningCLI(Model, Data, args=args, save_config_kwargs={"overwrite": True})
    assert (tmp_path / "config.yaml").is_file()


def test_bad_value_quotes_the_key_and_the_expected_type(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("trainer:\n  max_epochs: many\n")
    with pytest.raises(SystemExit) as exit_:
        LightningCLI(Model, Data, args=["fit", "--config", str(config)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert 'Parser key "trainer.max_epochs"' in err
    assert "Expected a <class 'int'>" in err
    assert "Given value: many" in err


def test_bad_subcommand_lists_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        LightningCLI(Model, Data, args=["fitt"])
    err = capsys.readouterr().err
    assert "fitt" in err
    assert all(name in err for name in ("fit", "validate", "test", "predict"))


def test_unknown_key_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        LightningCLI(Model, Data, args=["fit", "--model.hiddden=3"])
    assert "--model.hiddden=3" in capsys.readouterr().err


def test_validate_subcommand_runs_validation(tmp_path: Path) -> None:
    cli = LightningCLI(Model, Data, args=["validate", *quiet(tmp_path), "--seed_everything=0"])
    assert cli.subcommand == "validate"
    assert "val_loss" in cli.trainer.callback_metrics
    assert cli.trainer.state.fn == "validate"
