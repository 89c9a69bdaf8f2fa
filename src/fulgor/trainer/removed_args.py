"""Trainer arguments that Lightning 2.0 (and earlier 1.x releases) removed: each one a user still passes is either
run as its 2.x spelling, with a one-line note, or refused with a TypeError that names the replacement."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fulgor.callbacks.callback import Callback
from fulgor.callbacks.model_summary import ModelSummary
from fulgor.callbacks.tqdm_progress import TQDMProgressBar
from fulgor.lightning_errors import LightningDeprecationWarning
from fulgor.rank import rank_zero_warn

__all__ = ["REMOVED_FLAGS", "RemovedArgumentWarning", "translate_removed_args"]


class RemovedArgumentWarning(LightningDeprecationWarning):
    """A removed Lightning 1.x Trainer argument was translated to its 2.x spelling (a `LightningDeprecationWarning`,
    the category 1.9.5 deprecated these arguments with, so filters written for 1.9.5 still apply)."""


# The 1.9.5 argparse flags of removed arguments: name -> (annotated types, 1.9.5 default, help). `--gpus 2` and
# friends keep parsing; `from_argparse_args` forwards only values that differ from the default.
REMOVED_FLAGS: dict[str, tuple[tuple[Any, ...], Any, str]] = {
    "gpus": ((list, str, int), None, "Removed in 2.0: use --accelerator gpu --devices N."),
    "num_processes": ((int,), None, "Removed in 2.0: use --accelerator cpu --devices N."),
    "auto_select_gpus": ((bool,), None, "Removed in 2.0: pass explicit --devices."),
    "tpu_cores": ((list, str, int), None, "Removed in 2.0: use --accelerator tpu --devices N."),
    "ipus": ((int,), None, "Removed in 2.0."),
    "track_grad_norm": ((int, float, str), -1, "Removed in 2.0: log grad norms in on_before_optimizer_step."),
    "resume_from_checkpoint": ((str,), None, "Removed in 2.0: fulgor sets trainer.ckpt_path from it."),
    "auto_lr_find": ((bool, str), False, "Removed in 2.0: use Tuner(trainer).lr_find(model)."),
    "replace_sampler_ddp": ((bool,), True, "Renamed in 2.0: --use_distributed_sampler."),
    "auto_scale_batch_size": ((str, bool), False, "Removed in 2.0: use Tuner(trainer).scale_batch_size(model)."),
    "amp_backend": ((str,), None, "Removed in 2.0: only torch AMP remains."),
    "amp_level": ((str,), None, "Removed in 2.0 with apex."),
    "move_metrics_to_cpu": ((bool,), False, "Removed in 2.0."),
    "multiple_trainloader_mode": ((str,), "max_size_cycle", "Removed in 2.0: use CombinedLoader(loaders, mode=...)."),
}

Init = dict[str, Any]  # Trainer.__init__ arguments
After = dict[str, Any]  # attributes to set on the Trainer once it is built
Rule = Callable[[Any, Init, After], str | None]


def translate_removed_args(kwargs: dict[str, Any]) -> tuple[Init, After]:
    """Translate the removed 1.x arguments in `kwargs` to their 2.x spelling, or refuse them.

    Args:
        kwargs: the Trainer's keyword arguments as passed (positional ones already named).

    Returns:
        `(init_kwargs, after_init)`: the arguments for `Trainer.__init__`, and `{attribute: value}` to set on the
        trainer once it is built (`resume_from_checkpoint=p`: the checkpoint of the next `fit`, as in 1.9.5).

    Raises:
        TypeError: the argument has no 2.x equivalent fulgor can run; the message names the replacement.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     translate_removed_args({"gpus": 2, "max_epochs": 3})
        ({'max_epochs': 3, 'accelerator': 'gpu', 'devices': 2}, {})
    """
    removed = [name for name in kwargs if name in _RULES]
    if not removed:
        return kwargs, {}
    init = {k: v for k, v in kwargs.items() if k not in _RULES}
    after: After = {}
    for name in removed:
        value = kwargs[name]
        note = _RULES[name](value, init, after)
        if not note:
            continue
        deprecation = _DEPRECATED_IN_1_9.get(name)
        if deprecation is None:
            message = f"`Trainer({name}={value!r})` was removed in Lightning 2.0; {note}"
        else:  # 1.9.5's own deprecation text first, so code matching it still matches
            message = f"{deprecation.format(value=value)} Lightning 2.0 removed it; {note}"
        rank_zero_warn(message, RemovedArgumentWarning)
    return init, after


# 1.9.5's deprecation message of the arguments it still ran (`{value}` is the value passed).
_DEPRECATED_IN_1_9 = {
    "gpus": "Setting `Trainer(gpus={value!r})` is deprecated in v1.7 and will be removed in v2.0."
    " Please use `Trainer(accelerator='gpu', devices={value!r})` instead.",
    "num_processes": "Setting `Trainer(num_processes={value})` is deprecated in v1.7 and will be removed in v2.0."
    " Please use `Trainer(accelerator='cpu', devices={value})` instead.",
    "tpu_cores": "Setting `Trainer(tpu_cores={value!r})` is deprecated in v1.7 and will be removed in v2.0."
    " Please use `Trainer(accelerator='tpu', devices={value!r})` instead.",
    "ipus": "Setting `Trainer(ipus={value})` is deprecated in v1.7 and will be removed in v2.0."
    " Please use `Trainer(accelerator='ipu', devices={value})` instead.",
    "auto_select_gpus": "The Trainer argument `auto_select_gpus` has been deprecated in v1.9.0 and will be removed in"
    " v2.0.0. Please use the function `pytorch_lightning.accelerators.find_usable_cuda_devices` instead.",
    "resume_from_checkpoint": "Setting `Trainer(resume_from_checkpoint=)` is deprecated in v1.5 and will be removed"
    " in v2.0. Please pass `Trainer.fit(ckpt_path=)` directly instead.",
    "amp_backend": "The NVIDIA/apex AMP implementation has been deprecated upstream. Consequently, its integration"
    " inside PyTorch Lightning has been deprecated in v1.9.0 and will be removed in v2.0.0. The"
    " `Trainer(amp_backend={value!r})` argument is deprecated. Removing this argument will avoid this message, it will"
    " select PyTorch's implementation automatically.",
    "amp_level": "The NVIDIA/apex AMP implementation has been deprecated upstream. Consequently, its integration inside"
    " PyTorch Lightning has been deprecated in v1.9.0 and will be removed in v2.0.0. The"
    " `Trainer(amp_level={value!r})` argument is deprecated. Removing this argument will avoid this message.",
}


# ---------------------------------------------------------------------------------------------------------- helpers
def _refuse(name: str, value: Any, replacement: str) -> TypeError:
    return TypeError(
        f"`Trainer({name}={value!r})` was removed in Lightning 2.0 and fulgor cannot run it: {replacement}"
    )


def _set(init: Init, name: str, value: Any, source: str, neutral: tuple[Any, ...] = ("auto",)) -> None:
    """Set `init[name]` unless the user also passed a different value for it."""
    current = init.get(name, neutral[0])
    if current not in neutral and current != value:
        raise TypeError(
            f"`Trainer({source})` means `{name}={value!r}` but `{name}={current!r}` was passed too."
            f" Remove `{source.split('=')[0]}` and keep `{name}`."
        )
    init[name] = value


def _add_callback(init: Init, callback: Any) -> None:
    existing = init.get("callbacks")
    if existing is None:
        init["callbacks"] = [callback]
    elif isinstance(existing, (list, tuple)):
        init["callbacks"] = [*existing, callback]
    else:
        init["callbacks"] = [existing, callback]


def _is_off(value: Any) -> bool:
    return value is None or value is False or (not isinstance(value, bool) and value in (0, "0", "", [], ()))


# ---------------------------------------------------------------------------------------------------------- 2.0 rules
def _device_count_flag(name: str, value: Any, accelerator: str, init: Init) -> str:
    """1.9.5's rule for `gpus=`/`num_processes=`: the count becomes `devices` (a `devices` passed too is ignored,
    with 1.9.5's warning), and picks the accelerator only when none was chosen ("auto", the default, counts as none;
    so `gpus=1, accelerator="cpu"` runs on one CPU device, as in 1.9.5)."""
    devices = init.get("devices", "auto")
    if devices not in ("auto", None) and devices != value:
        rank_zero_warn(
            f"The flag `devices={devices}` will be ignored, instead the device specific number {value} will be used"
        )
    init["devices"] = value
    if init.get("accelerator") in (None, "auto"):
        init["accelerator"] = accelerator
    return f"fulgor runs it as `Trainer(accelerator={init['accelerator']!r}, devices={value!r})`."


def _gpus(value: Any, init: Init, after: After) -> str:
    if _is_off(value):
        return "no GPU was asked for, so it is ignored (2.x: leave out `accelerator`/`devices`, or pass 'cpu')."
    return _device_count_flag("gpus", value, "gpu", init)


def _num_processes(value: Any, init: Init, after: After) -> str:
    if value in (None, 1) and "devices" not in init:
        return "it is ignored (one process is the default)."
    return _device_count_flag("num_processes", value, "cpu", init)


def _tpu_cores(value: Any, init: Init, after: After) -> str | None:
    if _is_off(value):
        return "it is ignored."
    raise _refuse("tpu_cores", value, "fulgor has no TPU support (2.x spelling: `accelerator='tpu', devices=N`).")


def _ipus(value: Any, init: Init, after: After) -> str | None:
    if _is_off(value):
        return "it is ignored."
    raise _refuse("ipus", value, "IPUs left Lightning in 2.0 (lightning-graphcore) and fulgor has no IPU support.")


def _auto_select_gpus(value: Any, init: Init, after: After) -> str | None:
    if not value:
        return "it is ignored."
    raise _refuse(
        "auto_select_gpus",
        value,
        "pass the GPU ids to use with `devices=[0, 1]` (2.x: `devices=find_usable_cuda_devices(2)`),"
        " or restrict them with CUDA_VISIBLE_DEVICES.",
    )


def _track_grad_norm(value: Any, init: Init, after: After) -> str | None:
    if value in (-1, -1.0, None):
        return "it is ignored (-1 meant off)."
    raise _refuse(
        "track_grad_norm",
        value,
        "log the norm yourself in `on_before_optimizer_step`, e.g."
        f" `self.log('grad_norm', torch.linalg.vector_norm(torch.stack([p.grad.norm({value!r}) for p in"
        " self.parameters() if p.grad is not None]), ...))` (2.x: `lightning.pytorch.utilities.grad_norm`).",
    )


def _resume(value: Any, init: Init, after: After) -> str | None:
    if value is None:
        return None
    after["resume_from_checkpoint"] = value  # the next fit's checkpoint, as in 1.9.5 (not every later run's)
    return f"fulgor runs it as `trainer.ckpt_path = {value!r}` (2.x: `trainer.fit(model, ckpt_path=...)`)."


def _auto_lr_find(value: Any, init: Init, after: After) -> str | None:
    if value is False or value is None:
        return "it is ignored (False meant off)."
    raise _refuse(
        "auto_lr_find",
        value,
        "the LR finder moved to `Tuner(trainer).lr_find(model)` / the `LearningRateFinder` callback in 2.x (both in"
        " fulgor, `from fulgor.tuner import Tuner`): remove the argument and call it before `fit`.",
    )


def _auto_scale(value: Any, init: Init, after: After) -> str | None:
    if value is False or value is None:
        return "it is ignored (False meant off)."
    raise _refuse(
        "auto_scale_batch_size",
        value,
        "the batch-size finder moved to `Tuner(trainer).scale_batch_size(model)` / the `BatchSizeFinder` callback"
        " in 2.x (both in fulgor, `from fulgor.tuner import Tuner`): remove the argument and call it before `fit`.",
    )


def _replace_sampler(value: Any, init: Init, after: After) -> str:
    _set(init, "use_distributed_sampler", bool(value), f"replace_sampler_ddp={value!r}", neutral=(True,))
    return f"fulgor runs it as `Trainer(use_distributed_sampler={bool(value)!r})`."


def _amp_backend(value: Any, init: Init, after: After) -> str | None:
    if value in (None, "native"):
        return "it is ignored: torch's native AMP is the only backend (choose it with `precision='16-mixed'`)."
    raise _refuse("amp_backend", value, "apex is gone; use torch AMP with `precision='16-mixed'` or 'bf16-mixed'.")


def _amp_level(value: Any, init: Init, after: After) -> str | None:
    if value is None:
        return "it is ignored."
    raise _refuse("amp_level", value, "apex optimisation levels are gone; use `precision='16-mixed'` or 'bf16-mixed'.")


def _move_metrics(value: Any, init: Init, after: After) -> str:
    return "it is ignored: fulgor keeps logged values on device and moves the metric dicts to CPU when a run ends."


def _trainloader_mode(value: Any, init: Init, after: After) -> str | None:
    if value == "max_size_cycle":
        return "it is ignored ('max_size_cycle' is how several training loaders are combined)."
    raise _refuse(
        "multiple_trainloader_mode",
        value,
        f"return `CombinedLoader(loaders, mode={value!r})` from `train_dataloader` instead.",
    )


# ---------------------------------------------------------------------------------------------------------- older rules
def _distributed_backend(value: Any, init: Init, after: After) -> str:
    _set(init, "strategy", value, f"distributed_backend={value!r}")
    return f"fulgor runs it as `Trainer(strategy={value!r})`."


def _truncated_bptt(value: Any, init: Init, after: After) -> str | None:
    if _is_off(value):
        return "it is ignored."
    raise _refuse(
        "truncated_bptt_steps",
        value,
        "split the sequence yourself in `training_step` with manual optimization (`automatic_optimization = False`).",
    )


def _checkpoint_callback(value: Any, init: Init, after: After) -> str:
    if isinstance(value, Callback):
        _add_callback(init, value)
        return "fulgor adds it to `callbacks` (2.x: `Trainer(callbacks=[ModelCheckpoint(...)])`)."
    _set(init, "enable_checkpointing", bool(value), f"checkpoint_callback={value!r}", neutral=(None,))
    return f"fulgor runs it as `Trainer(enable_checkpointing={bool(value)!r})`."


def _refresh_rate(value: Any, init: Init, after: After) -> str:
    if value == 0:
        _set(init, "enable_progress_bar", False, "progress_bar_refresh_rate=0", neutral=(None,))
        return "fulgor runs it as `Trainer(enable_progress_bar=False)`."
    if value is None:
        return "it is ignored."
    _add_callback(init, TQDMProgressBar(refresh_rate=int(value)))
    return f"fulgor runs it as `Trainer(callbacks=[TQDMProgressBar(refresh_rate={value!r})])`."


def _process_position(value: Any, init: Init, after: After) -> str:
    if not value:
        return "it is ignored."
    _add_callback(init, TQDMProgressBar(process_position=int(value)))
    return f"fulgor runs it as `Trainer(callbacks=[TQDMProgressBar(process_position={value!r})])`."


def _weights_summary(value: Any, init: Init, after: After) -> str:
    if value is None:
        _set(init, "enable_model_summary", False, "weights_summary=None", neutral=(None,))
        return "fulgor runs it as `Trainer(enable_model_summary=False)`."
    if value == "full":
        _add_callback(init, ModelSummary(max_depth=-1))
        return "fulgor runs it as `Trainer(callbacks=[ModelSummary(max_depth=-1)])`."
    return "it is ignored ('top' is the default summary)."


def _swa(value: Any, init: Init, after: After) -> str | None:
    if not value:
        return "it is ignored."
    raise _refuse(
        "stochastic_weight_avg",
        value,
        "add `callbacks=[StochasticWeightAveraging(swa_lrs=...)]` (its learning rate is now required).",
    )


def _terminate_on_nan(value: Any, init: Init, after: After) -> str:
    if not value:
        return "it is ignored."
    _set(init, "detect_anomaly", True, "terminate_on_nan=True", neutral=(False,))
    return "fulgor runs it as `Trainer(detect_anomaly=True)`."


def _prepare_per_node(value: Any, init: Init, after: After) -> str | None:
    if value in (True, None):
        return "it is ignored (True is the default)."
    raise _refuse(
        "prepare_data_per_node",
        value,
        "set `self.prepare_data_per_node = False` in your LightningModule's or LightningDataModule's `__init__`.",
    )


def _reload_every_epoch(value: Any, init: Init, after: After) -> str:
    if not value:
        return "it is ignored."
    _set(init, "reload_dataloaders_every_n_epochs", 1, "reload_dataloaders_every_epoch=True", neutral=(0,))
    return "fulgor runs it as `Trainer(reload_dataloaders_every_n_epochs=1)`."


def _weights_save_path(value: Any, init: Init, after: After) -> str | None:
    if value is None:
        return "it is ignored."
    raise _refuse(
        "weights_save_path", value, f"pass `callbacks=[ModelCheckpoint(dirpath={value!r})]` (or `default_root_dir`)."
    )


def _dropped(name: str) -> Rule:
    def rule(value: Any, init: Init, after: After) -> str | None:
        if _is_off(value):
            return "it is ignored."
        raise _refuse(name, value, "remove it; fulgor has no equivalent.")

    return rule


def _early_stop_callback(value: Any, init: Init, after: After) -> str:
    if isinstance(value, Callback):
        _add_callback(init, value)
        return "fulgor adds it to `callbacks` (2.x: `Trainer(callbacks=[EarlyStopping(...)])`)."
    if value is True:
        raise _refuse(
            "early_stop_callback", value, "add `callbacks=[EarlyStopping(monitor='val_loss')]` naming the metric."
        )
    # `None`/`False`, or the documentation placeholder `...` that 1.x docs wrote as `early_stopping_callback=...`
    return "no callback was given, so it is ignored (2.x: `Trainer(callbacks=[EarlyStopping(...)])`)."


_RULES: dict[str, Rule] = {
    "gpus": _gpus,
    "num_processes": _num_processes,
    "tpu_cores": _tpu_cores,
    "ipus": _ipus,
    "auto_select_gpus": _auto_select_gpus,
    "track_grad_norm": _track_grad_norm,
    "resume_from_checkpoint": _resume,
    "auto_lr_find": _auto_lr_find,
    "auto_scale_batch_size": _auto_scale,
    "replace_sampler_ddp": _replace_sampler,
    "amp_backend": _amp_backend,
    "amp_level": _amp_level,
    "move_metrics_to_cpu": _move_metrics,
    "multiple_trainloader_mode": _trainloader_mode,
    "distributed_backend": _distributed_backend,
    "accelerator_backend": _distributed_backend,
    "truncated_bptt_steps": _truncated_bptt,
    "checkpoint_callback": _checkpoint_callback,
    "progress_bar_refresh_rate": _refresh_rate,
    "process_position": _process_position,
    "flush_logs_every_n_steps": lambda v, i, a: "it is ignored (2.x: `CSVLogger(flush_logs_every_n_steps=...)`).",
    "log_gpu_memory": _dropped("log_gpu_memory"),
    "weights_summary": _weights_summary,
    "stochastic_weight_avg": _swa,
    "terminate_on_nan": _terminate_on_nan,
    "prepare_data_per_node": _prepare_per_node,
    "reload_dataloaders_every_epoch": _reload_every_epoch,
    "weights_save_path": _weights_save_path,
    "early_stop_callback": _early_stop_callback,
    "early_stopping_callback": _early_stop_callback,
}
