"""Import aliases so unchanged Lightning scripts run on fulgor: a meta path finder that answers `pytorch_lightning`,
`lightning.pytorch` and `lightning` (and their public submodules) with fulgor's modules, and `run_script`, which
runs a script under those aliases as `python SCRIPT` would (`fulgor run SCRIPT [ARGS]`)."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import os
import runpy
import sys
import traceback
import types
from collections.abc import Sequence
from typing import Any

__all__ = ["ALIASES", "LightningAliasFinder", "install", "is_installed", "run_script", "uninstall"]

LIGHTNING_VERSION = "2.6.6"  # the Lightning API fulgor follows; reported as `pl.__version__` to version checks

# Public submodule paths (relative to `pytorch_lightning` / `lightning.pytorch`) -> fulgor modules whose names they
# expose, searched in order. Modules are imported on first attribute access, so an alias costs nothing until used.
_CALLBACK_FILES = (
    "early_stopping", "model_checkpoint", "model_summary", "lr_monitor", "timer", "finetuning", "lambda_function",
    "gradient_accumulation_scheduler", "prediction_writer", "on_exception_checkpoint", "callback", "weight_averaging",
)  # fmt: skip
ALIASES: dict[str, tuple[str, ...]] = {
    "": ("fulgor",),
    "callbacks": ("fulgor.callbacks",),
    **{f"callbacks.{name}": (f"fulgor.callbacks.{name}",) for name in _CALLBACK_FILES},
    "callbacks.checkpoint": ("fulgor.callbacks.model_checkpoint",),
    "callbacks.stochastic_weight_avg": ("fulgor.callbacks.weight_averaging",),
    "callbacks.progress": (
        "fulgor.callbacks.progress",
        "fulgor.callbacks.tqdm_progress",
        "fulgor.callbacks.rich_progress",
    ),
    "callbacks.progress.tqdm_progress": ("fulgor.callbacks.tqdm_progress",),
    "callbacks.progress.rich_progress": ("fulgor.callbacks.rich_progress",),
    "callbacks.progress.progress_bar": ("fulgor.callbacks.progress",),
    "loggers": ("fulgor.loggers",),
    "loggers.logger": ("fulgor.loggers.logger",),
    "loggers.csv_logs": ("fulgor.loggers.csv_logs",),
    "loggers.tensorboard": ("fulgor.loggers.tensorboard",),
    "loggers.mlflow": ("fulgor.loggers.mlflow",),
    "loggers.wandb": ("fulgor.loggers.wandb",),
    "core": ("fulgor.module", "fulgor.datamodule", "fulgor.callbacks.callback"),
    "core.module": ("fulgor.module",),
    "core.lightning": ("fulgor.module",),
    "core.datamodule": ("fulgor.datamodule",),
    "core.saving": ("fulgor.hparams",),
    "core.optimizer": ("fulgor.optimizer",),
    "trainer": ("fulgor.trainer.trainer",),
    "trainer.trainer": ("fulgor.trainer.trainer",),
    "trainer.states": ("fulgor.trainer.state",),
    "utilities": ("fulgor.rank", "fulgor.seed", "fulgor.hparams", "fulgor.errors"),
    "utilities.rank_zero": ("fulgor.rank",),
    "utilities.seed": ("fulgor.seed",),
    "utilities.model_summary": ("fulgor.summary", "fulgor.callbacks.model_summary"),
    "utilities.exceptions": ("fulgor.errors",),
    "utilities.warnings": ("fulgor.errors",),
    "utilities.parsing": ("fulgor.hparams", "fulgor.trainer.legacy_argparse"),
    "utilities.argparse": ("fulgor.trainer.legacy_argparse",),
    "strategies": ("fulgor.strategies",),
    "cli": ("fulgor.lightning_cli",),
    "utilities.cli": ("fulgor.lightning_cli",),
}
_ROOTS = ("pytorch_lightning", "lightning.pytorch")
_LIGHTNING_TOP = "lightning"  # `import lightning as L`: L.Trainer, L.LightningModule, ..., and L.pytorch


def _relative(fullname: str) -> str | None:
    """The path of `fullname` under an aliased root ("" for the root itself), or None if it is not aliased."""
    for root in _ROOTS:
        if fullname == root:
            return ""
        if fullname.startswith(root + "."):
            return fullname[len(root) + 1 :]
    return None


class _AliasModule(types.ModuleType):
    """A module standing for a Lightning module: attributes come from the fulgor modules behind it, submodules from
    the alias table, and a missing name is an AttributeError that says fulgor does not provide it."""

    def __init__(self, name: str, sources: Sequence[str]) -> None:
        super().__init__(name, f"fulgor alias of {', '.join(sources)}")
        self.__path__: list[str] = []  # a package: `import <alias>.<sub>` asks the finders
        self.__fulgor_sources__ = tuple(sources)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") and attr.endswith("__"):
            if attr == "__version__":
                return LIGHTNING_VERSION
            raise AttributeError(attr)
        sub = f"{self.__name__}.{attr}"
        if _is_alias(sub):
            return importlib.import_module(sub)
        for source in self.__fulgor_sources__:
            module = importlib.import_module(source)
            if attr in vars(module) or hasattr(module, attr):
                value = getattr(module, attr)
                setattr(self, attr, value)  # later lookups skip this method
                return value
        raise AttributeError(
            f"module {self.__name__!r} has no attribute {attr!r}: fulgor does not provide `{sub}`"
            " (see docs/migration.md for what it offers instead)"
        )

    def __dir__(self) -> list[str]:
        names = set(super().__dir__())
        for source in self.__fulgor_sources__:
            names.update(n for n in dir(importlib.import_module(source)) if not n.startswith("_"))
        return sorted(names)


def _is_alias(fullname: str) -> bool:
    if fullname in (_LIGHTNING_TOP, f"{_LIGHTNING_TOP}.pytorch"):
        return True
    relative = _relative(fullname)
    return relative is not None and relative in ALIASES


class _AliasLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        if spec.name == _LIGHTNING_TOP:
            return _AliasModule(spec.name, ("fulgor",))
        relative = _relative(spec.name)
        assert relative is not None
        return _AliasModule(spec.name, ALIASES[relative])

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run: the alias reads its names from fulgor on demand."""


