"""Import aliases so unchanged Lightning scripts run on fulgor: a meta path finder that answers `pytorch_lightning`,
`lightning.pytorch`, `lightning_fabric`, `lightning.fabric` and `lightning` (and their public submodules, listed in
fulgor.lightning_paths) with fulgor's modules, and `run_script`, which runs a script under those aliases as
`python SCRIPT` would (`fulgor run SCRIPT [ARGS]`)."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import runpy
import sys
import traceback
import types
from collections.abc import Sequence
from typing import Any

from fulgor.lightning_errors import apply_import_settings
from fulgor.lightning_internals import internal_stand_in
from fulgor.lightning_paths import FABRIC, LIGHTNING, LIGHTNING_VERSION, NOT_BUILT, PYTORCH, Sources
from fulgor.log_routing import route_to, unroute
from fulgor.rank import sync_lightning_utilities

__all__ = [
    "LIGHTNING_VERSION",
    "LightningAliasFinder",
    "alias_sources",
    "install",
    "is_installed",
    "run_script",
    "uninstall",
]

_TABLES: dict[str, dict[str, Sources]] = {
    "pytorch_lightning": PYTORCH,
    "lightning.pytorch": PYTORCH,
    "lightning_fabric": FABRIC,
    "lightning.fabric": FABRIC,
}
_LIGHTNING_TOP = "lightning"  # `import lightning as L`: L.Trainer, L.LightningModule, ..., L.pytorch, L.fabric
_CLAIMED_ROOTS = ("pytorch_lightning", "lightning_fabric", _LIGHTNING_TOP)
_SEE = "see docs/compatibility.md for what it offers instead"
_PACKAGES = frozenset((*_TABLES, _LIGHTNING_TOP))  # importing one of these applies Lightning's import-time settings


def alias_sources(fullname: str) -> Sources | None:
    """The fulgor sources behind the Lightning module `fullname` (see fulgor.lightning_paths), or None if the table
    has no such path."""
    if fullname == _LIGHTNING_TOP:
        return LIGHTNING
    for root, table in _TABLES.items():
        if fullname == root:
            return table[""]
        if fullname.startswith(root + "."):
            return table.get(fullname[len(root) + 1 :])
    return None


def _is_private_submodule(fullname: str) -> bool:
    """Whether `fullname` is a `_`-prefixed module inside an aliased Lightning package (e.g. `...utilities._pytree`)."""
    parent, _, last = fullname.rpartition(".")
    private = last.startswith("_") and not last.startswith("__")
    return private and (alias_sources(parent) is not None or _is_private_submodule(parent))


def _is_alias(fullname: str) -> bool:
    """Whether the finder answers the Lightning module `fullname` (asked by tools that layer their own finder on top,
    such as the lenient mode of the Lightning test-suite harness)."""
    sources = alias_sources(fullname)
    if sources is not None:
        return any(_module_exists(_parse(source)[0]) for source in sources)
    return _is_private_submodule(fullname)


def _parse(source: str) -> tuple[str, dict[str, str] | None]:
    """`"fulgor.m:A,_B=b"` -> ("fulgor.m", {"A": "A", "_B": "b"}); a bare module offers every public name (None)."""
    module, _, names = source.partition(":")
    if not names:
        return module, None
    pairs = (name.partition("=") for name in names.split(","))
    return module, {lightning: fulgor or lightning for lightning, _, fulgor in pairs}


def _module_exists(name: str) -> bool:
    """Whether fulgor module `name` exists, found without importing it or its packages (an alias stays free)."""
    if name in sys.modules:
        return True
    root, *parts = name.split(".")
    spec = importlib.util.find_spec(root)
    for part in parts:
        if spec is None or spec.submodule_search_locations is None:
            return False
        spec = importlib.machinery.PathFinder.find_spec(part, list(spec.submodule_search_locations))
    return spec is not None


def _import_source(name: str) -> types.ModuleType | None:
    """The fulgor module `name`, or None while it does not exist (a feature not built yet)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name is not None and (name == error.name or name.startswith(error.name + ".")):
            return None
        raise  # the module exists but something it imports is missing: a real error


