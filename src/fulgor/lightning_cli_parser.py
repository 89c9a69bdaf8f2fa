"""LightningCLI's parsing side: `LightningArgumentParser` (jsonargparse's parser with the Lightning class, optimizer
and scheduler groups, `PL_`-prefixed environment variables), `SaveConfigCallback` (config.yaml in the log folder) and
`ModuleInstantiator` (the parsed config saved as hparams with `_instantiator`, for `load_from_checkpoint`)."""

from __future__ import annotations

import importlib.util
import inspect
import os
from typing import TYPE_CHECKING, Any, TypeVar

from torch.optim import Optimizer

from fulgor import fs
from fulgor.callbacks.callback import Callback
from fulgor.cli_classes import LRSchedulerTypeTuple
from fulgor.datamodule import LightningDataModule
from fulgor.errors import MisconfigurationException
from fulgor.hparams import given_hyperparameters
from fulgor.module import LightningModule, is_overridden
from fulgor.rank import rank_zero_warn
from fulgor.trainer.trainer import Trainer

if TYPE_CHECKING:
    from jsonargparse import ArgumentParser
else:
    try:  # optional third-party package: without it the names import, and building a parser says what to install
        from jsonargparse import ArgumentParser
    except ImportError:  # pragma: no cover - exercised only without the cli extra
        ArgumentParser = object
_HAVE_JSONARGPARSE = importlib.util.find_spec("jsonargparse") is not None

__all__ = [
    "LightningArgumentParser",
    "ModuleInstantiator",
    "SaveConfigCallback",
    "class_from_callable",
    "module_type",
    "short_description",
]

_LIGHTNING_BASES = (Trainer, LightningModule, LightningDataModule, Callback)
# (the class or tuple of classes a group accepts, its `link_to` target or "AUTOMATIC")
GroupInfo = tuple[type | tuple[type, ...], str]


def class_from_callable(value: Any) -> Any:
    """A class whose construction calls `value` (a builder function), as jsonargparse needs a class; else `value`."""
    if callable(value) and not isinstance(value, type):
        from jsonargparse.typing import class_from_function  # optional third-party package

        return class_from_function(value)
    return value


