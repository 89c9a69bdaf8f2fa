"""`LightningCLI`: Lightning's YAML/flag command line (fit/validate/test/predict, `--config`, `--print_config`,
`--trainer.*`, `--model.*`, `--data.*`, optimizer and scheduler from the command line) on jsonargparse, which is
imported only here (the `fulgor[cli]` extra); and `SaveConfigCallback`, which writes the config next to the logs."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import partial, update_wrapper
from types import MethodType
from typing import Any

import torch

from fulgor.callbacks.callback import Callback
from fulgor.datamodule import LightningDataModule
from fulgor.module import LightningModule, is_overridden
from fulgor.rank import rank_zero_warn
from fulgor.seed import seed_everything
from fulgor.trainer.trainer import Trainer

__all__ = ["LightningArgumentParser", "LightningCLI", "SaveConfigCallback"]

ArgsType = list[str] | dict[str, Any] | None
_SUBCOMMANDS: dict[str, set[str]] = {
    # subcommand -> the Trainer method's arguments the CLI fills itself (the others become flags, e.g. --ckpt_path)
    "fit": {"model", "train_dataloaders", "val_dataloaders", "datamodule"},
    "validate": {"model", "dataloaders", "datamodule"},
    "test": {"model", "dataloaders", "datamodule"},
    "predict": {"model", "dataloaders", "datamodule"},
}


def _jsonargparse() -> Any:
    try:
        import jsonargparse
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            "`LightningCLI` needs jsonargparse: install it with `pip install 'fulgor[cli]'`"
            " (or `pip install 'jsonargparse[signatures]'`)."
        ) from err
    return jsonargparse


def _parser_class() -> type[Any]:
    """`LightningArgumentParser`, built on first use so that importing this module does not import jsonargparse."""
    global _PARSER_CLASS
    if _PARSER_CLASS is None:
        jsonargparse = _jsonargparse()

        class _LightningArgumentParser(jsonargparse.ArgumentParser):  # type: ignore[misc,name-defined]
            """jsonargparse's parser with Lightning's helpers: class groups, optimizer and scheduler groups."""

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.add_argument(
                    "-c", "--config", action=jsonargparse.ActionConfigFile, help="Path to a YAML configuration file."
                )
                self.optimizer_key: str | None = None
                self.lr_scheduler_key: str | None = None

            def add_lightning_class_args(
                self, cls: type[Any], nested_key: str, subclass_mode: bool = False, required: bool = True
            ) -> list[str]:
                if subclass_mode:
                    self.add_subclass_arguments(cls, nested_key, fail_untyped=False, required=required)
                    return [nested_key]
                # The Trainer is built by the CLI itself (it adds callbacks first); the other classes by jsonargparse.
                instantiate = not (isinstance(cls, type) and issubclass(cls, Trainer))
                return list(
                    self.add_class_arguments(
                        cls, nested_key, fail_untyped=False, instantiate=instantiate, sub_configs=True
                    )
                )

            def add_optimizer_args(self, nested_key: str = "optimizer") -> None:
                self.add_subclass_arguments(
                    torch.optim.Optimizer, nested_key, skip={"params"}, instantiate=False, required=False
                )
                self.optimizer_key = nested_key

            def add_lr_scheduler_args(self, nested_key: str = "lr_scheduler") -> None:
                self.add_subclass_arguments(
                    (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau),
                    nested_key,
                    skip={"optimizer"},
                    instantiate=False,
                    required=False,
                )
                self.lr_scheduler_key = nested_key

        _PARSER_CLASS = _LightningArgumentParser
    return _PARSER_CLASS


_PARSER_CLASS: type[Any] | None = None


def LightningArgumentParser(*args: Any, **kwargs: Any) -> Any:
    """A jsonargparse `ArgumentParser` with `--config` and Lightning's `add_lightning_class_args`,
    `add_optimizer_args` and `add_lr_scheduler_args`."""
    return _parser_class()(*args, **kwargs)


class SaveConfigCallback(Callback):
    """Writes the parsed configuration to `<trainer.log_dir>/config.yaml` when the run is set up (rank zero only).

    Args:
        parser: the parser that produced `config`.
        config: the parsed configuration.
        config_filename: file name inside the log directory.
        overwrite: replace an existing file instead of refusing to run.
        multifile: also write the nested config files (jsonargparse's `multifile`).
        save_to_log_dir: write into `trainer.log_dir`; False leaves saving to an overridden `save_config`.
    """

    def __init__(
        self,
        parser: Any,
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
            log_dir = trainer.log_dir
            config_path = os.path.join(log_dir, self.config_filename)
            if not self.overwrite and trainer.is_global_zero and os.path.isfile(config_path):
                raise RuntimeError(
                    f"{type(self).__name__} expected {config_path} to NOT exist. Aborting to avoid overwriting"
                    " results of a previous run. You can delete the previous config file,"
                    " set `LightningCLI(save_config_callback=None)` to disable config saving,"
                    ' or set `LightningCLI(save_config_kwargs={"overwrite": True})` to overwrite the config file.'
                )
            if trainer.is_global_zero:
                os.makedirs(log_dir, exist_ok=True)
                self.parser.save(
                    self.config, config_path, skip_none=False, overwrite=self.overwrite, multifile=self.multifile
                )
        if trainer.is_global_zero:
            self.save_config(trainer, pl_module, stage)
            self.already_saved = True

    def save_config(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Override to save the config somewhere else too (e.g. to an experiment tracker)."""


class LightningCLI:
    """Lightning's command line: `python main.py fit --config cfg.yaml --trainer.max_epochs 3 --model.lr 0.1`.

    Args:
        model_class: the LightningModule class (or base class with `subclass_mode_model=True`); None means any
            LightningModule given as `--model.class_path`.
        datamodule_class: the LightningDataModule class, or None (then `--data` is optional, subclass mode).
        save_config_callback: the callback class that saves the config next to the logs (None: do not save).
        save_config_kwargs: its keyword arguments (`overwrite`, `config_filename`, `multifile`).
        trainer_class: the Trainer class.
        trainer_defaults: defaults for `--trainer.*` (and extra `callbacks`).
        seed_everything_default: the `--seed_everything` default (True: a random seed, False: none, int: that).
        parser_kwargs: keyword arguments for the parsers (per subcommand when keyed by subcommand names).
        subclass_mode_model: accept any subclass of `model_class` through `class_path`/`init_args`.
        subclass_mode_data: the same for `datamodule_class`.
        args: the arguments to parse instead of `sys.argv[1:]` (a list, or a dict as a parsed config).
        run: True: subcommands, and the chosen one is run; False: no subcommands, only instantiate.
        auto_configure_optimizers: build `configure_optimizers` from `--optimizer` / `--lr_scheduler`.
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
        parser_kwargs: dict[str, Any] | None = None,
        subclass_mode_model: bool = False,
        subclass_mode_data: bool = False,
        args: ArgsType = None,
        run: bool = True,
        auto_configure_optimizers: bool = True,
    ) -> None:
        self.save_config_callback = save_config_callback
        self.save_config_kwargs = save_config_kwargs or {}
        self.trainer_class = trainer_class
        self.trainer_defaults = trainer_defaults or {}
        self.seed_everything_default = seed_everything_default
        self.parser_kwargs = parser_kwargs or {}
        self.auto_configure_optimizers = auto_configure_optimizers
        self.model_class = model_class
        self._model_class = model_class or LightningModule
        self.subclass_mode_model = model_class is None or subclass_mode_model
        self.datamodule_class = datamodule_class
        self._datamodule_class = datamodule_class or LightningDataModule
        self.subclass_mode_data = datamodule_class is None or subclass_mode_data
        self._subcommand_parsers: dict[str, Any] = {}
        self._subcommand_method_arguments: dict[str, list[str]] = {}

        self.setup_parser(run)
        self.parse_arguments(self.parser, args)
        self.subcommand: str | None = self.config["subcommand"] if run else None
        self._set_seed()
        self.before_instantiate_classes()
        self.instantiate_classes()
        self.after_instantiate_classes()
        if self.subcommand is not None:
            self._run_subcommand(self.subcommand)

    # ------------------------------------------------------------------ parser
    def init_parser(self, **kwargs: Any) -> Any:
        """A fresh `LightningArgumentParser`."""
        return LightningArgumentParser(**{"exit_on_error": True, **kwargs})

    def setup_parser(self, add_subcommands: bool) -> None:
        """Build `self.parser`: one parser, or one per subcommand under a main parser."""
        main_kwargs = {k: v for k, v in self.parser_kwargs.items() if k not in _SUBCOMMANDS}
        self.parser = self.init_parser(**main_kwargs)
        if not add_subcommands:
            self._add_arguments(self.parser)
            return
        commands = self.parser.add_subcommands()
        for name in _SUBCOMMANDS:
            sub_kwargs = self.parser_kwargs.get(name, {})
            sub = self.init_parser(**sub_kwargs)
            self._add_arguments(sub)
            skip = _SUBCOMMANDS[name]
            added = sub.add_method_arguments(self.trainer_class, name, skip=skip)
            self._subcommand_method_arguments[name] = list(added)
            self._subcommand_parsers[name] = sub
            doc = (getattr(self.trainer_class, name).__doc__ or "").strip().split("\n")[0]
            commands.add_subcommand(name, sub, help=doc)

    def _add_arguments(self, parser: Any) -> None:
        self.add_default_arguments_to_parser(parser)
        self.add_core_arguments_to_parser(parser)
        self.add_arguments_to_parser(parser)
        if self.auto_configure_optimizers:
            if parser.optimizer_key is None:
                parser.add_optimizer_args()
            if parser.lr_scheduler_key is None:
                parser.add_lr_scheduler_args()

    def add_default_arguments_to_parser(self, parser: Any) -> None:
        """`--seed_everything`."""
        parser.add_argument(
            "--seed_everything",
            type=bool | int,
            default=self.seed_everything_default,
            help="Set to an int to run seed_everything with this value before classes instantiation."
            " Set to True to use a random seed.",
        )

    def add_core_arguments_to_parser(self, parser: Any) -> None:
        """`--trainer.*`, `--model.*` and `--data.*` from the classes' signatures and docstrings."""
        parser.add_lightning_class_args(self.trainer_class, "trainer")
        defaults = {f"trainer.{k}": v for k, v in self.trainer_defaults.items() if k != "callbacks"}
        if defaults:
            parser.set_defaults(defaults)
        parser.add_lightning_class_args(self._model_class, "model", subclass_mode=self.subclass_mode_model)
        parser.add_lightning_class_args(
            self._datamodule_class,
            "data",
            subclass_mode=self.subclass_mode_data,
            required=self.datamodule_class is not None,
        )

    def add_arguments_to_parser(self, parser: Any) -> None:
        """Override to add arguments or argument links of your own."""

    def parse_arguments(self, parser: Any, args: ArgsType) -> None:
        """Parse `args` (or `sys.argv[1:]`) into `self.config`."""
        if args is not None and len(sys.argv) > 1:
            rank_zero_warn(
                "LightningCLI's args parameter is intended to run from within Python like if it were from the command"
                " line. To prevent mistakes it is not recommended to provide both args and command line arguments,"
                f" got: sys.argv[1:]={sys.argv[1:]}, args={args}."
            )
        if isinstance(args, dict):
            self.config = parser.parse_object(args)
        else:
            self.config = parser.parse_args(args)

    def _parser(self, subcommand: str | None) -> Any:
        return self.parser if subcommand is None else self._subcommand_parsers[subcommand]

    def _get(self, config: Any, key: str, default: Any = None) -> Any:
        scoped = config.get(str(self.subcommand), config) if self.subcommand else config
        return scoped.get(key, default)

    # ------------------------------------------------------------------ instantiation
    def _set_seed(self) -> None:
        seed = self._get(self.config, "seed_everything")
        if seed is False:
            return
        seed = seed_everything(workers=True) if seed is True else seed_everything(seed, workers=True)
        target = self.config[self.subcommand] if self.subcommand else self.config
        target["seed_everything"] = seed

    def before_instantiate_classes(self) -> None:
        """Override to run code before the classes are built."""

    def instantiate_classes(self) -> None:
        """Build the model, datamodule and Trainer from the config."""
        self.config_init = self.parser.instantiate_classes(self.config)
        self.datamodule = self._get(self.config_init, "data")
        self.model = self._get(self.config_init, "model")
        self._add_configure_optimizers_method_to_model()
        self.trainer = self.instantiate_trainer()

    def after_instantiate_classes(self) -> None:
        """Override to run code after the classes are built."""

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The Trainer from `--trainer.*`, with the extra and default callbacks and the `SaveConfigCallback`."""
        config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        callbacks = config.get("callbacks")
        callbacks = [] if callbacks is None else list(callbacks) if isinstance(callbacks, list) else [callbacks]
        extra = self.trainer_defaults.get("callbacks", [])
        callbacks += extra if isinstance(extra, list) else [extra]
        if self.save_config_callback is not None and not config.get("fast_dev_run", False):
            callbacks.append(
                self.save_config_callback(
                    self._parser(self.subcommand),
                    self.config.get(str(self.subcommand), self.config) if self.subcommand else self.config,
                    **self.save_config_kwargs,
                )
            )
        config["callbacks"] = callbacks
        return self.trainer_class(**config)

    @staticmethod
    def configure_optimizers(lightning_module: LightningModule, optimizer: Any, lr_scheduler: Any = None) -> Any:
        """What the model's `configure_optimizers` returns when `--optimizer` is given (override to customize)."""
        if lr_scheduler is None:
            return optimizer
        if isinstance(lr_scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            monitor = getattr(lr_scheduler, "monitor", "val_loss")
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": lr_scheduler, "monitor": monitor}}
        return [optimizer], [lr_scheduler]

    def _add_configure_optimizers_method_to_model(self) -> None:
        if not self.auto_configure_optimizers:
            return
        parser = self._parser(self.subcommand)
        optimizer_init = self._get(self.config_init, parser.optimizer_key)
        if not optimizer_init:
            return
        scheduler_init = self._get(self.config_init, parser.lr_scheduler_key)
        if is_overridden("configure_optimizers", self.model):
            rank_zero_warn(
                f"`{type(self.model).__name__}.configure_optimizers` will be overridden by"
                f" `{type(self).__name__}.configure_optimizers`."
            )
        optimizer = _instantiate(self.model.parameters(), optimizer_init)
        scheduler = _instantiate(optimizer, scheduler_init) if scheduler_init else None
        fn = partial(self.configure_optimizers, optimizer=optimizer, lr_scheduler=scheduler)
        update_wrapper(fn, self.configure_optimizers)
        self.model.configure_optimizers = MethodType(fn, self.model)

    # ------------------------------------------------------------------ running
    def _run_subcommand(self, subcommand: str) -> None:
        before = getattr(self, f"before_{subcommand}", None)
        if callable(before):
            before()
        fn = getattr(self, subcommand, None) or getattr(self.trainer, subcommand)
        kwargs = {k: v for k, v in self.config_init[subcommand].items() if k in self._method_args(subcommand)}
        kwargs["model"] = self.model
        if self.datamodule is not None:
            kwargs["datamodule"] = self.datamodule
        fn(**kwargs)
        after = getattr(self, f"after_{subcommand}", None)
        if callable(after):
            after()

    def _method_args(self, subcommand: str) -> list[str]:
        return self._subcommand_method_arguments.get(subcommand, [])


def _instantiate(first: Any, init: Any) -> Any:
    """`class_path`/`init_args` (a dict or jsonargparse Namespace) -> the object, with `first` as first argument."""
    import importlib

    init = dict(init) if not hasattr(init, "as_dict") else init.as_dict()
    module_name, _, class_name = init["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    kwargs = init.get("init_args") or {}
    if not isinstance(kwargs, dict):
        kwargs = kwargs.as_dict() if hasattr(kwargs, "as_dict") else dict(kwargs)
    return cls(first, **kwargs)