def _offers(module: types.ModuleType, attr: str, fulgor_name: str, listed: bool) -> bool:
    """Whether `module` answers Lightning's `attr`: a name the table lists, if the module has it; otherwise a public
    name, or a private one the module exports by name in `__all__`."""
    if not listed and attr.startswith("_") and attr not in getattr(module, "__all__", ()):
        return False
    return hasattr(module, fulgor_name)


class _AliasModule(types.ModuleType):
    """A module standing for a Lightning module: attributes come from the fulgor modules behind it, submodules from
    the alias table, a missing private name is answered by fulgor.lightning_internals, and a missing public name is
    an AttributeError that says fulgor does not provide it."""

    def __init__(self, name: str, sources: Sources) -> None:
        super().__init__(name, f"fulgor alias of {', '.join(sources)}")
        self.__path__: list[str] = []  # a package: `import <alias>.<sub>` asks the finders
        self.__fulgor_sources__ = sources

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") and attr.endswith("__"):
            return self._dunder(attr)
        sub = f"{self.__name__}.{attr}"
        if alias_sources(sub) is not None:
            try:
                return importlib.import_module(sub)
            except ModuleNotFoundError:
                pass  # none of its sources exist yet: the name may still be an attribute below
        waiting = None
        for module, names in self._sources():
            fulgor_name = attr if names is None else names.get(attr)
            if fulgor_name is None:
                continue
            found = _import_source(module)
            if found is None:
                waiting = waiting or (NOT_BUILT.get(module) if names is not None else None)
            elif _offers(found, attr, fulgor_name, listed=names is not None):
                value = getattr(found, fulgor_name)
                self.__dict__[attr] = value  # later lookups skip this method
                return value
        if attr.startswith("_") or not self.__fulgor_sources__:  # a Lightning internal (or a name of a private
            # module): a flag's bool, or a stand-in that raises when used
            value = internal_stand_in(sub)
            self.__dict__[attr] = value
            return value
        reason = f"fulgor does not provide `{sub}`" + (f" yet: it waits for {waiting}" if waiting else "")
        raise AttributeError(f"module {self.__name__!r} has no attribute {attr!r}: {reason} ({_SEE})")

    def __setattr__(self, attr: str, value: Any) -> None:
        """Setting a public name (`mock.patch("lightning.pytorch.<module>.<name>")`, `monkeypatch.setattr`) also sets it
        in the fulgor modules that hold it (the one answering this alias and the one defining the object), so fulgor's
        code sees the patch as Lightning's would; they get their values back when the alias gets the original back or
        loses the name."""
        super().__setattr__(attr, value)
        if isinstance(value, types.ModuleType):
            return
        originals: dict[str, list[tuple[types.ModuleType, str, Any]]] = self.__dict__.setdefault(
            "__fulgor_originals__", {}
        )
        if attr not in originals:
            homes = self._fulgor_homes(attr)
            if not homes:
                return
            originals[attr] = [(module, name, getattr(module, name)) for module, name in homes]
        saved = originals[attr]
        for module, name, _ in saved:
            setattr(module, name, value)
        if value is saved[0][2]:
            del originals[attr]

    def __delattr__(self, attr: str) -> None:
        super().__delattr__(attr)
        for module, name, original in self.__dict__.get("__fulgor_originals__", {}).pop(attr, []):
            setattr(module, name, original)

    def _fulgor_homes(self, attr: str) -> list[tuple[types.ModuleType, str]]:
        """Where fulgor holds the object behind the public Lightning name `attr`: the module answering this alias and,
        when another fulgor module defines it (and calls it from there), that module."""
        home = self._fulgor_home(attr)
        if home is None:
            return []
        value = getattr(*home)
        defined_in = sys.modules.get(str(getattr(value, "__module__", "")))
        own_name = getattr(value, "__name__", None)
        if (
            defined_in is not None
            and defined_in is not home[0]
            and defined_in.__name__.startswith("fulgor.")
            and isinstance(own_name, str)
            and getattr(defined_in, own_name, None) is value
        ):
            return [home, (defined_in, own_name)]
        return [home]

    def _fulgor_home(self, attr: str) -> tuple[types.ModuleType, str] | None:
        """The fulgor module and name behind the public Lightning name `attr`, if a source of this alias offers it."""
        if attr.startswith("_") or "__fulgor_sources__" not in self.__dict__:
            return None
        for module, names in self._sources():
            fulgor_name = attr if names is None else names.get(attr)
            found = _import_source(module) if fulgor_name is not None else None
            if found is not None and fulgor_name is not None and _offers(found, attr, fulgor_name, names is not None):
                return found, fulgor_name
        return None

    def _dunder(self, attr: str) -> Any:
        if attr == "__version__":
            return LIGHTNING_VERSION
        if attr == "__all__":  # `from <alias> import *`
            return self._public_names()
        raise AttributeError(attr)

    def _sources(self) -> list[tuple[str, dict[str, str] | None]]:
        return [_parse(source) for source in self.__fulgor_sources__]

    def _public_names(self) -> list[str]:
        names: set[str] = set()
        for module, listed in self._sources():
            if listed is not None:
                names.update(listed)
                continue
            found = _import_source(module)
            if found is not None:
                exported = getattr(found, "__all__", None)
                public = exported if exported is not None else [n for n in vars(found) if not n.startswith("_")]
                names.update(n for n in public if not isinstance(getattr(found, n, None), types.ModuleType))
        return sorted(names)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._public_names()))


