"""Differential: `Trainer.add_argparse_args` + `parse_argparser` against pytorch-lightning 1.9.5, recorded by running
1.9.5 itself (pip-installed beside torch 2.x) on each command line below: the parsed Namespace, in 1.9.5's order."""

from __future__ import annotations

from argparse import ArgumentParser, Namespace
from typing import Any

import pytest

from fulgor import Trainer
from fulgor.trainer.removed_args import RemovedArgumentWarning

# 1.9.5: vars(Trainer.parse_argparser(Trainer.add_argparse_args(ArgumentParser()).parse_args([])))
DEFAULTS_1_9_5: list[tuple[str, Any]] = [
    ("logger", True),
    ("enable_checkpointing", True),
    ("default_root_dir", None),
    ("gradient_clip_val", None),
    ("gradient_clip_algorithm", None),
    ("num_nodes", 1),
    ("num_processes", None),
    ("devices", None),
    ("gpus", None),
    ("auto_select_gpus", None),
    ("tpu_cores", None),
    ("ipus", None),
    ("enable_progress_bar", True),
    ("overfit_batches", 0.0),
    ("track_grad_norm", -1),
    ("check_val_every_n_epoch", 1),
    ("fast_dev_run", False),
    ("accumulate_grad_batches", None),
    ("max_epochs", None),
    ("min_epochs", None),
    ("max_steps", -1),
    ("min_steps", None),
    ("max_time", None),
    ("limit_train_batches", None),
    ("limit_val_batches", None),
    ("limit_test_batches", None),
    ("limit_predict_batches", None),
    ("val_check_interval", None),
    ("log_every_n_steps", 50),
    ("accelerator", None),
    ("strategy", None),
    ("sync_batchnorm", False),
    ("precision", 32),
    ("enable_model_summary", True),
    ("num_sanity_val_steps", 2),
    ("resume_from_checkpoint", None),
    ("profiler", None),
    ("benchmark", None),
    ("reload_dataloaders_every_n_epochs", 0),
    ("auto_lr_find", False),
    ("replace_sampler_ddp", True),
    ("detect_anomaly", False),
    ("auto_scale_batch_size", False),
    ("plugins", None),
    ("amp_backend", None),
    ("amp_level", None),
    ("move_metrics_to_cpu", False),
    ("multiple_trainloader_mode", "max_size_cycle"),
    ("inference_mode", True),
]
# 1.9.5: command line -> the values that differ from DEFAULTS_1_9_5
RECORDED: list[tuple[list[str], dict[str, Any]]] = [
    (["--devices", "2", "--accelerator", "gpu"], {"devices": "2", "accelerator": "gpu"}),
    (["--gpus", "0,1"], {"gpus": "0,1"}),
    (["--gpus", "2"], {"gpus": 2}),
    (["--fast_dev_run"], {"fast_dev_run": True}),
    (["--fast_dev_run", "3"], {"fast_dev_run": 3}),
    (["--logger", "false"], {"logger": False}),
    (["--precision", "bf16"], {"precision": "bf16"}),
    (["--precision", "16"], {"precision": 16}),
    (["--limit_train_batches", "1"], {"limit_train_batches": 1}),
    (["--limit_val_batches", "0.5"], {"limit_val_batches": 0.5}),
    (["--max_epochs", "3", "--max_steps", "10"], {"max_epochs": 3, "max_steps": 10}),
    (["--accumulate_grad_batches", "4"], {"accumulate_grad_batches": 4}),
    (["--track_grad_norm", "2"], {"track_grad_norm": 2.0}),
    (["--auto_lr_find", "my_lr"], {"auto_lr_find": "my_lr"}),
    (["--benchmark"], {"benchmark": True}),
    (["--num_processes", "2", "--strategy", "ddp"], {"num_processes": 2, "strategy": "ddp"}),
    (["--replace_sampler_ddp", "no"], {"replace_sampler_ddp": False}),
    (["--enable_progress_bar", "0"], {"enable_progress_bar": False}),
    (["--overfit_batches", "3"], {"overfit_batches": 3}),
    (["--gradient_clip_val", "0.5"], {"gradient_clip_val": 0.5}),
]


