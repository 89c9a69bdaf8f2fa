"""Lightning 1.x's argparse helpers (fulgor.trainer.legacy_argparse): 1.9.5's flag -> value table row by row, the
flag -> type map, the str_to_bool family, from_argparse_args/parse_argparser rules, and the seed's section 4 example."""

from __future__ import annotations

import os
import subprocess
import sys
from argparse import ArgumentParser, Namespace
from pathlib import Path
from typing import Any

import pytest

import fulgor
from fulgor import LightningDataModule, Trainer
from fulgor.trainer import legacy_argparse as ap
from fulgor.trainer.removed_args import RemovedArgumentWarning, translate_removed_args

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "s4_script_parameters"


def trainer_parser() -> ArgumentParser:
    return Trainer.add_argparse_args(ArgumentParser())


def parse(*argv: str) -> dict[str, Any]:
    return vars(trainer_parser().parse_args(list(argv)))


# -------------------------------------------------------------------- the measured 1.9.5 CLI -> value table
TABLE = [
    (["--devices", "2", "--accelerator", "gpu"], {"devices": "2", "accelerator": "gpu"}),
    (["--devices", "0,1"], {"devices": "0,1"}),
    (["--devices=-1"], {"devices": "-1"}),
    (["--gpus", "0,1"], {"gpus": "0,1"}),
    (["--gpus", "2"], {"gpus": 2}),
    (["--fast_dev_run"], {"fast_dev_run": True}),
    (["--fast_dev_run", "3"], {"fast_dev_run": 3}),
    (["--fast_dev_run", "1"], {"fast_dev_run": True}),
    (["--fast_dev_run", "false"], {"fast_dev_run": False}),
    (["--enable_checkpointing"], {"enable_checkpointing": True}),
    (["--enable_checkpointing", "False"], {"enable_checkpointing": False}),
    (["--logger", "false"], {"logger": False}),
    (["--benchmark"], {"benchmark": True}),
    (["--detect_anomaly", "yes"], {"detect_anomaly": True}),
    (["--precision", "16"], {"precision": 16}),
    (["--precision", "bf16"], {"precision": "bf16"}),
    (["--limit_train_batches", "0.5"], {"limit_train_batches": 0.5}),
    (["--limit_train_batches", "10"], {"limit_train_batches": 10}),
    (["--limit_train_batches", "1"], {"limit_train_batches": 1}),
    (["--limit_train_batches", "1.0"], {"limit_train_batches": 1.0}),
    (["--val_check_interval", "0.25"], {"val_check_interval": 0.25}),
    (["--auto_lr_find"], {"auto_lr_find": True}),
    (["--auto_lr_find", "my_lr"], {"auto_lr_find": "my_lr"}),
    (["--auto_scale_batch_size", "binsearch"], {"auto_scale_batch_size": "binsearch"}),
    (["--track_grad_norm", "2"], {"track_grad_norm": 2.0}),
    (["--max_time", "00:01:00:00"], {"max_time": "00:01:00:00"}),
    (["--accumulate_grad_batches", "4"], {"accumulate_grad_batches": 4}),
    (["--strategy", "ddp"], {"strategy": "ddp"}),
    (["--profiler", "simple"], {"profiler": "simple"}),
    (["--plugins", "x"], {"plugins": "x"}),
    (["--default_root_dir", "d"], {"default_root_dir": "d"}),
    (["--devices", "two"], {"devices": "two"}),
    (["--fast_dev_run", "maybe"], {"fast_dev_run": "maybe"}),
]


@pytest.mark.parametrize(("argv", "expected"), TABLE, ids=[" ".join(a) for a, _ in TABLE])
def test_1_9_5_cli_value_table(argv: list[str], expected: dict[str, Any]) -> None:
    parsed = parse(*argv)
    for key, value in expected.items():
        assert parsed[key] == value
        assert type(parsed[key]) is type(value)
    # parse_argparser changes nothing in these cases
    assert vars(ap.parse_argparser(Trainer, Namespace(**parsed))) == parsed