class _AliasLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        sources = alias_sources(spec.name)
        return _AliasModule(spec.name, () if sources is None else sources)  # () for a private module: stand-ins

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run: the alias reads its names from fulgor on demand. Importing (or reloading) a Lightning
        package applies Lightning's import-time settings again (`POSSIBLE_USER_WARNINGS`, NVML-based CUDA checks)."""
        if module.__name__ in _PACKAGES:
            apply_import_settings()
            # fulgor's log records now go to this package's loggers (`lightning` itself: to `lightning.pytorch`).
            route_to("lightning.pytorch" if module.__name__ == _LIGHTNING_TOP else module.__name__)


class LightningAliasFinder(importlib.abc.MetaPathFinder):
    """Answers imports of Lightning's module names with fulgor aliases; a Lightning module fulgor does not provide fails
    with a ModuleNotFoundError naming it (never a silent fall-through to an installed pytorch_lightning)."""

    _loader = _AliasLoader()

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.split(".", 1)[0] not in _CLAIMED_ROOTS:
            return None
        if _is_alias(fullname):  # a private module's names are all stand-ins (fulgor.lightning_internals)
            return importlib.machinery.ModuleSpec(fullname, self._loader, is_package=True)
        sources = alias_sources(fullname)
        reason = "does not provide it"
        if sources is not None:
            waiting = [NOT_BUILT[m] for m in dict.fromkeys(_parse(s)[0] for s in sources) if m in NOT_BUILT]
            reason = f"does not provide it yet: it waits for {', '.join(waiting) or 'a fulgor module not written yet'}"
        raise ModuleNotFoundError(
            f"No module named {fullname!r}: fulgor's Lightning compatibility layer {reason} ({_SEE})", name=fullname
        )


_FINDER = LightningAliasFinder()


def install() -> None:
    """Put the alias finder first on `sys.meta_path` (idempotent). Already-imported Lightning modules are evicted so
    the aliases answer from now on; `lightning_utilities`' `rank_zero_only.rank` is set, as importing Lightning does."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
    os.environ["FULGOR_COMPAT"] = "1"  # re-launched ranks (DDP) must run under the aliases too
    for name in [n for n in sys.modules if n.split(".", 1)[0] in _CLAIMED_ROOTS]:
        if not isinstance(sys.modules[name], _AliasModule):
            del sys.modules[name]
    sync_lightning_utilities()


def uninstall() -> None:
    """Remove the alias finder and the alias modules it created."""
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)
    os.environ.pop("FULGOR_COMPAT", None)
    for name in [n for n, m in sys.modules.items() if isinstance(m, _AliasModule)]:
        del sys.modules[name]
    unroute()


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
    if isinstance(error, ImportError) and error.name and error.name.split(".", 1)[0] in _CLAIMED_ROOTS:
        sys.stderr.write(
            f"fulgor run: the import above asks for a part of {error.name!r} that fulgor does not provide;"
            " see docs/compatibility.md.\n"
        )
