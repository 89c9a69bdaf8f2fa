"""The 1.x hooks (fulgor.trainer.legacy_hooks): `*_step_end` replacing step outputs, `*_epoch_end(outputs)` with
1.9.5's `outputs` structure and call position, called only when defined; and the removed Trainer arguments."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader

import fulgor
from fulgor.errors import MisconfigurationException
from fulgor.trainer.legacy_hooks import LegacyHooks, resolve_legacy_hooks
from fulgor.trainer.removed_args import RemovedArgumentWarning, translate_removed_args
from helpers.boring import RandomDataset


class Recorder:
    """A stand-in module: records each 1.x hook call with the `self.log` context it ran in."""

    def __init__(self, replace: bool = True) -> None:
        self.calls: list[tuple[str, Any, str | None]] = []
        self._current_fx_name: str | None = None
        self.replace = replace

    def training_step_end(self, out: Any) -> Any:
        self.calls.append(("training_step_end", out, self._current_fx_name))
        return {"loss": out["loss"] * 2} if self.replace else None

    def validation_step_end(self, out: Any) -> Any:
        self.calls.append(("validation_step_end", out, self._current_fx_name))
        return out + 100 if self.replace and out is not None else None

    def training_epoch_end(self, outputs: Any) -> None:
        self.calls.append(("training_epoch_end", outputs, self._current_fx_name))

    def validation_epoch_end(self, outputs: Any) -> None:
        self.calls.append(("validation_epoch_end", outputs, self._current_fx_name))

    def test_epoch_end(self, outputs: Any) -> None:
        self.calls.append(("test_epoch_end", outputs, self._current_fx_name))


def test_nothing_defined_means_no_legacy_object() -> None:
    assert resolve_legacy_hooks(SimpleNamespace(_current_fx_name=None)) is None
    legacy = resolve_legacy_hooks(Recorder())
    assert isinstance(legacy, LegacyHooks)
    assert sorted(legacy.step_end) == ["training_step", "validation_step"]
    assert sorted(legacy.outputs) == ["test", "train", "validation"]


def test_step_end_output_replaces_the_step_output_with_the_steps_log_rules() -> None:
    module = Recorder()
    legacy = LegacyHooks(module)
    out = legacy.after_step("training_step", {"loss": torch.tensor(1.5)})
    assert float(out["loss"]) == 3.0
    assert module.calls[0][0] == "training_step_end"
    assert module.calls[0][2] == "training_step"
    assert module._current_fx_name is None  # restored
    assert legacy.after_step("test_step", 7) == 7  # test_step_end not defined: unchanged


def test_step_end_returning_none_keeps_the_step_output() -> None:
    legacy = LegacyHooks(Recorder(replace=False))
    assert legacy.after_step("validation_step", 5) == 5


def test_validation_outputs_one_loader_are_a_flat_list_of_step_end_outputs() -> None:
    module = Recorder()
    legacy = LegacyHooks(module)
    for i in range(3):
        legacy.after_step("validation_step", i)
    legacy.after_step("validation_step", None)  # skipped: None outputs are not kept (but step_end still ran)
    legacy.epoch_end("validation")
    assert module.calls[-1] == ("validation_epoch_end", [100, 101, 102], "on_validation_epoch_end")
    legacy.epoch_end("validation")  # outputs were freed
    assert module.calls[-1] == ("validation_epoch_end", [], "on_validation_epoch_end")


def test_outputs_of_several_loaders_are_a_list_per_loader() -> None:
    module = Recorder()
    legacy = LegacyHooks(module)
    for dl, value in [(0, 1), (0, 2), (1, 3), (2, 4)]:
        legacy.after_step("test_step", value, dl)
    legacy.epoch_end("test", num_dataloaders=4)
    assert module.calls[-1] == ("test_epoch_end", [[1, 2], [3], [4], []], "on_test_epoch_end")


def test_training_epoch_end_gets_the_batch_results_and_skips_empty_ones() -> None:
    module = Recorder()
    legacy = LegacyHooks(module)
    batches = [{"loss": torch.tensor(0.5)}, {}, {"loss": torch.tensor(0.25), "acc": 1}]
    for b in batches:
        legacy.collect_train(b)
    legacy.epoch_end("train")
    name, outputs, fx = module.calls[-1]
    assert (name, fx) == ("training_epoch_end", "on_train_epoch_end")
    assert outputs == [batches[0], batches[2]]


def test_training_epoch_end_is_not_called_without_outputs() -> None:
    module = Recorder()
    LegacyHooks(module).epoch_end("train")
    assert module.calls == []


def test_training_epoch_end_must_return_none() -> None:
    class Returns(Recorder):
        def training_epoch_end(self, outputs: Any) -> Any:
            return outputs

    legacy = LegacyHooks(Returns())
    legacy.collect_train({"loss": torch.tensor(1.0)})
    with pytest.raises(MisconfigurationException, match=r"`training_epoch_end` expects a return of None\. HINT"):
        legacy.epoch_end("train")


def test_outputs_are_not_kept_when_the_epoch_end_hook_is_not_defined() -> None:
    class StepEndOnly:
        _current_fx_name = None

        def test_step_end(self, out: Any) -> Any:
            return out

    legacy = LegacyHooks(StepEndOnly())
    legacy.after_step("test_step", 1)
    assert legacy.outputs == {}


# -------------------------------------------------------------------- removed Trainer arguments
@pytest.mark.parametrize(
    ("given", "init", "after", "note"),
    [
        ({"gpus": 2}, {"accelerator": "gpu", "devices": 2}, {}, "accelerator='gpu', devices=2"),
        ({"gpus": "0,1", "accelerator": "gpu"}, {"accelerator": "gpu", "devices": "0,1"}, {}, "devices='0,1'"),
        ({"gpus": 0}, {}, {}, "no GPU was asked for"),
        ({"num_processes": 2}, {"accelerator": "cpu", "devices": 2}, {}, "accelerator='cpu', devices=2"),
        (
            {"resume_from_checkpoint": "a.ckpt"},
            {},
            {"resume_from_checkpoint": "a.ckpt"},
            "trainer.ckpt_path = 'a.ckpt'",
        ),
        ({"replace_sampler_ddp": False}, {"use_distributed_sampler": False}, {}, "use_distributed_sampler=False"),
        ({"auto_lr_find": False}, {}, {}, "ignored"),
        ({"track_grad_norm": -1}, {}, {}, "ignored"),
        ({"amp_backend": "native"}, {}, {}, "native AMP"),
        ({"checkpoint_callback": False}, {"enable_checkpointing": False}, {}, "enable_checkpointing=False"),
        ({"terminate_on_nan": True}, {"detect_anomaly": True}, {}, "detect_anomaly=True"),
        ({"reload_dataloaders_every_epoch": True}, {"reload_dataloaders_every_n_epochs": 1}, {}, "every_n_epochs=1"),
        ({"distributed_backend": "ddp"}, {"strategy": "ddp"}, {}, "strategy='ddp'"),
        ({"weights_summary": None}, {"enable_model_summary": False}, {}, "enable_model_summary=False"),
        ({"early_stopping_callback": ...}, {}, {}, "no callback was given"),
    ],
)
def test_removed_argument_runs_as_its_2x_spelling(
    given: dict[str, Any], init: dict[str, Any], after: dict[str, Any], note: str
) -> None:
    with pytest.warns(RemovedArgumentWarning, match="was removed in Lightning 2.0|Lightning 2.0 removed it") as record:
        assert translate_removed_args({"max_epochs": 1, **given}) == ({"max_epochs": 1, **init}, after)
    assert note in str(record[0].message)


@pytest.mark.parametrize(
    ("given", "replacement"),
    [
        ({"auto_lr_find": True}, "Tuner(trainer).lr_find(model)"),
        ({"auto_scale_batch_size": "binsearch"}, "Tuner(trainer).scale_batch_size(model)"),
        ({"track_grad_norm": 2}, "on_before_optimizer_step"),
        ({"amp_backend": "apex"}, "precision='16-mixed'"),
        ({"amp_level": "O2"}, "precision='16-mixed'"),
        ({"auto_select_gpus": True}, "devices=[0, 1]"),
        ({"multiple_trainloader_mode": "min_size"}, "CombinedLoader(loaders, mode='min_size')"),
        ({"tpu_cores": 8}, "accelerator='tpu'"),
        ({"truncated_bptt_steps": 2}, "automatic_optimization = False"),
        ({"stochastic_weight_avg": True}, "StochasticWeightAveraging(swa_lrs=...)"),
        ({"weights_save_path": "w"}, "ModelCheckpoint(dirpath='w')"),
        ({"prepare_data_per_node": False}, "self.prepare_data_per_node = False"),
    ],
)
def test_removed_argument_without_equivalent_is_refused_naming_the_replacement(
    given: dict[str, Any], replacement: str
) -> None:
    ((name, value),) = given.items()
    with pytest.raises(TypeError) as error:
        translate_removed_args(given)
    message = str(error.value)
    assert message.startswith(f"`Trainer({name}={value!r})` was removed in Lightning 2.0 and fulgor cannot run it: ")
    assert replacement in message


def test_device_count_flag_wins_over_devices_as_in_1_9_5() -> None:
    with pytest.warns(UserWarning, match=r"^The flag `devices=4` will be ignored, instead the device specific"):
        init, _ = translate_removed_args({"num_processes": 2, "devices": 4})
    assert init == {"accelerator": "cpu", "devices": 2}


def test_callbacks_from_removed_arguments_are_appended() -> None:
    stopper = fulgor.callbacks.EarlyStopping("val_loss")
    with pytest.warns(RemovedArgumentWarning):
        init, _ = translate_removed_args({"early_stop_callback": stopper, "callbacks": fulgor.callbacks.Timer()})
    assert [type(c).__name__ for c in init["callbacks"]] == ["Timer", "EarlyStopping"]


def test_no_removed_arguments_is_free() -> None:
    kwargs = {"max_epochs": 1}
    assert translate_removed_args(kwargs)[0] is kwargs


def test_trainer_accepts_gpus_zero_and_resume_from_checkpoint() -> None:
    with pytest.warns(RemovedArgumentWarning):
        trainer = fulgor.Trainer(gpus=0, resume_from_checkpoint="x.ckpt", logger=False)  # type: ignore[call-arg]
    assert trainer.ckpt_path == "x.ckpt"


# -------------------------------------------------------------------- end to end (once the loops call these)
class LegacyModel(fulgor.LightningModule):
    def __init__(self, calls: list[str]) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.calls = calls
        self.epoch_outputs: list[Any] = []

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        self.calls.append("training_step")
        return {"loss": self.layer(batch).pow(2).mean(), "idx": batch_idx}

    def training_step_end(self, out: Any) -> Any:
        self.calls.append("training_step_end")
        return {**out, "seen": True}

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.calls.append(f"on_train_batch_end:{sorted(outputs)}")

    def training_epoch_end(self, outputs: Any) -> None:
        self.calls.append("training_epoch_end")
        self.epoch_outputs.append([(o["idx"], o["seen"]) for o in outputs])

    def on_train_epoch_end(self) -> None:
        self.calls.append("on_train_epoch_end")

    def validation_step(self, batch: Any, batch_idx: int) -> Any:
        self.calls.append("validation_step")
        return batch_idx

    def validation_step_end(self, out: Any) -> Any:
        self.calls.append("validation_step_end")
        return out * 10

    def on_validation_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.calls.append(f"on_validation_batch_end:{outputs}")

    def validation_epoch_end(self, outputs: Any) -> None:
        self.calls.append(f"validation_epoch_end:{outputs}")

    def on_validation_epoch_end(self) -> None:
        self.calls.append("on_validation_epoch_end")

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_fit_calls_the_1x_hooks_where_1_9_5_did() -> None:
    calls: list[str] = []
    model = LegacyModel(calls)
    loader = DataLoader(RandomDataset(4, 4), batch_size=2)
    trainer = fulgor.Trainer(max_epochs=1, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(model, loader, loader)
    batch = ["training_step", "training_step_end", "on_train_batch_end:['idx', 'loss', 'seen']"]
    val = ["validation_step", "validation_step_end", "on_validation_batch_end:0", "validation_step",
           "validation_step_end", "on_validation_batch_end:10", "validation_epoch_end:[0, 10]",
           "on_validation_epoch_end"]  # fmt: skip
    assert calls == [*batch, *batch, *val, "training_epoch_end", "on_train_epoch_end"]
    assert model.epoch_outputs == [[(0, True), (1, True)]]
