"""Hyperparameters: `save_hyperparameters` (frame inspection), `AttributeDict`, `hparams.yaml` reading and writing,
and the module/datamodule merge done before hparams are sent to loggers. Plain functions, no mixin."""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import inspect
import os
import types
import warnings
from argparse import Namespace
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from enum import Enum
from typing import Any, cast

import torch
from torch import Tensor, nn

from fulgor import fs
from fulgor.rank import rank_zero_warn

__all__ = [
    "AttributeDict",
    "given_hyperparameters",
    "hparams_initial_of",
    "hparams_of",
    "load_hparams_from_yaml",
    "merge_module_and_datamodule_hparams",
    "save_hparams_to_yaml",
    "save_hyperparameters",
]

_PRIMITIVE_TYPES = (bool, int, float, str)
_ALLOWED_CONFIG_TYPES = (MutableMapping, Namespace)
# Lightning never collects `__init__` arguments with these names (historical exclusions, kept for parity).
_EXCLUDED_ARG_NAMES = frozenset({"__class__", "frame", "frame_args"})
# What LightningCLI parsed for the object being built: `save_hyperparameters` stores it instead of the `__init__`
# arguments, so that `load_from_checkpoint` can rebuild nested/injected objects through the named instantiator.
_GIVEN_HPARAMS: ContextVar[dict[str, Any] | None] = ContextVar("fulgor_given_hparams", default=None)


@contextmanager
def given_hyperparameters(hparams: Mapping[str, Any], instantiator: str) -> Iterator[None]:
    """Within this block, `save_hyperparameters()` saves `hparams` plus `_instantiator` (the import path of the
    function `load_from_checkpoint` calls as `instantiator(cls, hparams)`) instead of the `__init__` arguments."""
    token = _GIVEN_HPARAMS.set({**hparams, "_instantiator": instantiator})
    try:
        yield
    finally:
        _GIVEN_HPARAMS.reset(token)


class AttributeDict(dict):  # type: ignore[type-arg]
    """A dict whose keys are also attributes: ``hp.lr`` is ``hp["lr"]``.

    Its repr is one ``"key": value`` line per key, sorted, values aligned (as Lightning prints it).
    """

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError as e:
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{key}'") from e

    def __setattr__(self, key: str, val: Any) -> None:
        self[key] = val

    def __delattr__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        del self[key]

    def __repr__(self) -> str:
        if not self:
            return ""
        width = max(len(str(k)) for k in self) + 3
        return "\n".join(f"{_quoted_key(k):{width}s} {self[k]}" for k in sorted(self))


def _quoted_key(key: Any) -> str:
    return f'"{key}":'


# ---------------------------------------------------------------------------------------------------------------------
# save_hyperparameters


def save_hyperparameters(
    obj: Any,
    *args: Any,
    ignore: str | Iterable[str] | None = None,
    frame: types.FrameType | None = None,
    logger: bool = True,
) -> None:
    """Store the ``__init__`` arguments of ``obj`` (a LightningModule or LightningDataModule) as its hparams.

    Args:
        obj: the object being constructed; receives ``_hparams``, ``_hparams_name``, ``_hparams_initial`` and
            ``_log_hyperparams``.
        *args: nothing (save every init argument), argument names to save, or a single dict / Namespace /
            mutable mapping that becomes the hparams.
        ignore: an argument name or names to leave out (also removed from hparams a parent class saved).
        frame: the frame to start collecting from; defaults to the caller's frame.
        logger: whether the Trainer sends these hparams to its loggers.

    Raises:
        ValueError: the single object given is a primitive or an unsupported config type.
        KeyError: a name given in ``args`` is not an ``__init__`` argument.
    """
    obj._log_hyperparams = logger
    if len(args) == 1 and not args[0]:
        return  # an empty container: nothing to save (Lightning does the same)
    if frame is None:
        frame = cast(types.FrameType, cast(types.FrameType, inspect.currentframe()).f_back)

    given = _GIVEN_HPARAMS.get()
    if given is not None:
        init_args = dict(given)
    elif dataclasses.is_dataclass(obj):
        init_args = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init}
    else:
        init_args = own_init_args(obj, frame)

    ignored = _ignored_names(ignore)
    init_args = {k: v for k, v in init_args.items() if k not in ignored}
    hp = _select_hparams(obj, args, init_args)
    _set_hparams(obj, hp)
    stored = obj._hparams
    for key in ignored:
        stored.pop(key, None)
    for key, value in stored.items():
        if isinstance(value, nn.Module):
            rank_zero_warn(
                f"Attribute {key!r} is an instance of `nn.Module` and is already saved during checkpointing."
                f" It is recommended to ignore them using `self.save_hyperparameters(ignore=[{key!r}])`."
            )
    # A deep copy: later changes to `hparams` (or to the objects in it) must not reach the initial snapshot.
    obj._hparams_initial = copy.deepcopy(stored)


