"""`load_from_checkpoint` of LightningModule and LightningDataModule: build the class from the stored hparams (or
an `hparams_file`) and load its weights or datamodule state; checks that stored weights and optimizer states fit."""

from __future__ import annotations

import inspect
import os
from typing import Any, TypeVar

import torch
from torch import Tensor

from fulgor import fs
from fulgor.checkpointing import CheckpointError, load_checkpoint_file
from fulgor.cli_classes import pop_instantiator
from fulgor.hparams import load_hparams_from_yaml
from fulgor.rank import rank_zero_warn

__all__ = [
    "check_optimizer_state",
    "class_only",
    "load_datamodule_from_checkpoint",
    "load_module_from_checkpoint",
]


class class_only(classmethod):  # type: ignore[type-arg]
    """A classmethod that refuses to run on an instance (its result would be silently discarded). Reading it from an
    instance is allowed (`inspect.getmembers(model)` must work); calling it raises."""

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return super().__get__(instance, owner)
        name = f"{type(instance).__name__}.{self.__func__.__name__}"

        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise TypeError(
                f"The classmethod `{name}` cannot be called on an instance. Please call it on the class type and"
                " make sure the return value is used."
            )

        return refuse


_PAST_HPARAMS_KEYS = ("hparams", "module_arguments")  # 0.7.x names of `hyper_parameters`
T = TypeVar("T")


def load_module_from_checkpoint(
    cls: type[T],
    checkpoint_path: Any,
    map_location: Any = None,
    hparams_file: Any = None,
    strict: bool | None = None,
    weights_only: bool | None = None,
    **kwargs: Any,
) -> T:
    """`LightningModule.load_from_checkpoint`: build `cls` from the stored hparams (then `hparams_file`, then `kwargs`)
    and load the weights; the model is moved to the device of the stored tensors and left in training mode."""
    checkpoint = _checkpoint_for_class(cls, checkpoint_path, map_location, hparams_file, weights_only, kwargs)
    model: Any = _instantiate(cls, checkpoint, kwargs)
    if model._strict_loading is not None and strict is not None and strict != model.strict_loading:
        raise ValueError(
            f"You set `.load_from_checkpoint(..., strict={strict!r})` which is in conflict with"
            f" `{cls.__name__}.strict_loading={model.strict_loading!r}. Please set the same value for both of them."
        )
    strict = model.strict_loading if strict is None else strict
    model.configure_model()  # layers built there must exist before the weights load (the default does nothing)
    model.on_load_checkpoint(checkpoint)
    load_weights(model, checkpoint, _display(checkpoint_path), bool(strict))
    state_dict = checkpoint["state_dict"]
    if not state_dict:
        rank_zero_warn(f"The state dict in {_display(checkpoint_path)!r} contains no parameters.")
        return model  # type: ignore[no-any-return]
    device = next((t.device for t in state_dict.values() if isinstance(t, Tensor)), torch.device("cpu"))
    return model.to(device)  # type: ignore[no-any-return]


def load_datamodule_from_checkpoint(
    cls: type[T], checkpoint_path: Any, map_location: Any = None, hparams_file: Any = None,
    weights_only: bool | None = None, **kwargs: Any,
) -> T:  # fmt: skip
    """`LightningDataModule.load_from_checkpoint`: build `cls` from the stored datamodule hparams and state."""
    checkpoint = _checkpoint_for_class(cls, checkpoint_path, map_location, hparams_file, weights_only, kwargs)
    datamodule: Any = _instantiate(cls, checkpoint, kwargs)
    if type(datamodule).__qualname__ in checkpoint:
        datamodule.load_state_dict(checkpoint[type(datamodule).__qualname__])
    return datamodule  # type: ignore[no-any-return]


def _display(path: Any) -> str:
    return os.fspath(path) if isinstance(path, (str, os.PathLike)) else repr(path)


def _checkpoint_for_class(
    cls: Any, path: Any, map_location: Any, hparams_file: Any, weights_only: bool | None, kwargs: dict[str, Any]
) -> dict[str, Any]:
    checkpoint = load_checkpoint_file(path, map_location, weights_only)
    key = cls.CHECKPOINT_HYPER_PARAMS_KEY
    if hparams_file is not None:
        extension = str(hparams_file).rsplit(".", 1)[-1].lower()
        if extension == "csv":
            checkpoint[key] = _load_hparams_csv(hparams_file)
        elif extension in ("yml", "yaml"):
            checkpoint[key] = load_hparams_from_yaml(hparams_file)
        else:
            raise ValueError(".csv, .yml or .yaml is required for `hparams_file`")
    checkpoint.setdefault(key, {})
    checkpoint[key].update(kwargs)
    return checkpoint