def parsed(argv: list[str]) -> list[tuple[str, Any]]:
    parser = Trainer.add_argparse_args(ArgumentParser())
    return list(vars(Trainer.parse_argparser(parser.parse_args(argv))).items())


def test_defaults_are_1_9_5s_exactly_in_its_order() -> None:
    assert parsed([]) == DEFAULTS_1_9_5


@pytest.mark.parametrize(("argv", "changed"), RECORDED, ids=[" ".join(argv) for argv, _ in RECORDED])
def test_command_line_parses_as_in_1_9_5(argv: list[str], changed: dict[str, Any]) -> None:
    expected = [(name, changed.get(name, value)) for name, value in DEFAULTS_1_9_5]
    got = parsed(argv)
    assert got == expected
    assert [type(v) for _, v in got] == [type(v) for _, v in expected]  # 1 is not True, "2" is not 2


def test_flags_2_x_added_parse_only_when_given() -> None:
    got = dict(parsed(["--deterministic", "warn", "--use_distributed_sampler", "false", "--barebones"]))
    assert (got["deterministic"], got["use_distributed_sampler"], got["barebones"]) == ("warn", False, True)
    assert len(got) == len(DEFAULTS_1_9_5) + 3


def test_1_9_5_defaults_build_the_2_x_default_trainer(tmp_path: Any) -> None:
    args = Namespace(**dict(parsed(["--default_root_dir", str(tmp_path)])))
    trainer = Trainer.from_argparse_args(args)
    plain = Trainer(default_root_dir=str(tmp_path))
    for name in (
        "max_epochs",
        "max_steps",
        "precision",
        "num_devices",
        "log_every_n_steps",
        "num_sanity_val_steps",
        "accumulate_grad_batches",
        "use_distributed_sampler",
    ):
        assert getattr(trainer, name) == getattr(plain, name), name
    assert type(trainer.accelerator) is type(plain.accelerator)
    assert type(trainer.strategy) is type(plain.strategy)
    assert type(trainer.logger) is type(plain.logger)


def test_explicit_1_9_5_defaults_still_win_over_environment_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PL_TRAINER_MAX_STEPS", "7")
    assert Trainer(logger=False).max_steps == 7
    trainer = Trainer.from_argparse_args(Namespace(**dict(parsed(["--logger", "false"]))))
    assert trainer.max_steps == -1  # 1.9.5 passed the parsed -1 explicitly, which beats the variable


def test_removed_flag_set_on_the_command_line_is_translated_with_1_9_5s_warning() -> None:
    args = Namespace(**dict(parsed(["--num_processes", "1", "--logger", "false"])))
    with pytest.warns(RemovedArgumentWarning, match=r"^Setting `Trainer\(num_processes=1\)` is deprecated in v1\.7"):
        trainer = Trainer.from_argparse_args(args)
    assert trainer.num_devices == 1


# 1.9.5: `Trainer(gpus=1, accelerator="cpu")` -> CPUAccelerator, 1 device, this one LightningDeprecationWarning
GPUS_1_CPU_WARNING_1_9_5 = (
    "Setting `Trainer(gpus=1)` is deprecated in v1.7 and will be removed in v2.0. Please use"
    " `Trainer(accelerator='gpu', devices=1)` instead."
)


def test_gpus_with_cpu_accelerator_runs_on_cpu_with_1_9_5s_warning(tmp_path: Any) -> None:
    from fulgor.accelerators import CPUAccelerator
    from fulgor.demos.boring_classes import BoringModel
    from fulgor.lightning_errors import LightningDeprecationWarning

    with pytest.warns(LightningDeprecationWarning) as record:
        trainer = Trainer(gpus=1, accelerator="cpu", max_steps=1, default_root_dir=str(tmp_path), logger=False)
    messages = [str(w.message) for w in record if issubclass(w.category, LightningDeprecationWarning)]
    assert len(messages) == 1
    assert messages[0].startswith(GPUS_1_CPU_WARNING_1_9_5)  # then fulgor's note on how it runs it
    assert isinstance(trainer.accelerator, CPUAccelerator)
    assert (trainer.num_devices, trainer.device_ids) == (1, [0])
    trainer.fit(BoringModel())
    assert trainer.global_step == 1