def test_val_check_interval_also_takes_a_2x_time_string() -> None:
    assert parse("--val_check_interval", "00:00:10:00")["val_check_interval"] == "00:00:10:00"
    assert parse("--val_check_interval", "100")["val_check_interval"] == 100


# -------------------------------------------------------------------- the full flag -> type map
BOOL, BOOL_INT, BOOL_STR = "str_to_bool", "str_to_bool_or_int", "str_to_bool_or_str"
FLAG_TYPES = {
    "logger": BOOL, "enable_checkpointing": BOOL, "default_root_dir": "str", "gradient_clip_val": "_int_or_float_type",
    "gradient_clip_algorithm": "str", "num_nodes": "int", "num_processes": "int", "devices": "str",
    "gpus": "_gpus_allowed_type", "auto_select_gpus": BOOL, "tpu_cores": "_gpus_allowed_type", "ipus": "int",
    "enable_progress_bar": BOOL, "overfit_batches": "_int_or_float_type", "track_grad_norm": "float",
    "check_val_every_n_epoch": "int", "fast_dev_run": BOOL_INT, "accumulate_grad_batches": "int", "max_epochs": "int",
    "min_epochs": "int", "max_steps": "int", "min_steps": "int", "max_time": "str",
    "limit_train_batches": "_int_or_float_type", "limit_val_batches": "_int_or_float_type",
    "limit_test_batches": "_int_or_float_type", "limit_predict_batches": "_int_or_float_type",
    # 1.9.5: _int_or_float_type; 2.x also takes time strings, so fulgor's converter keeps those as text
    "val_check_interval": "_int_float_or_str",
    "log_every_n_steps": "int", "accelerator": "str", "strategy": "str", "sync_batchnorm": BOOL,
    "precision": "_precision_allowed_type", "enable_model_summary": BOOL, "num_sanity_val_steps": "int",
    "resume_from_checkpoint": "str", "profiler": "str", "benchmark": BOOL, "reload_dataloaders_every_n_epochs": "int",
    "auto_lr_find": BOOL_STR, "replace_sampler_ddp": BOOL, "detect_anomaly": BOOL, "auto_scale_batch_size": BOOL_STR,
    "plugins": "str", "amp_backend": "str", "amp_level": "str", "move_metrics_to_cpu": BOOL,
    "multiple_trainloader_mode": "str", "inference_mode": BOOL,
    # flags 2.x added (they come from fulgor's own signature); 1.9.5 had `deterministic` unexposed
    "deterministic": BOOL_STR, "use_distributed_sampler": BOOL, "barebones": BOOL, "enable_autolog_hparams": BOOL,
    "model_registry": "str",
    "non_finite": "str",  # fulgor's own flag (the non-finite loss guard)
}  # fmt: skip
# 1.9.5's parsed defaults (its signature's); the flags 2.x added are absent from the Namespace unless given
DEFAULTS_1_9_5 = {"num_nodes": 1, "track_grad_norm": -1, "check_val_every_n_epoch": 1, "fast_dev_run": False,
                  "max_steps": -1, "reload_dataloaders_every_n_epochs": 0, "auto_lr_find": False,
                  "replace_sampler_ddp": True, "detect_anomaly": False, "auto_scale_batch_size": False,
                  "move_metrics_to_cpu": False, "multiple_trainloader_mode": "max_size_cycle", "inference_mode": True,
                  "sync_batchnorm": False, "overfit_batches": 0.0, "logger": True, "enable_checkpointing": True,
                  "enable_progress_bar": True, "log_every_n_steps": 50, "precision": 32, "enable_model_summary": True,
                  "num_sanity_val_steps": 2, "accelerator": None, "strategy": None, "devices": None,
                  "accumulate_grad_batches": None}  # fmt: skip
ADDED_IN_2_X = (
    "deterministic", "use_distributed_sampler", "barebones", "enable_autolog_hparams", "model_registry", "non_finite"
)  # fmt: skip


