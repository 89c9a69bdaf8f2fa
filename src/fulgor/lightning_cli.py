"""`LightningCLI`: Lightning's YAML/flag command line (fit/validate/test/predict subcommands, `--config`,
`--print_config`, `--trainer.*`, `--model.*`, `--data.*`, optimizer and scheduler groups, `PL_`-prefixed environment
variables) on jsonargparse, and the `_instantiator` hparams that let `load_from_checkpoint` rebuild CLI-made models."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from functools import partial, update_wrapper
from pathlib import Path
from types import MethodType
from typing import Any

import torch
from torch.optim import Optimizer

from fulgor import callbacks as _callbacks
from fulgor import loggers as _loggers
from fulgor.callbacks.callback import Callback
from fulgor.cli_classes import (
    LRSchedulerCallable,
    LRSchedulerType,
    LRSchedulerTypeTuple,
    LRSchedulerTypeUnion,
    OptimizerCallable,
    ReduceLROnPlateau,
    instantiate_class,
    instantiate_module,
)
from fulgor.datamodule import LightningDataModule
from fulgor.errors import MisconfigurationException
from fulgor.lightning_cli_parser import (
    LightningArgumentParser,
    ModuleInstantiator,
    SaveConfigCallback,
    class_from_callable,
    module_type,
    short_description,
)
from fulgor.lightning_paths import LIGHTNING_VERSION
from fulgor.module import LightningModule, is_overridden
from fulgor.rank import rank_zero_warn
from fulgor.seed import seed_everything
from fulgor.trainer.trainer import Trainer

__all__ = [
    "ArgsType",
    "LRSchedulerCallable",
    "LRSchedulerType",
    "LRSchedulerTypeTuple",
    "LRSchedulerTypeUnion",
    "LightningArgumentParser",
    "LightningCLI",
    "OptimizerCallable",
    "ReduceLROnPlateau",
    "SaveConfigCallback",
    "instantiate_class",
    "instantiate_module",
]

ArgsType = list[str] | dict[str, Any] | Any | None  # Any: a jsonargparse Namespace
_AUTOMATIC = "AUTOMATIC"


def _load_lazy_classes() -> None:
    """Import every built-in callback and logger (fulgor loads them on first use), so that jsonargparse finds them
    by short name: `--trainer.callbacks=DeviceStatsMonitor`, `--trainer.logger=WandbLogger`."""
    for package in (_callbacks, _loggers):
        for name in package.__all__:
            try:
                getattr(package, name)
            except (ImportError, AttributeError):  # a callback whose optional package is missing stays unavailable
                continue


_load_lazy_classes()


class LightningCLI:
    """Lightning's command line: `python main.py fit --config cfg.yaml --trainer.max_epochs 3 --model.lr 0.1`.

    Args:
        model_class: the LightningModule class or builder (or base class with `subclass_mode_model=True`); None:
            any LightningModule given as `--model=Name` / `--model.class_path`.
        datamodule_class: the LightningDataModule class or builder, or None (then `--data` is optional).
        save_config_callback: the callback class that saves the config next to the logs (None: do not save).
        save_config_kwargs: its keyword arguments (`overwrite`, `config_filename`, `multifile`).
        trainer_class: the Trainer class or builder.
        trainer_defaults: defaults for `--trainer.*`; its `callbacks` are always added and not configurable.
        seed_everything_default: the `--seed_everything` default (True: a random seed, False: none, int: that).
        parser_kwargs: keyword arguments for the parsers; keyed by subcommand name for one subcommand's parser.
            `{"default_env": True}` reads `PL_CONFIG`, `PL_TRAINER__MAX_EPOCHS`, `PL_FIT__CONFIG`, ...
        parser_class: the parser class.
        subclass_mode_model: accept any subclass of `model_class` through `class_path`/`init_args`.
        subclass_mode_data: the same for `datamodule_class`.
        args: the arguments to parse instead of `sys.argv[1:]` (a list, or a dict / Namespace as a parsed config).
        run: True: subcommands, and the chosen one is run; False: no subcommands, only instantiate.
        auto_configure_optimizers: add `--optimizer` / `--lr_scheduler` and build `configure_optimizers` from them.
        load_from_checkpoint_support: save the parsed hyperparameters (with `_instantiator`) instead of what
            `__init__` receives, so that `load_from_checkpoint` rebuilds nested and injected objects.
    """

    def __init__(
        self,
        model_class: type[LightningModule] | Callable[..., LightningModule] | None = None,
        datamodule_class: type[LightningDataModule] | Callable[..., LightningDataModule] | None = None,
        save_config_callback: type[SaveConfigCallback] | None = SaveConfigCallback,
        save_config_kwargs: dict[str, Any] | None = None,
        trainer_class: type[Trainer] | Callable[..., Trainer] = Trainer,
        trainer_defaults: dict[str, Any] | None = None,
        seed_everything_default: bool | int = True,
        parser_kwargs: dict[str, Any] | dict[str, dict[str, Any]] | None = None,
        parser_class: type[LightningArgumentParser] = LightningArgumentParser,
        subclass_mode_model: bool = False,
        subclass_mode_data: bool = False,
        args: ArgsType = None,
        run: bool = True,
        auto_configure_optimizers: bool = True,
        load_from_checkpoint_support: bool = True,
    ) -> None:
        self.save_config_callback = save_config_callback
        self.save_config_kwargs = save_config_kwargs or {}
        self.trainer_class = trainer_class
        self.trainer_defaults = trainer_defaults or {}
        self.seed_everything_default = seed_everything_default
        self.parser_kwargs = parser_kwargs or {}
        self.parser_class = parser_class
        self.auto_configure_optimizers = auto_configure_optimizers
        self.model_class = model_class
        self._model_class = model_class or LightningModule
        self.subclass_mode_model = model_class is None or subclass_mode_model
        self.datamodule_class = datamodule_class
        self._datamodule_class = datamodule_class or LightningDataModule
        self.subclass_mode_data = datamodule_class is None or subclass_mode_data

        names = self.subcommands()
        main_kwargs = {k: v for k, v in self.parser_kwargs.items() if k not in names}
        sub_kwargs = {k: v for k, v in self.parser_kwargs.items() if k in names}
        self.setup_parser(run, main_kwargs, sub_kwargs)
        self.parse_arguments(self.parser, args)
        self._parse_ckpt_path()
        self.subcommand: str | None = self.config["subcommand"] if run else None
        self._set_seed()
        if load_from_checkpoint_support:
            self._add_instantiators()
        self.before_instantiate_classes()
        self.instantiate_classes()
        self.after_instantiate_classes()
        if self.subcommand is not None:
            self._run_subcommand(self.subcommand)

    # ------------------------------------------------------------------ parser
    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        """A fresh parser with `-c/--config`; saved configs start with `# lightning.pytorch==<version>`."""
        kwargs.setdefault("dump_header", [f"lightning.pytorch=={LIGHTNING_VERSION}"])
        parser = self.parser_class(**kwargs)
        from jsonargparse import ActionConfigFile  # type: ignore[attr-defined]  # optional, present with a parser

        parser.add_argument(
            "-c", "--config", action=ActionConfigFile, help="Path to a configuration file in json or yaml format."
        )
        return parser

    def setup_parser(
        self, add_subcommands: bool, main_kwargs: dict[str, Any], subparser_kwargs: dict[str, Any]
    ) -> None:
        """Build `self.parser`: one parser, or a main parser with one parser per subcommand."""
        self.parser = self.init_parser(**main_kwargs)
        if add_subcommands:
            self._subcommand_method_arguments: dict[str, list[str]] = {}
            self._add_subcommands(self.parser, **subparser_kwargs)
        else:
            self._add_arguments(self.parser)

    def add_default_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """`--seed_everything`."""
        parser.add_argument(
            "--seed_everything",
            type=bool | int,
            default=self.seed_everything_default,
            help="Set to an int to run seed_everything with this value before classes instantiation."
            "Set to True to use a random seed.",
        )

    def add_core_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """`--trainer.*`, `--model.*` and `--data.*` from the classes' signatures and docstrings."""
        parser.add_lightning_class_args(self.trainer_class, "trainer")
        parser.set_defaults({f"trainer.{k}": v for k, v in self.trainer_defaults.items() if k != "callbacks"})
        parser.add_lightning_class_args(self._model_class, "model", subclass_mode=self.subclass_mode_model)
        # without a datamodule class the group is optional: the model may bring its own dataloaders
        parser.add_lightning_class_args(
            self._datamodule_class,
            "data",
            subclass_mode=self.subclass_mode_data,
            required=self.datamodule_class is not None,
        )

    def _add_arguments(self, parser: LightningArgumentParser) -> None:
        self.add_default_arguments_to_parser(parser)
        self.add_core_arguments_to_parser(parser)
        self.add_arguments_to_parser(parser)
        if self.auto_configure_optimizers:
            if not parser._optimizers:  # the user may have added their own in add_arguments_to_parser
                parser.add_optimizer_args((Optimizer,))
            if not parser._lr_schedulers:
                parser.add_lr_scheduler_args(LRSchedulerTypeTuple)
        self.link_optimizers_and_lr_schedulers(parser)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Override to add arguments or argument links of your own."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """The subcommands, each with the Trainer method's arguments the CLI fills itself (the others become flags,
        e.g. `--ckpt_path`)."""
        return {
            "fit": {"model", "train_dataloaders", "val_dataloaders", "datamodule"},
            "validate": {"model", "dataloaders", "datamodule"},
            "test": {"model", "dataloaders", "datamodule"},
            "predict": {"model", "dataloaders", "datamodule"},
        }

    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs: Any) -> None:
        self._subcommand_parsers: dict[str, LightningArgumentParser] = {}
        commands = parser.add_subcommands()
        trainer_class = class_from_callable(self.trainer_class)
        for name, skip in self.subcommands().items():
            description = short_description(getattr(trainer_class, name))
            sub_kwargs = dict(kwargs.get(name, {}))
            sub_kwargs.setdefault("description", description)
            sub = self.init_parser(**sub_kwargs)
            self._add_arguments(sub)
            added = sub.add_method_arguments(trainer_class, name, skip=set(skip))
            self._subcommand_method_arguments[name] = list(added)
            self._subcommand_parsers[name] = sub
            commands.add_subcommand(name, sub, help=description)

    @staticmethod
    def link_optimizers_and_lr_schedulers(parser: LightningArgumentParser) -> None:
        """Link each optimizer / scheduler group that names a `link_to` target to it."""
        for key, (classes, link_to) in {**parser._optimizers, **parser._lr_schedulers}.items():
            if link_to == _AUTOMATIC:
                continue
            if isinstance(classes, tuple):
                parser.link_arguments(key, link_to)
            else:  # a single-class group holds only init args: the target gets the class path too
                parser.link_arguments(key, link_to, compute_fn=partial(_with_class_path, classes))

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        """Parse `args` (or `sys.argv[1:]`) into `self.config`."""
        if args is not None and len(sys.argv) > 1:
            rank_zero_warn(
                "LightningCLI's args parameter is intended to run from within Python like if it were from the command"
                " line. To prevent mistakes it is not recommended to provide both args and command line arguments,"
                f" got: sys.argv[1:]={sys.argv[1:]}, args={args}."
            )
        if isinstance(args, dict) or type(args).__name__ == "Namespace":
            self.config = parser.parse_object(args)
        else:
            self.config = parser.parse_args(args)

    def _parse_ckpt_path(self) -> None:
        """With `--ckpt_path`, the model's hyperparameters stored in the checkpoint become the config's defaults."""
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        ckpt_path = self.config[subcommand].get("ckpt_path")
        if not ckpt_path or not Path(ckpt_path).is_file():
            return
        hparams = dict(torch.load(ckpt_path, weights_only=True, map_location="cpu").get("hyper_parameters", {}))
        hparams.pop("_instantiator", None)
        if not hparams:
            return
        if "_class_path" in hparams:
            hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
        try:
            self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)
        except SystemExit:
            sys.stderr.write("Parsing of ckpt_path hyperparameters failed!\n")
            raise

    # ------------------------------------------------------------------ instantiation
    def _dump_config(self) -> None:
        if hasattr(self, "config_dump"):
            return
        import yaml

        dumped = self.parser.dump(self.config, skip_link_targets=False, skip_none=False, format="yaml")
        self.config_dump = yaml.safe_load(dumped)
        if "subcommand" in self.config:
            self.config_dump = self.config_dump[self.config.subcommand]

    def _add_instantiators(self) -> None:
        for key, cls, subclasses in (
            ("model", self._model_class, self.subclass_mode_model),
            ("data", self._datamodule_class, self.subclass_mode_data),
        ):
            self.parser.add_instantiator(ModuleInstantiator(self, key), module_type(cls), subclasses=subclasses)

    def before_instantiate_classes(self) -> None:
        """Override to run code before the classes are built."""

    def instantiate_classes(self) -> None:
        """Build the model, datamodule and Trainer from the config."""
        self.config_init = self.parser.instantiate_classes(self.config)
        self.datamodule = self._get(self.config_init, "data")
        self.model = self._get(self.config_init, "model")
        self._add_configure_optimizers_method_to_model(self.subcommand)
        self.trainer = self.instantiate_trainer()

    def after_instantiate_classes(self) -> None:
        """Override to run code after the classes are built."""

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The Trainer from `--trainer.*` and `kwargs`, with the configured, default and config-saving callbacks.

        Args:
            kwargs: Trainer arguments that take precedence over the config.
        """
        extra = [self._get(self.config_init, key) for key in self._parser(self.subcommand).callback_keys]
        config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        return self._instantiate_trainer(config, extra)

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Callback]) -> Trainer:
        if "callbacks" not in config:
            rank_zero_warn(
                f"The `{self.trainer_class.__qualname__}` class does not expose the `callbacks` argument so they will"
                " not be included."
            )
            return self.trainer_class(**config)
        given = config["callbacks"]
        all_callbacks = [] if given is None else list(given) if isinstance(given, list) else [given]
        all_callbacks += callbacks
        if "callbacks" in self.trainer_defaults:
            default = self.trainer_defaults["callbacks"]
            all_callbacks += [_built(cb) for cb in (default if isinstance(default, list) else [default])]
        if self.save_config_callback and not config.get("fast_dev_run", False):
            scoped = self.config.get(str(self.subcommand), self.config)
            all_callbacks.append(
                self.save_config_callback(self._parser(self.subcommand), scoped, **self.save_config_kwargs)
            )
        config["callbacks"] = all_callbacks
        return self.trainer_class(**config)

    def _parser(self, subcommand: str | None) -> LightningArgumentParser:
        return self.parser if subcommand is None else self._subcommand_parsers[subcommand]

    @staticmethod
    def configure_optimizers(
        lightning_module: LightningModule, optimizer: Optimizer, lr_scheduler: LRSchedulerTypeUnion | None = None
    ) -> Any:
        """What the model's `configure_optimizers` returns with `--optimizer` given (override to customize).

        Args:
            lightning_module: the model.
            optimizer: the optimizer.
            lr_scheduler: the learning-rate scheduler, if any.
        """
        if lr_scheduler is None:
            return optimizer
        if isinstance(lr_scheduler, ReduceLROnPlateau):
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": lr_scheduler, "monitor": lr_scheduler.monitor},
            }
        return [optimizer], [lr_scheduler]

    def _add_configure_optimizers_method_to_model(self, subcommand: str | None) -> None:
        """Replace the model's `configure_optimizers` when one optimizer group (and at most one scheduler group) is
        AUTOMATIC and the config gives an optimizer."""
        if not self.auto_configure_optimizers:
            return
        parser = self._parser(subcommand)
        optimizers = _automatic_keys(parser._optimizers, (Optimizer,))
        schedulers = _automatic_keys(parser._lr_schedulers, LRSchedulerTypeTuple)
        if not optimizers:
            return
        if len(optimizers) > 1 or len(schedulers) > 1:
            raise MisconfigurationException(
                f"`{type(self).__name__}.add_configure_optimizers_method_to_model` expects at most one optimizer"
                f" and one lr_scheduler to be 'AUTOMATIC', but found {optimizers + schedulers}. In this case the user"
                " is expected to link the argument groups and implement `configure_optimizers`, see"
                " https://lightning.ai/docs/pytorch/stable/common/lightning_cli.html"
                "#optimizers-and-learning-rate-schedulers"
            )
        optimizer_init = self._group_init(parser._optimizers, optimizers[0])
        if not optimizer_init:
            return  # the groups were added automatically and the config gives no optimizer
        scheduler_init = self._group_init(parser._lr_schedulers, schedulers[0]) if schedulers else None
        if is_overridden("configure_optimizers", self.model):
            rank_zero_warn(
                f"`{type(self.model).__name__}.configure_optimizers` will be overridden by"
                f" `{type(self).__name__}.configure_optimizers`."
            )
        optimizer = instantiate_class(self.model.parameters(), optimizer_init)
        scheduler = instantiate_class(optimizer, scheduler_init) if scheduler_init else None
        fn = partial(self.configure_optimizers, optimizer=optimizer, lr_scheduler=scheduler)
        update_wrapper(fn, self.configure_optimizers)  # `is_overridden` recognises it
        self.model.configure_optimizers = MethodType(fn, self.model)

    def _group_init(self, register: dict[str, Any], key: str) -> Any:
        classes = register[key][0]
        init = self._get(self.config_init, key)
        if isinstance(classes, tuple):
            return init
        return _with_class_path(classes, init)

    def _get(self, config: Any, key: str, default: Any = None) -> Any:
        """`config[key]`, inside the running subcommand's section when there is one."""
        return config.get(str(self.subcommand), config).get(key, default)

    # ------------------------------------------------------------------ running
    def _run_subcommand(self, subcommand: str) -> None:
        before = getattr(self, f"before_{subcommand}", None)
        if callable(before):
            before()
        fn = getattr(self, subcommand, getattr(self.trainer, subcommand))
        fn(**self._prepare_subcommand_kwargs(subcommand))
        after = getattr(self, f"after_{subcommand}", None)
        if callable(after):
            after()

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict[str, Any]:
        allowed = self._subcommand_method_arguments[subcommand]
        kwargs = {k: v for k, v in self.config_init[subcommand].items() if k in allowed}
        kwargs["model"] = self.model
        if self.datamodule is not None:
            kwargs["datamodule"] = self.datamodule
        return kwargs

    def _set_seed(self) -> None:
        seed = self._get(self.config, "seed_everything")
        if seed is False:
            return
        seed = seed_everything(workers=True) if seed is True else seed_everything(seed, workers=True)
        target = self.config[self.subcommand] if self.subcommand else self.config
        target["seed_everything"] = seed


def _automatic_keys(register: dict[str, Any], bases: tuple[type, ...]) -> list[str]:
    keys = []
    for key, (classes, link_to) in register.items():
        candidates = classes if isinstance(classes, tuple) else (classes,)
        if link_to == _AUTOMATIC and any(issubclass(c, bases) for c in candidates):
            keys.append(key)
    return keys


def _with_class_path(class_type: type, init_args: Any = None) -> dict[str, Any]:
    if hasattr(init_args, "as_dict"):
        init_args = init_args.as_dict()
    return {"class_path": f"{class_type.__module__}.{class_type.__name__}", "init_args": init_args or {}}


def _built(value: Any) -> Any:
    """A `{"class_path": ..., "init_args": {...}}` default callback built (Lightning passes the dict on as is, and
    its Trainer then carries a dict among its callbacks); anything else unchanged."""
    if isinstance(value, dict) and isinstance(value.get("class_path"), str):
        module_name, _, name = value["class_path"].rpartition(".")
        return getattr(importlib.import_module(module_name), name)(**(value.get("init_args") or {}))
    return value
