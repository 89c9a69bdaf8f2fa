"""Lightning 1.x's argparse helpers (`add_argparse_args`, `from_argparse_args`, `parse_argparser`, ...) with 1.9.5's
exact flag types, as plain functions taking the class. Flags come from the class's own signature and docstring;
for the Trainer, the 1.x flags 2.0 removed are added too so that 1.x command lines still parse."""

from __future__ import annotations

import ast
import inspect
import os
import typing
from argparse import SUPPRESS, ArgumentParser, Namespace, _ArgumentGroup
from collections.abc import Callable
from typing import Any

__all__ = [
    "add_argparse_args",
    "default_attributes",
    "from_argparse_args",
    "get_init_arguments_and_types",
    "match_env_arguments",
    "parse_argparser",
    "parse_args_from_docstring",
    "parse_env_variables",
    "str_to_bool",
    "str_to_bool_or_int",
    "str_to_bool_or_str",
]

_ALLOWED = (str, int, float, bool)  # 1.9.5's order: the first allowed type of an annotation wins
_IGNORED = ("self", "args", "kwargs")
_TRUE = ("y", "yes", "t", "true", "on", "1")
_FALSE = ("n", "no", "f", "false", "off", "0")


# ---------------------------------------------------------------------------------------------------------- converters
def str_to_bool_or_str(val: str) -> str | bool:
    """`val` as a bool when it is a truth string (y/yes/t/true/on/1, n/no/f/false/off/0, any case), else unchanged."""
    lower = val.lower()
    if lower in _TRUE:
        return True
    if lower in _FALSE:
        return False
    return val


def str_to_bool(val: str) -> bool:
    """`val` as a bool; raises `ValueError("invalid truth value ...")` for anything but a truth string."""
    value = str_to_bool_or_str(val)
    if isinstance(value, bool):
        return value
    raise ValueError(f"invalid truth value {value}")


def str_to_bool_or_int(val: str) -> bool | int | str:
    """`val` as a bool if it is a truth string, else as an int if it is one, else unchanged."""
    value = str_to_bool_or_str(val)
    if isinstance(value, bool):
        return value
    try:
        return int(value)
    except ValueError:
        return value


def int_or_float_type(x: int | float | str) -> int | float:
    """1.9.5's `_int_or_float_type`: a float when the text has a ".", else an int (so "1" is one batch)."""
    return float(x) if "." in str(x) else int(x)


def gpus_allowed_type(x: str) -> str | int:
    """1.9.5's `_gpus_allowed_type`: "0,1" stays a string of ids, anything else is a count."""
    return x if "," in x else int(x)


def precision_allowed_type(x: str) -> int | str:
    """1.9.5's `_precision_allowed_type`: 16 and 32 become ints, "bf16" or "16-mixed" stay strings."""
    try:
        return int(x)
    except ValueError:
        return x


def int_float_or_str(x: str) -> int | float | str:
    """`val_check_interval`: a number (int or float as 1.9.5 parsed it) or, new in 2.x, a time such as "00:00:10:00"."""
    try:
        return int_or_float_type(x)
    except ValueError:
        return x


for _fn in (int_or_float_type, gpus_allowed_type, precision_allowed_type, int_float_or_str):
    # argparse names the type in "invalid <name> value" errors; 1.9.5's helpers had a leading underscore.
    _fn.__name__ = f"_{_fn.__name__}"

# Flags whose argparse type is fixed by name, as in 1.9.5 (`val_check_interval` gains time strings in 2.x).
_NAMED_TYPES: dict[str, Callable[[str], Any]] = {
    "gpus": gpus_allowed_type,
    "tpu_cores": gpus_allowed_type,
    "track_grad_norm": float,
    "precision": precision_allowed_type,
    "val_check_interval": int_float_or_str,
}
# fulgor annotates these `Any` (they take objects too); 1.9.5's annotation made them plain string flags.
_STRING_FLAGS = frozenset({"profiler", "plugins"})


# ---------------------------------------------------------------------------------------------------------- signature
def get_init_arguments_and_types(cls: type[Any]) -> list[tuple[str, tuple[Any, ...], Any]]:
    """`(name, types, default)` of every `cls.__init__` parameter, types taken from the (resolved) annotation.

    Example:
        >>> from fulgor import Trainer
        >>> dict((n, t) for n, t, _ in get_init_arguments_and_types(Trainer))["max_epochs"]
        (<class 'int'>, <class 'NoneType'>)
    """
    params = inspect.signature(cls).parameters
    hints = _type_hints(cls)
    result = []
    for name, param in params.items():
        annotation = hints.get(name, param.annotation)
        result.append((name, _types_of(annotation), param.default))
    return result