def actions() -> dict[str, Any]:
    return {a.dest: a for a in trainer_parser()._actions if a.dest != "help"}


def test_full_flag_type_map() -> None:
    found = actions()
    assert set(found) == set(FLAG_TYPES)
    assert {name: found[name].type.__name__ for name in found} == FLAG_TYPES
    assert "callbacks" not in found  # no str/int/float/bool type: skipped, as in 1.9.5


def test_bool_flags_take_an_optional_value_with_const_true() -> None:
    for name, action in actions().items():
        boolish = FLAG_TYPES[name] in (BOOL, BOOL_INT, BOOL_STR)
        assert (action.nargs, action.const) == (("?", True) if boolish else (None, None)), name


def test_defaults_are_the_signature_defaults() -> None:
    found = actions()
    for name, default in DEFAULTS_1_9_5.items():
        assert found[name].default == default, name
    parsed = parse()
    assert not set(ADDED_IN_2_X) & set(parsed)
    assert parse("--deterministic", "--barebones")["deterministic"] is True
    assert ap.default_attributes(Trainer)["max_epochs"] is None
    assert ap.default_attributes(Trainer)["num_nodes"] == 1
    assert "self" not in ap.default_attributes(Trainer)


def test_argument_group_title_and_separate_parser() -> None:
    parent = ArgumentParser(add_help=False)
    parent.add_argument("--conda_env", default="x")
    returned = Trainer.add_argparse_args(parent)
    assert returned is parent
    assert "pl.Trainer" in [g.title for g in parent._action_groups]
    child = Trainer.add_argparse_args(ArgumentParser(add_help=False), use_argument_group=False)
    assert child is not parent
    assert vars(child.parse_args(["--max_epochs", "2"]))["max_epochs"] == 2


def test_argument_group_instead_of_a_parser_is_refused() -> None:
    group = ArgumentParser().add_argument_group("g")
    with pytest.raises(RuntimeError, match=r"Please only pass an `ArgumentParser` instance\."):
        Trainer.add_argparse_args(group)  # type: ignore[arg-type]


def test_invalid_bool_value_is_an_argparse_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse("--enable_checkpointing", "maybe")
    assert exit_.value.code == 2
    assert "argument --enable_checkpointing: invalid str_to_bool value: 'maybe'" in capsys.readouterr().err


# -------------------------------------------------------------------- str_to_bool family
@pytest.mark.parametrize("text", ["y", "yes", "t", "true", "on", "1", "YES", "True"])
def test_truth_strings(text: str) -> None:
    assert ap.str_to_bool(text) is True
    assert ap.str_to_bool_or_int(text) is True
    assert ap.str_to_bool_or_str(text) is True


@pytest.mark.parametrize("text", ["n", "no", "f", "false", "off", "0", "FALSE"])
def test_false_strings(text: str) -> None:
    assert ap.str_to_bool(text) is False
    assert ap.str_to_bool_or_str(text) is False


def test_non_truth_strings() -> None:
    with pytest.raises(ValueError, match="invalid truth value maybe"):
        ap.str_to_bool("maybe")
    assert ap.str_to_bool_or_int("7") == 7
    assert ap.str_to_bool_or_int("x") == "x"
    assert ap.str_to_bool_or_str("binsearch") == "binsearch"


# -------------------------------------------------------------------- parse_argparser / from_argparse_args / env
def test_parse_argparser_turns_none_bool_flags_with_bool_defaults_into_true() -> None:
    args = Namespace(detect_anomaly=None, benchmark=None, max_epochs=None, conda_env="e")
    parsed = ap.parse_argparser(Trainer, args)
    assert vars(parsed) == {"detect_anomaly": True, "benchmark": None, "max_epochs": None, "conda_env": "e"}


def test_parse_argparser_reads_sys_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["prog", "--max_epochs", "5"])
    assert ap.parse_argparser(Trainer, trainer_parser()).max_epochs == 5