def own_init_args(obj: Any, frame: types.FrameType | None) -> dict[str, Any]:
    """Arguments of the ``__init__`` calls of ``obj`` running at ``frame`` and outward (parent first, child wins).

    Frames before the first ``__init__`` of ``obj`` are skipped (``save_hyperparameters`` may be called from a helper).
    The walk goes on through the ``__init__`` calls right around them whose ``self`` also saves hyperparameters: a
    module built inside another Lightning module's ``__init__`` also collects that module's arguments, as in Lightning
    (an enclosing object of any other class ends the walk).
    """
    per_frame: list[dict[str, Any]] = []
    while frame is not None and frame.f_back is not None:
        found = _init_frame_args(frame)
        if found is not None and (found[0] is obj or (per_frame and _saves_hyperparameters(found[0]))):
            per_frame.append(found[1])
        elif per_frame:
            break
        frame = frame.f_back
    merged: dict[str, Any] = {}
    for args in per_frame:
        merged.update(args)
    return merged


def _saves_hyperparameters(value: Any) -> bool:
    # HyperparametersMixin and its subclasses (LightningModule, LightningDataModule); hparams cannot import them.
    return callable(getattr(type(value), "save_hyperparameters", None))


def _init_frame_args(frame: types.FrameType) -> tuple[Any, dict[str, Any]] | None:
    """``(self, named arguments plus **kwargs contents)`` if ``frame`` runs an ``__init__``, else None."""
    code = frame.f_code
    if code.co_name != "__init__" or code.co_argcount == 0:
        return None
    local_vars = frame.f_locals
    names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
    if names[0] not in local_vars:
        return None
    n_named = len(names)
    var_args = code.co_varnames[n_named] if code.co_flags & inspect.CO_VARARGS else None
    var_kwargs = None
    if code.co_flags & inspect.CO_VARKEYWORDS:
        var_kwargs = code.co_varnames[n_named + (1 if var_args else 0)]
    collected = {name: local_vars[name] for name in names[1:] if name in local_vars}
    if var_kwargs is not None:
        collected.update(local_vars.get(var_kwargs, {}))
    excluded = _EXCLUDED_ARG_NAMES | {names[0], var_args, var_kwargs}
    return local_vars[names[0]], {k: v for k, v in collected.items() if k not in excluded}


def _ignored_names(ignore: str | Iterable[str] | None) -> set[str]:
    if ignore is None:
        return set()
    if isinstance(ignore, str):
        return {ignore}
    return {name for name in ignore if isinstance(name, str)}


def _select_hparams(obj: Any, args: tuple[Any, ...], init_args: dict[str, Any]) -> Any:
    """Pick what becomes the hparams from ``args`` and set ``obj._hparams_name``."""
    if not args:
        obj._hparams_name = "kwargs" if init_args else None
        return init_args
    objects = [arg for arg in args if not isinstance(arg, str)]
    if len(objects) == 1:
        # A single config object: name it after the init argument that holds it (e.g. "cfg"), as Lightning does.
        hp = objects[0]
        obj._hparams_name = next((k for k, v in init_args.items() if _safe_equal(v, hp)), None)
        return hp
    missing = [arg for arg in args if isinstance(arg, str) and arg not in init_args]
    if missing:
        raise KeyError(
            f"save_hyperparameters({', '.join(map(repr, missing))}): not an argument of"
            f" `{type(obj).__name__}.__init__`. Available names: {sorted(init_args)}."
        )
    obj._hparams_name = "kwargs"
    return {arg: init_args[arg] for arg in args if isinstance(arg, str)}