class LightningAliasFinder(importlib.abc.MetaPathFinder):
    """Answers imports of Lightning's module names with fulgor aliases; an unknown Lightning submodule fails with a
    ModuleNotFoundError naming it (never a silent fall-through to an installed pytorch_lightning)."""

    _loader = _AliasLoader()

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        root = fullname.split(".", 1)[0]
        if root not in ("pytorch_lightning", _LIGHTNING_TOP):
            return None
        if _is_alias(fullname):
            return importlib.machinery.ModuleSpec(fullname, self._loader, is_package=True)
        raise ModuleNotFoundError(
            f"No module named {fullname!r}: fulgor's Lightning compatibility layer does not provide it"
            " (see docs/migration.md for what it offers instead)",
            name=fullname,
        )


_FINDER = LightningAliasFinder()


def install() -> None:
    """Put the alias finder first on `sys.meta_path` (idempotent). Already-imported Lightning modules are evicted so
    the aliases answer from now on."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
    os.environ["FULGOR_COMPAT"] = "1"  # re-launched ranks (DDP) must run under the aliases too
    for name in [n for n in sys.modules if n.split(".", 1)[0] in ("pytorch_lightning", _LIGHTNING_TOP)]:
        if not isinstance(sys.modules[name], _AliasModule):
            del sys.modules[name]


def uninstall() -> None:
    """Remove the alias finder and the alias modules it created."""
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)
    os.environ.pop("FULGOR_COMPAT", None)
    for name in [n for n, m in sys.modules.items() if isinstance(m, _AliasModule)]:
        del sys.modules[name]


def is_installed() -> bool:
    """Whether Lightning imports are currently answered by fulgor."""
    return _FINDER in sys.meta_path


def run_script(path: str, args: Sequence[str] = ()) -> int:
    """Run `path` as `python path args...` would, with Lightning's imports answered by fulgor.

    `sys.argv`, `sys.path[0]` and `__name__ == "__main__"` are the script's; an uncaught exception prints the
    traceback from the script's frames on (as Python does) and returns 1; `sys.exit(n)` returns n.

    Args:
        path: the script file.
        args: its command-line arguments.

    Returns:
        The exit status.
    """
    if not os.path.isfile(path):
        sys.stderr.write(f"fulgor run: can't open file {path!r}: [Errno 2] No such file or directory\n")
        return 2
    install()
    saved_argv = sys.argv
    sys.argv = [path, *args]
    script_dir = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, script_dir)
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as exit_:
        return _exit_status(exit_.code)
    except Exception as error:
        _print_script_traceback(error, path)
        return 1
    finally:
        sys.argv = saved_argv
        if sys.path and sys.path[0] == script_dir:
            del sys.path[0]
    return 0


def _exit_status(code: Any) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    sys.stderr.write(f"{code}\n")  # `sys.exit("message")` prints the message and exits with 1, as Python does
    return 1


def _print_script_traceback(error: BaseException, path: str) -> None:
    """Python's traceback, starting at the script's first frame (runpy's and fulgor's launcher frames dropped)."""
    script = os.path.abspath(path)
    tb = error.__traceback__
    while tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename) != script:
        tb = tb.tb_next
    report = traceback.TracebackException(type(error), error, tb if tb is not None else error.__traceback__)
    # Python hides the import machinery's frames; hide the alias finder's too.
    kept = [f for f in report.stack if f.filename != __file__ and not f.filename.startswith("<frozen importlib")]
    report.stack = traceback.StackSummary.from_list(kept)
    sys.stderr.write("".join(report.format()))
    if isinstance(error, ImportError) and error.name and error.name.split(".", 1)[0] in (*_ROOTS, _LIGHTNING_TOP):
        sys.stderr.write(
            f"fulgor run: the import above asks for a part of {error.name!r} that fulgor does not provide;"
            " see docs/migration.md.\n"
        )