def _load_hparams_csv(path: Any) -> dict[str, Any]:
    """Lightning's `tags.csv` (`key,value` rows; values parsed as YAML scalars)."""
    import csv

    import yaml

    if not fs.exists(path) or fs.isdir(path):
        rank_zero_warn(f"Missing Tags: {path}.", category=RuntimeWarning)
        return {}
    with fs.open(path, "r", newline="") as file:
        rows = list(csv.DictReader(file))
    return {row["key"]: yaml.safe_load(row["value"]) for row in rows}


def _instantiate(cls: Any, checkpoint: dict[str, Any], new_kwargs: dict[str, Any]) -> Any:
    """Call `cls(...)` with the stored hparams: passed whole as one argument when `hparams_name` names one."""
    signature = inspect.signature(cls.__init__)
    params = list(signature.parameters.values())[1:]
    takes_var_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    names = [p.name for p in params if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]
    loaded: dict[str, Any] = {}
    key = cls.CHECKPOINT_HYPER_PARAMS_KEY
    if key in checkpoint:
        if key == "hyper_parameters":
            for old in _PAST_HPARAMS_KEYS:
                loaded.update(checkpoint.get(old, {}))
        loaded.update(checkpoint.get(key, {}))
        args_name = checkpoint.get(cls.CHECKPOINT_HYPER_PARAMS_NAME)
        if args_name and args_name in names:
            loaded = {args_name: loaded}
    kwargs = {**loaded, **new_kwargs}
    instantiator = pop_instantiator(cls, kwargs)  # a LightningCLI-made module: rebuilt from its parsed config
    if not takes_var_kwargs:
        kwargs = {k: v for k, v in kwargs.items() if k in names}
    return instantiator(cls, kwargs) if instantiator else cls(**kwargs)


def load_weights(module: Any, checkpoint: dict[str, Any], path: str, strict: bool) -> None:
    """`module.load_state_dict` of the checkpoint's weights; a mismatch names the file (missing/unexpected keys are
    warned about when not `strict`)."""
    try:
        keys = module.load_state_dict(checkpoint["state_dict"], strict=strict)
    except RuntimeError as e:
        raise CheckpointError(
            f"The weights in {path!r} do not fit `{type(module).__name__}` (a checkpoint of another model or"
            f" configuration?):\n{e}"
        ) from e
    if not strict:
        _warn_keys(keys)


def _warn_keys(keys: Any) -> None:
    if keys.missing_keys:
        rank_zero_warn(f"Found keys that are in the model state dict but not in the checkpoint: {keys.missing_keys}")
    if keys.unexpected_keys:
        rank_zero_warn(f"Found keys that are not in the model state dict but in the checkpoint: {keys.unexpected_keys}")


# Keys that param groups carry beside the optimizer's own options (added by schedulers, or the parameter list).
_NOT_OPTIONS = frozenset({"params", "initial_lr", "param_names"})


def check_optimizer_state(optimizer: Any, state: Any, index: int, path: Any) -> None:
    """Refuse an optimizer state saved from another optimizer class before it is loaded (torch would load Adam's
    param groups into SGD, and the first step would fail with `KeyError: 'momentum'`).

    A state counts as another class's when its param groups both lack options the current optimizer has and carry
    options it does not know; options added by a newer torch version alone (filled in by torch on load) pass.

    Raises:
        CheckpointError: the state is another optimizer class's; the message names both classes and the fix.
    """
    groups = state.get("param_groups") if isinstance(state, dict) else None
    if not groups or not optimizer.param_groups or not isinstance(groups[0], dict):
        return
    saved = set(groups[0]) - _NOT_OPTIONS
    current = set(optimizer.param_groups[0]) - _NOT_OPTIONS
    missing, unknown = sorted(current - saved), sorted(saved - current)
    if not missing or not unknown:
        return
    current_name = type(optimizer).__name__
    raise CheckpointError(
        f"The optimizer state {index} in checkpoint {_display(path)!r} was saved from {_guess_optimizer(saved)} (its"
        f" param groups have {unknown}), but `configure_optimizers` now returns {current_name} (which needs"
        f" {missing}): it cannot be loaded into {current_name}. Return the same optimizer class as the run that saved"
        " the checkpoint, or start the optimizer fresh from the saved weights: `Model.load_from_checkpoint(path)` and"
        " `trainer.fit(model)` without `ckpt_path`."
    )


def _guess_optimizer(options: set[str]) -> str:
    """The torch.optim classes whose constructor options best match `options` ("an optimizer" if none does)."""
    scores: dict[str, float] = {}
    for name in dir(torch.optim):
        cls = getattr(torch.optim, name)
        if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)) or cls is torch.optim.Optimizer:
            continue
        known = set(inspect.signature(cls.__init__).parameters) - {"self", "params"}
        if known:
            scores[name] = len(known & options) / len(known | options)
    best = max(scores.values(), default=0.0)
    if best < 0.5:
        return "another optimizer class"
    return " or ".join(sorted(name for name, score in scores.items() if score == best))