def _type_hints(cls: type[Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls.__init__)
    except Exception:  # an annotation that does not resolve: fall back to the raw (string) annotations
        return {}


def _types_of(annotation: Any) -> tuple[Any, ...]:
    """1.9.5's rule: the members of a union (a Literal's value types), else the annotation itself."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return tuple(type(v) for v in typing.get_args(annotation))
    args = typing.get_args(annotation)
    if not args or origin not in (typing.Union, _UnionType):
        return (annotation,)
    types: list[Any] = []
    for arg in args:
        if typing.get_origin(arg) is typing.Literal:
            types.extend(type(v) for v in typing.get_args(arg))
        else:
            types.append(arg)
    return tuple(types)


_UnionType: Any = type(int | str)


def default_attributes(cls: type[Any]) -> dict[str, Any]:
    """`{name: signature default}` of `cls.__init__` (1.x `Trainer.default_attributes()`)."""
    return {name: param.default for name, param in inspect.signature(cls).parameters.items() if name not in _IGNORED}


def parse_args_from_docstring(docstring: str) -> dict[str, str]:
    """`{argument: help text}` from the Google-style `Args:` block of a docstring (continuation lines joined)."""
    block_indent: int | None = None
    current = ""
    parsed: dict[str, str] = {}
    for line in docstring.split("\n"):
        stripped = line.lstrip()
        if not stripped:
            continue
        indent = len(line) - len(stripped)
        if stripped.startswith(("Args:", "Arguments:", "Parameters:")):
            block_indent = indent + 4
        elif block_indent is None:
            continue
        elif indent < block_indent:
            break
        elif indent == block_indent and ":" in stripped:
            current, text = stripped.split(":", maxsplit=1)
            current = current.split(" (", 1)[0].strip()  # "name (type): text" is Google style too
            parsed[current] = text.lstrip()
        elif current:
            parsed[current] += f" {stripped}"
    return parsed


# 1.9.5's Trainer flags in its order: name -> (its annotation's str/int/float/bool types, its default). The parsed
# defaults are 1.9.5's (`devices=None` where 2.x says "auto"); `from_argparse_args` leaves a value at its 1.9.5
# default out, so the 2.x default (which means the same) applies.
_INT_FLOAT = (int, float)
TRAINER_1_9_5: dict[str, tuple[tuple[type, ...], Any]] = {
    "logger": ((bool,), True),
    "enable_checkpointing": ((bool,), True),
    "default_root_dir": ((str,), None),
    "gradient_clip_val": (_INT_FLOAT, None),
    "gradient_clip_algorithm": ((str,), None),
    "num_nodes": ((int,), 1),
    "num_processes": ((int,), None),
    "devices": ((str, int), None),
    "gpus": ((str, int), None),
    "auto_select_gpus": ((bool,), None),
    "tpu_cores": ((str, int), None),
    "ipus": ((int,), None),
    "enable_progress_bar": ((bool,), True),
    "overfit_batches": (_INT_FLOAT, 0.0),
    "track_grad_norm": ((int, float, str), -1),
    "check_val_every_n_epoch": ((int,), 1),
    "fast_dev_run": ((int, bool), False),
    "accumulate_grad_batches": ((int,), None),
    "max_epochs": ((int,), None),
    "min_epochs": ((int,), None),
    "max_steps": ((int,), -1),
    "min_steps": ((int,), None),
    "max_time": ((str,), None),
    "limit_train_batches": (_INT_FLOAT, None),
    "limit_val_batches": (_INT_FLOAT, None),
    "limit_test_batches": (_INT_FLOAT, None),
    "limit_predict_batches": (_INT_FLOAT, None),
    "val_check_interval": (_INT_FLOAT, None),
    "log_every_n_steps": ((int,), 50),
    "accelerator": ((str,), None),
    "strategy": ((str,), None),
    "sync_batchnorm": ((bool,), False),
    "precision": ((str, int), 32),
    "enable_model_summary": ((bool,), True),
    "num_sanity_val_steps": ((int,), 2),
    "resume_from_checkpoint": ((str,), None),
    "profiler": ((str,), None),
    "benchmark": ((bool,), None),
    "reload_dataloaders_every_n_epochs": ((int,), 0),
    "auto_lr_find": ((bool, str), False),
    "replace_sampler_ddp": ((bool,), True),
    "detect_anomaly": ((bool,), False),
    "auto_scale_batch_size": ((str, bool), False),
    "plugins": ((str,), None),
    "amp_backend": ((str,), None),
    "amp_level": ((str,), None),
    "move_metrics_to_cpu": ((bool,), False),
    "multiple_trainloader_mode": ((str,), "max_size_cycle"),
    "inference_mode": ((bool,), True),
}


# ---------------------------------------------------------------------------------------------------------- parser
def add_argparse_args(
    cls: type[Any],
    parent_parser: ArgumentParser,
    *,
    use_argument_group: bool = True,
    removed: dict[str, tuple[tuple[Any, ...], Any, str]] | None = None,
) -> ArgumentParser:
    """Add a `--<name>` flag for every `cls.__init__` parameter of type str/int/float/bool (1.9.5's rules).

    Args:
        cls: the class whose constructor arguments become flags (`Trainer`, a `LightningDataModule`, ...).
        parent_parser: the parser to extend.
        use_argument_group: add the flags to a group titled `pl.<Name>` of `parent_parser` and return it; if
            False, return a new parser with `parent_parser` as parent.
        removed: flags `cls` no longer takes but 1.x command lines still pass (`{name: (types, default, help)}`; the
            Trainer's removed 1.x arguments), added so that those command lines parse.

    Returns:
        The parser to call `parse_args()` on.

    Raises:
        RuntimeError: `parent_parser` is an argument group rather than a parser.
    """
    if isinstance(parent_parser, _ArgumentGroup):
        raise RuntimeError("Please only pass an `ArgumentParser` instance.")
    target: ArgumentParser | _ArgumentGroup
    if use_argument_group:
        target = parent_parser.add_argument_group(_group_title(cls))
        result = parent_parser
    else:
        result = target = ArgumentParser(parents=[parent_parser], add_help=False)
    docstring = inspect.getdoc(cls.__init__) or inspect.getdoc(cls) or ""
    helps = parse_args_from_docstring(docstring)
    signature = [(name, types, default) for name, types, default in get_init_arguments_and_types(cls)]
    if removed is None:
        for name, types, default in signature:
            if name not in _IGNORED:
                _add_flag(target, name, types, default, helps.get(name))
        return result
    # The Trainer: 1.9.5's flags, in its order and with its defaults, so a 1.x command line parses to exactly the
    # Namespace it parsed to in 1.9.5; the arguments 2.x added are accepted but appear only when given.
    for name, (types, default) in TRAINER_1_9_5.items():
        _add_flag(target, name, types, default, helps.get(name) or _removed_help(removed, name))
    for name, types, _default in signature:
        if name not in _IGNORED and name not in TRAINER_1_9_5:
            _add_flag(target, name, types, SUPPRESS, helps.get(name))
    return result


def _removed_help(removed: dict[str, tuple[tuple[Any, ...], Any, str]], name: str) -> str | None:
    spec = removed.get(name)
    return spec[2] if spec is not None else None


def _add_flag(
    parser: ArgumentParser | _ArgumentGroup, name: str, types: tuple[Any, ...], default: Any, text: str | None
) -> None:
    allowed: list[Callable[[str], Any]] = [t for t in _ALLOWED if t in types]
    if name in _STRING_FLAGS and not allowed:
        allowed = [str]
    if not allowed:
        return  # 1.9.5 silently skipped flags with no str/int/float/bool type (e.g. `callbacks`)
    extra: dict[str, Any] = {}
    convert = _flag_type(name, allowed)
    if bool in allowed:
        extra = {"nargs": "?", "const": True}
    parser.add_argument(
        f"--{name}",
        dest=name,
        default=default,
        type=convert,
        help=text.replace("%", "%%") if text else None,
        required=default is inspect.Parameter.empty,
        **extra,
    )


def _flag_type(name: str, allowed: list[Callable[[str], Any]]) -> Callable[[str], Any]:
    if name in _NAMED_TYPES:
        return _NAMED_TYPES[name]
    if bool in allowed:
        others = [t for t in allowed if t is not bool]
        if not others:
            return str_to_bool
        if int in others:
            return str_to_bool_or_int
        if str in others:
            return str_to_bool_or_str
        return others[0]
    if set(allowed) == {int, float}:
        return int_or_float_type
    return allowed[0]


def _group_title(cls: type[Any]) -> str:
    # Lightning abbreviated its own classes as "pl.<Name>"; fulgor's are the same classes to a 1.x user.
    if cls.__module__.startswith(("fulgor.", "pytorch_lightning.")):
        return f"pl.{cls.__qualname__}"
    return f"{cls.__module__}.{cls.__qualname__}"


# ---------------------------------------------------------------------------------------------------------- parsing
def parse_argparser(cls: type[Any], arg_parser: ArgumentParser | Namespace) -> Namespace:
    """Parse `sys.argv` with `arg_parser` (or take a Namespace) and return a new Namespace in which a `None` for a
    bool flag whose default is a bool becomes `True` (1.x's rule from before `const=True`)."""
    args = arg_parser.parse_args() if isinstance(arg_parser, ArgumentParser) else arg_parser
    types_default = {name: (types, default) for name, types, default in get_init_arguments_and_types(cls)}
    if _is_trainer(cls):
        types_default.update(TRAINER_1_9_5)
    values = {}
    for key, value in vars(args).items():
        if value is None and key in types_default:
            types, default = types_default[key]
            if bool in types and isinstance(default, bool):
                value = True
        values[key] = value
    return Namespace(**values)


def from_argparse_args(
    cls: type[Any],
    /,
    args: ArgumentParser | Namespace | dict[str, Any],
    removed: dict[str, tuple[tuple[Any, ...], Any, str]] | None = None,
    **kwargs: Any,
) -> Any:
    """Build `cls` from parsed arguments: keys that are not `cls.__init__` parameters are dropped, `kwargs` win.

    Args:
        cls: the class to build (`Trainer`, a `LightningDataModule`, ...).
        args: a parser (parsed from `sys.argv` first), a Namespace, or a dict.
        removed: removed 1.x flags `cls` still translates (see `add_argparse_args`): forwarded when set.
        **kwargs: extra or overriding constructor arguments.

    Returns:
        `cls(**arguments)`.

    Example::

        parser = Trainer.add_argparse_args(ArgumentParser())
        trainer = Trainer.from_argparse_args(parser.parse_args(["--max_epochs", "3"]), logger=False)
    """
    if isinstance(args, ArgumentParser):
        args = parse_argparser(cls, args)
    params = dict(args) if isinstance(args, dict) else vars(args)
    valid = inspect.signature(cls).parameters
    chosen = {name: params[name] for name in valid if name in params and name not in _IGNORED}
    if removed is not None:
        chosen = _as_2_x(cls, chosen, {name: params[name] for name in removed if name in params})
    chosen.update(kwargs)
    return cls(**chosen)


def _as_2_x(cls: type[Any], chosen: dict[str, Any], removed: dict[str, Any]) -> dict[str, Any]:
    """The Trainer's arguments from 1.9.5-parsed values: a value at its 1.9.5 default becomes the 2.x default (which
    means the same: `devices=None` is 2.x's "auto"), still passed, so it wins over `PL_TRAINER_*` variables as an
    explicit value did in 1.9.5; a removed 1.x flag is passed (the Trainer translates it) unless at its default."""
    defaults = default_attributes(cls)
    result = {name: defaults[name] if _at_1_9_5_default(name, value) else value for name, value in chosen.items()}
    result.update({name: value for name, value in removed.items() if not _at_1_9_5_default(name, value)})
    return result


def _at_1_9_5_default(name: str, value: Any) -> bool:
    if name not in TRAINER_1_9_5:
        return False
    default = TRAINER_1_9_5[name][1]
    return value is default or (type(value) is type(default) and value == default)


def _is_trainer(cls: type[Any]) -> bool:
    """`cls` is the Trainer or a subclass (named by module: importing it here would be a cycle)."""
    return any(base.__module__ == "fulgor.trainer.trainer" and base.__name__ == "Trainer" for base in cls.__mro__)


def parse_env_variables(cls: type[Any], template: str = "PL_%(cls_name)s_%(cls_argument)s") -> Namespace:
    """The `PL_<CLASS>_<ARG>` environment variables set for `cls`'s arguments, parsed as Python literals."""
    values: dict[str, Any] = {}
    for name, _types, _default in get_init_arguments_and_types(cls):
        raw = os.environ.get(template % {"cls_name": cls.__name__.upper(), "cls_argument": name.upper()})
        if not raw:
            continue
        try:
            values[name] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            values[name] = raw
    return Namespace(**values)


def match_env_arguments(cls: type[Any]) -> Namespace:
    """1.x `Trainer.match_env_arguments()`: the `PL_TRAINER_*` values set in the environment."""
    return parse_env_variables(cls)