def test_from_argparse_args_drops_unknown_keys_and_kwargs_win(tmp_path: Path) -> None:
    args = parse("--max_epochs", "3", "--limit_train_batches", "2", "--default_root_dir", str(tmp_path))
    args.update(conda_env="my_env", encoder_layers=12)
    trainer = Trainer.from_argparse_args(Namespace(**args), max_epochs=7, logger=False)
    assert (trainer.max_epochs, trainer.limit_train_batches, trainer.loggers) == (7, 2, [])
    assert trainer.default_root_dir == str(tmp_path)


def test_from_argparse_args_accepts_a_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["prog", "--max_steps", "4", "--logger", "false"])
    trainer = Trainer.from_argparse_args(trainer_parser())
    assert (trainer.max_steps, trainer.loggers) == (4, [])


def test_argparse_defaults_override_env_defaults_as_in_1_x(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PL_TRAINER_MAX_EPOCHS", "9")
    monkeypatch.setenv("PL_TRAINER_LOGGER", "False")
    assert vars(ap.match_env_arguments(Trainer)) == {"max_epochs": 9, "logger": False}
    assert Trainer().max_epochs == 9
    trainer = Trainer.from_argparse_args(Namespace(**parse()))  # explicit max_epochs=None wins
    assert trainer.max_epochs is None


def test_removed_flags_at_their_1_9_5_defaults_are_not_forwarded(tmp_path: Path) -> None:
    trainer = Trainer.from_argparse_args(Namespace(**parse("--default_root_dir", str(tmp_path))))
    assert isinstance(trainer, Trainer)


def test_removed_flag_from_the_command_line_is_translated(tmp_path: Path) -> None:
    ckpt = str(tmp_path / "last.ckpt")
    args = Namespace(**parse("--resume_from_checkpoint", ckpt, "--replace_sampler_ddp", "false"))
    with pytest.warns(RemovedArgumentWarning):
        trainer = Trainer.from_argparse_args(args, logger=False)
    assert trainer.ckpt_path == ckpt
    assert trainer.use_distributed_sampler is False


def test_translated_removed_args_reach_the_trainer_through_their_2x_spelling(tmp_path: Path) -> None:
    args = {"default_root_dir": str(tmp_path), "max_epochs": 1}
    with pytest.warns(RemovedArgumentWarning, match=r"use_distributed_sampler=False"):
        init, after = translate_removed_args({**args, "replace_sampler_ddp": False, "resume_from_checkpoint": "p"})
    assert init["use_distributed_sampler"] is False
    assert after == {"resume_from_checkpoint": "p"}
    assert Trainer(**init).use_distributed_sampler is False


# -------------------------------------------------------------------- LightningDataModule
class MNISTData(LightningDataModule):
    def __init__(self, data_dir: str = "./data", batch_size: int = 32, shuffle: bool = True, frac: float = 1.0) -> None:
        """Digits.

        Args:
            data_dir: where the files are.
            batch_size: samples per batch.
            shuffle: shuffle the training set.
            frac: fraction of the data (50% is half).
        """
        super().__init__()
        self.data_dir, self.batch_size, self.shuffle, self.frac = data_dir, batch_size, shuffle, frac


def test_datamodule_argparse_round_trip() -> None:
    parser = ap.add_argparse_args(MNISTData, ArgumentParser())
    assert "pytest" not in [g.title for g in parser._action_groups]
    assert f"{__name__}.MNISTData" in [g.title for g in parser._action_groups]
    args = parser.parse_args(["--batch_size", "8", "--shuffle", "no", "--frac", "0.5", "--other", "x"][:-2])
    dm = ap.from_argparse_args(MNISTData, args, data_dir="/d")
    assert (dm.data_dir, dm.batch_size, dm.shuffle, dm.frac) == ("/d", 8, False, 0.5)
    assert [(n, d) for n, _, d in ap.get_init_arguments_and_types(MNISTData)] == [
        ("data_dir", "./data"), ("batch_size", 32), ("shuffle", True), ("frac", 1.0)
    ]  # fmt: skip
    helps = {a.dest: a.help for a in parser._actions}
    assert helps["frac"] == "fraction of the data (50%% is half)."  # escaped for argparse's % formatting


def test_help_text_comes_from_the_args_section_of_the_docstring() -> None:
    doc = """Summary.

    Args:
        alpha: first line
            continued here.
        beta (int): second.

    Returns:
        nothing: really.
    """
    assert ap.parse_args_from_docstring(doc) == {"alpha": "first line continued here.", "beta": "second."}


# -------------------------------------------------------------------- the seed's section 4 example
def seed_parser() -> ArgumentParser:
    sys.path.insert(0, str(EXAMPLE))
    try:
        from model import LitModel  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(EXAMPLE))
    parser = ArgumentParser()
    parser.add_argument("--conda_env", type=str, default="some_name")
    parser.add_argument("--notification_email", type=str, default="will@email.com")
    parser = LitModel.add_model_specific_args(parser)
    return Trainer.add_argparse_args(parser)