def _safe_equal(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return False  # elementwise `==` has no truth value; a tensor cannot be the config object anyway
    try:
        return bool(a == b)
    except Exception:
        return False


def _set_hparams(obj: Any, hp: Any) -> None:
    """Merge ``hp`` into ``obj``'s hparams (dicts accumulate across calls; other mappings replace)."""
    if isinstance(hp, Namespace):
        hp = vars(hp)
    if isinstance(hp, dict):
        hp = AttributeDict(hp)
    elif isinstance(hp, _PRIMITIVE_TYPES):
        raise ValueError(f"Primitives {_PRIMITIVE_TYPES} are not allowed.")
    elif not isinstance(hp, _ALLOWED_CONFIG_TYPES):
        raise ValueError(f"Unsupported config type of {type(hp)}.")
    current = hparams_of(obj)
    if isinstance(hp, dict) and isinstance(current, dict):
        current.update(hp)
    else:
        obj._hparams = hp


def hparams_of(obj: Any) -> AttributeDict:
    """``obj.hparams``: the mutable hyperparameters (an empty AttributeDict, created on first access, if none).

    A non-dict mutable mapping (e.g. an OmegaConf ``DictConfig``) passed as the single argument of
    ``save_hyperparameters`` is returned as stored.
    """
    hp = obj.__dict__.get("_hparams")
    if hp is None:
        hp = AttributeDict()
        obj.__dict__["_hparams"] = hp
    return cast(AttributeDict, hp)


def hparams_initial_of(obj: Any) -> AttributeDict:
    """``obj.hparams_initial``: a deep copy of the hparams as first saved (empty if never saved)."""
    initial = obj.__dict__.get("_hparams_initial")
    if initial is None:
        return AttributeDict()
    return cast(AttributeDict, copy.deepcopy(initial))


# ---------------------------------------------------------------------------------------------------------------------
# hparams.yaml


def save_hparams_to_yaml(
    config_yaml: str | os.PathLike[str], hparams: Mapping[str, Any] | Namespace, use_omegaconf: bool = True
) -> None:
    """Write ``hparams`` to ``config_yaml`` as a YAML mapping, as Lightning writes it.

    When omegaconf is installed (and ``use_omegaconf``), the mapping is written by ``OmegaConf.save``, keys in
    insertion order, the OmegaConf containers in it resolved; a value OmegaConf cannot hold sends it to the plain
    writer. The plain writer sorts the keys, writes Enum values by name and skips values YAML cannot represent,
    with a warning.

    Raises:
        RuntimeError: the folder of ``config_yaml`` does not exist.
        TypeError: ``hparams`` is not a mapping or Namespace.
    """
    folder = os.path.dirname(config_yaml)
    if not fs.isdir(folder):
        raise RuntimeError(f"Missing folder: {folder}.")
    if isinstance(hparams, Namespace):
        hparams = vars(hparams)
    elif isinstance(hparams, AttributeDict):
        hparams = dict(hparams)
    if use_omegaconf and _omegaconf_save(config_yaml, hparams):
        return
    if not isinstance(hparams, Mapping):
        raise TypeError("hparams must be dictionary")
    if not hparams:  # what yaml.dump({}) writes; most runs have no hyperparameters and need not import PyYAML
        with fs.open(config_yaml, "w", newline="") as fp:
            fp.write("{}\n")
        return
    import yaml  # here, not at the top: PyYAML takes 20-40 ms to import and is needed once per run at most

    allowed: dict[str, Any] = {}
    for key, value in hparams.items():
        value = _to_plain(value)
        try:
            yaml.dump(value)
        except (TypeError, ValueError):
            warnings.warn(
                f"Skipping '{key}' parameter because it is not possible to safely dump to YAML.", stacklevel=2
            )
        else:
            allowed[key] = value
    with fs.open(config_yaml, "w", newline="") as fp:
        yaml.dump(allowed, fp)  # key-sorted, as Lightning's writer without omegaconf


def _omegaconf_save(config_yaml: str | os.PathLike[str], hparams: Any) -> bool:
    """Write ``hparams`` with ``OmegaConf.save``; False when omegaconf is missing or cannot hold a value."""
    if importlib.util.find_spec("omegaconf") is None:
        return False
    from omegaconf import DictConfig, OmegaConf  # optional third-party package
    from omegaconf.errors import UnsupportedValueType, ValidationError

    try:  # a copy: resolving interpolations must not change the user's own config
        copied = copy.deepcopy(hparams)
    except (TypeError, copy.Error):
        # an uncopyable value (a lock, a file): the plain writer skips it with a warning (Lightning raises here)
        return False
    if isinstance(copied, dict):
        copied = {
            k: OmegaConf.to_container(v, resolve=True) if isinstance(v, DictConfig) else v for k, v in copied.items()
        }
    elif isinstance(copied, DictConfig):
        copied = OmegaConf.to_container(copied, resolve=True)
    with fs.open(config_yaml, "w", encoding="utf-8") as fp:
        try:
            OmegaConf.save(copied, fp)
        except (UnsupportedValueType, ValidationError):
            return False
    return True


def _to_plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.name
    if type(value).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf  # only reachable when the user already uses omegaconf

        return OmegaConf.to_container(value, resolve=True)
    if isinstance(value, AttributeDict):
        return dict(value)
    return value


def load_hparams_from_yaml(config_yaml: str | os.PathLike[str], use_omegaconf: bool = True) -> dict[str, Any]:
    """Read an ``hparams.yaml`` file; a missing file gives ``{}`` and a ``RuntimeWarning``.

    With omegaconf installed (and ``use_omegaconf``), the result is an OmegaConf ``DictConfig`` when it can hold it.
    """
    import yaml

    if not fs.exists(config_yaml):
        rank_zero_warn(f"Missing Tags: {config_yaml}.", category=RuntimeWarning)
        return {}
    with fs.open(config_yaml, "r") as fp:
        loaded = yaml.full_load(fp)
    if use_omegaconf and importlib.util.find_spec("omegaconf") is not None:
        from omegaconf import OmegaConf  # optional third-party package
        from omegaconf.errors import UnsupportedValueType, ValidationError

        try:
            return cast(dict[str, Any], OmegaConf.create(loaded))
        except (UnsupportedValueType, ValidationError):
            pass
    return cast(dict[str, Any], loaded)


# ---------------------------------------------------------------------------------------------------------------------
# module + datamodule


def merge_module_and_datamodule_hparams(module: Any, datamodule: Any | None) -> dict[str, Any] | None:
    """The hparams the Trainer sends to every logger at run start, or None when nothing is to be logged.

    Only objects whose ``save_hyperparameters(logger=True)`` ran take part; the datamodule's values come last.

    Raises:
        RuntimeError: a key is in both with different values (Lightning's message).
    """
    module_logs = bool(getattr(module, "_log_hyperparams", False))
    dm_logs = datamodule is not None and bool(getattr(datamodule, "_log_hyperparams", False))
    if module_logs and dm_logs:
        module_hp, dm_hp = hparams_initial_of(module), hparams_initial_of(datamodule)
        conflicts = [k for k in module_hp if k in dm_hp and k != "_class_path" and _differs(module_hp[k], dm_hp[k])]
        if conflicts:
            raise RuntimeError(
                f"Error while merging hparams: the keys {conflicts} are present "
                "in both the LightningModule's and LightningDataModule's hparams "
                "but have different values."
            )
        merged: dict[str, Any] = {**module_hp, **dm_hp}
    elif module_logs:
        merged = hparams_initial_of(module)
    elif dm_logs:
        merged = hparams_initial_of(datamodule)
    else:
        return None
    # LightningCLI's bookkeeping key is never logged.
    return {k: v for k, v in merged.items() if k != "_class_path"}


def _differs(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return True
    if isinstance(a, Tensor):
        # Lightning compares tensor ids after deep-copying both sides, so a shared tensor always "conflicts";
        # comparing contents is what was meant.
        return a.shape != b.shape or a.dtype != b.dtype or not torch.equal(a, b)
    return bool(a != b)