class LightningArgumentParser(ArgumentParser):
    """jsonargparse's `ArgumentParser` with Lightning's argument groups.

    Args:
        *args: jsonargparse `ArgumentParser` arguments.
        description: shown by `--help`.
        env_prefix: prefix of the environment variables read when `default_env=True` (`PL_TRAINER__MAX_EPOCHS`,
            and `PL_FIT__...` under a subcommand).
        default_env: read defaults from the environment.
        **kwargs: jsonargparse `ArgumentParser` keyword arguments.

    Raises:
        ModuleNotFoundError: jsonargparse is not installed (`pip install 'fulgor[cli]'`).
    """

    def __init__(
        self,
        *args: Any,
        description: str = "Lightning Trainer command line tool",
        env_prefix: str = "PL",
        default_env: bool = False,
        **kwargs: Any,
    ) -> None:
        if not _HAVE_JSONARGPARSE:
            raise ModuleNotFoundError(
                "LightningCLI needs jsonargparse: `pip install 'fulgor[cli]'`"
                " (or `pip install 'jsonargparse[signatures]'`)."
            )
        super().__init__(*args, description=description, env_prefix=env_prefix, default_env=default_env, **kwargs)
        self.callback_keys: list[str] = []
        self._optimizers: dict[str, GroupInfo] = {}
        self._lr_schedulers: dict[str, GroupInfo] = {}

    def add_lightning_class_args(
        self, lightning_class: Any, nested_key: str, subclass_mode: bool = False, required: bool = True
    ) -> list[str]:
        """Add the `__init__` arguments of a Trainer, LightningModule, LightningDataModule or Callback (class or
        builder function) under `nested_key`; returns the names added.

        Args:
            lightning_class: the class, or a callable returning an instance of one.
            nested_key: the group's key, e.g. `"model"` (`--model.lr`).
            subclass_mode: accept any subclass through `class_path` / `init_args`.
            required: whether the group must be given.

        Raises:
            MisconfigurationException: `lightning_class` is none of those.
        """
        lightning_class = class_from_callable(lightning_class)
        if not (isinstance(lightning_class, type) and issubclass(lightning_class, _LIGHTNING_BASES)):
            raise MisconfigurationException(
                f"Cannot add arguments from: {lightning_class}. You should provide either a callable or a subclass of:"
                " Trainer, LightningModule, LightningDataModule, or Callback."
            )
        if issubclass(lightning_class, Callback):
            self.callback_keys.append(nested_key)
        if subclass_mode:
            # jsonargparse returns None here (a single subclass-typed argument); kept as Lightning returns it
            return self.add_subclass_arguments(  # type: ignore[no-any-return]
                lightning_class, nested_key, fail_untyped=False, required=required
            )
        # the Trainer is built by the CLI itself, after it added the extra callbacks
        instantiate = not issubclass(lightning_class, Trainer)
        added = self.add_class_arguments(
            lightning_class, nested_key, fail_untyped=False, instantiate=instantiate, sub_configs=True
        )
        return list(added)

    def add_optimizer_args(
        self,
        optimizer_class: type[Optimizer] | tuple[type[Optimizer], ...] = (Optimizer,),
        nested_key: str = "optimizer",
        link_to: str = "AUTOMATIC",
    ) -> None:
        """Add an optimizer group: one class's arguments, or (a tuple) any subclass through `class_path`.

        Args:
            optimizer_class: an Optimizer subclass, or a tuple of them to accept their subclasses.
            nested_key: the group's key.
            link_to: a parser key that receives the group's value, or `"AUTOMATIC"` (the CLI builds the model's
                `configure_optimizers` from it).
        """
        self._check_classes(optimizer_class, (Optimizer,), "optimizer_class")
        self._add_group(optimizer_class, nested_key, skip="params")
        self._optimizers[nested_key] = (optimizer_class, link_to)

    def add_lr_scheduler_args(
        self,
        lr_scheduler_class: type | tuple[type, ...] = LRSchedulerTypeTuple,
        nested_key: str = "lr_scheduler",
        link_to: str = "AUTOMATIC",
    ) -> None:
        """Add a learning-rate scheduler group, as `add_optimizer_args` does for optimizers.

        Args:
            lr_scheduler_class: an LRScheduler / ReduceLROnPlateau subclass, or a tuple of them.
            nested_key: the group's key.
            link_to: a parser key that receives the group's value, or `"AUTOMATIC"`.
        """
        self._check_classes(lr_scheduler_class, LRSchedulerTypeTuple, "lr_scheduler_class")
        self._add_group(lr_scheduler_class, nested_key, skip="optimizer")
        self._lr_schedulers[nested_key] = (lr_scheduler_class, link_to)

    @staticmethod
    def _check_classes(given: type | tuple[type, ...], bases: tuple[type, ...], name: str) -> None:
        classes = given if isinstance(given, tuple) else (given,)
        wrong = [c for c in classes if not (isinstance(c, type) and issubclass(c, bases))]
        if wrong:
            names = ", ".join(b.__name__ for b in bases)
            raise ValueError(f"`{name}` must be a subclass of {names} (or a tuple of them), got {wrong}.")

    def _add_group(self, classes: type | tuple[type, ...], nested_key: str, skip: str) -> None:
        kwargs: dict[str, Any] = {"instantiate": False, "fail_untyped": False, "skip": {skip}}
        if isinstance(classes, tuple):
            self.add_subclass_arguments(classes, nested_key, **kwargs)
        else:
            self.add_class_arguments(classes, nested_key, sub_configs=True, **kwargs)