SEED_COMMAND = ["--accelerator", "gpu", "--devices", "2", "--num_nodes", "2", "--conda_env", "my_env",
                "--encoder_layers", "12"]  # fmt: skip


def test_seed_command_line_parses() -> None:
    args = seed_parser().parse_args(SEED_COMMAND)
    assert (args.accelerator, args.devices, args.num_nodes) == ("gpu", "2", 2)
    assert (args.conda_env, args.encoder_layers, args.data_path) == ("my_env", 12, "/some/path")
    assert args.notification_email == "will@email.com"


def test_seed_model_from_namespace_and_from_dict() -> None:
    args = seed_parser().parse_args(["--encoder_layers", "3"])
    sys.path.insert(0, str(EXAMPLE))
    try:
        from model import LitModel
    finally:
        sys.path.remove(str(EXAMPLE))
    assert LitModel(args).encoder_layers == 3
    model = LitModel(**vars(args))
    assert (model.encoder_layers, model.hparams["data_path"]) == (3, "/some/path")


@pytest.mark.skipif(fulgor.accelerators.cuda_available(), reason="checks the error of a machine without GPUs")
def test_seed_command_on_a_gpu_less_machine_fails_after_parsing_with_a_clear_error() -> None:
    args = seed_parser().parse_args(SEED_COMMAND)
    with pytest.raises(fulgor.errors.MisconfigurationException, match=r"accelerator='gpu'.*cpu"):
        Trainer.from_argparse_args(args)


def run_example(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(EXAMPLE / "trainer_main.py"), *argv], capture_output=True, text=True, env=env, cwd=cwd,
        timeout=120,
    )  # fmt: skip


def test_seed_example_trains_on_cpu(tmp_path: Path) -> None:
    proc = run_example("--accelerator", "cpu", "--devices", "1", "--max_epochs", "2", "--conda_env", "my_env",
                       "--encoder_layers", "2", "--enable_progress_bar", "false", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "conda_env=my_env encoder_layers=2 global_step=8" in proc.stdout
    # With omegaconf installed (the test extra has it), hparams.yaml keeps the order the values were saved in, as
    # Lightning writes it; without omegaconf both sort the keys.
    assert (tmp_path / "lightning_logs" / "version_0" / "hparams.yaml").read_text() == (
        "encoder_layers: 2\ndata_path: /some/path\n"
    )


@pytest.mark.skipif(fulgor.accelerators.cuda_available(), reason="checks the error of a machine without GPUs")
def test_seed_command_exits_with_a_clear_error_not_a_parser_error(tmp_path: Path) -> None:
    proc = run_example(*SEED_COMMAND, cwd=tmp_path)
    assert proc.returncode == 1  # argparse errors exit with 2
    assert "MisconfigurationException: No supported gpu backend found!" in proc.stderr
    assert "error: argument" not in proc.stderr