class SaveConfigCallback(Callback):
    """Writes the parsed configuration to `<trainer.log_dir>/<config_filename>` at the first setup (rank zero).

    Args:
        parser: the parser that produced `config`.
        config: the parsed configuration.
        config_filename: file name inside the log directory.
        overwrite: replace an existing file instead of refusing to run.
        multifile: keep the structure of several config files (jsonargparse's `multifile`).
        save_to_log_dir: write into `trainer.log_dir`; False leaves saving to an overridden `save_config`.

    Raises:
        ValueError: `save_to_log_dir=False` without an overridden `save_config`.
    """

    def __init__(
        self,
        parser: LightningArgumentParser,
        config: Any,
        config_filename: str = "config.yaml",
        overwrite: bool = False,
        multifile: bool = False,
        save_to_log_dir: bool = True,
    ) -> None:
        self.parser = parser
        self.config = config
        self.config_filename = config_filename
        self.overwrite = overwrite
        self.multifile = multifile
        self.save_to_log_dir = save_to_log_dir
        self.already_saved = False
        if not save_to_log_dir and not is_overridden("save_config", self, SaveConfigCallback):
            raise ValueError(
                "`save_to_log_dir=False` only makes sense when subclassing SaveConfigCallback to implement"
                " `save_config` and it is desired to disable the standard behavior of saving to log_dir."
            )

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if self.already_saved:
            return
        if self.save_to_log_dir:
            self._write(trainer)
        if trainer.is_global_zero:
            self.save_config(trainer, pl_module, stage)
            self.already_saved = True
        # every rank agrees, so that a later setup() is skipped everywhere
        self.already_saved = trainer.strategy.broadcast(self.already_saved)

    def _write(self, trainer: Any) -> None:
        log_dir = trainer.log_dir
        config_path = os.path.join(log_dir, self.config_filename)
        if not self.overwrite:
            exists = fs.exists(config_path) and not fs.isdir(config_path) if trainer.is_global_zero else False
            if trainer.strategy.broadcast(exists):
                raise RuntimeError(
                    f"{type(self).__name__} expected {config_path} to NOT exist. Aborting to avoid overwriting"
                    " results of a previous run. You can delete the previous config file,"
                    " set `LightningCLI(save_config_callback=None)` to disable config saving,"
                    ' or set `LightningCLI(save_config_kwargs={"overwrite": True})` to overwrite the config file.'
                )
        if trainer.is_global_zero:
            fs.makedirs(log_dir, exist_ok=True)
            self.parser.save(
                self.config, config_path, skip_none=False, overwrite=self.overwrite, multifile=self.multifile
            )

    def save_config(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Override to save the config somewhere else too (e.g. to an experiment tracker); rank zero only.

        Example:
            `trainer.logger.log_hyperparams({"config": self.parser.dump(self.config, skip_none=False)})`
        """


# What `load_from_checkpoint` calls to rebuild a CLI-made module; the Lightning path, so that checkpoints load in both.
INSTANTIATOR_PATH = "lightning.pytorch.cli.instantiate_module"
M = TypeVar("M")


class ModuleInstantiator:
    """jsonargparse instantiator of the CLI's model / datamodule: builds the object while `save_hyperparameters`
    records the parsed config (with `_class_path` in subclass mode) and `_instantiator`, for `load_from_checkpoint`.

    Args:
        cli: the LightningCLI whose config is recorded.
        key: `"model"` or `"data"`.
    """

    def __init__(self, cli: Any, key: str) -> None:
        self.cli = cli
        self.key = key

    def __call__(
        self, class_type: type[M], *args: Any, applied_instantiation_links: dict[str, Any], **kwargs: Any
    ) -> M:
        self.cli._dump_config()
        hparams = dict(self.cli.config_dump.get(self.key, {}))
        if "class_path" in hparams:
            # stored flat, whatever the subclass mode: the class in `_class_path`, its arguments beside it
            hparams = {
                "_class_path": hparams["class_path"],
                **(hparams.get("init_args") or {}),
                **(hparams.get("dict_kwargs") or {}),
            }
        prefix = f"{self.key}."
        for target, value in applied_instantiation_links.items():
            if target.startswith(prefix):
                _set_nested(hparams, target[len(prefix) :].removeprefix("init_args."), value)
        with given_hyperparameters(hparams, INSTANTIATOR_PATH):
            return class_type(*args, **kwargs)


def _set_nested(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        data = data[key]
    data[last] = value


def short_description(component: object) -> str | None:
    """The first sentence of `component`'s docstring (the subcommand help), or None."""
    doc = inspect.getdoc(component)
    if not doc:
        return None
    try:
        import docstring_parser  # jsonargparse's [signatures] dependency
    except ImportError:
        return doc.strip().split("\n\n")[0].replace("\n", " ")
    try:
        return docstring_parser.parse(doc).short_description
    except (ValueError, docstring_parser.ParseError) as err:
        rank_zero_warn(f"Failed parsing docstring for {component}: {err}")
        return None


def module_type(value: Any) -> Any:
    """The class a builder function returns (its return annotation), or the class itself."""
    if callable(value) and not isinstance(value, type):
        return inspect.signature(value).return_annotation
    return value
