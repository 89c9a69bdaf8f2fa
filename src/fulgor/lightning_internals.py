"""Lightning's private (`_`-prefixed) names that fulgor does not rebuild. Under the import aliases, an availability or
version flag (`_TENSORBOARD_AVAILABLE`, `_TORCH_GREATER_EQUAL_2_1`) answers with a real bool, and any other private
name with a stand-in class that raises `NotProvidedError` when used: a file that imports an internal at its top still
loads, and only the code that uses the internal fails, with a message saying so."""

from __future__ import annotations

import re
from typing import Any, NoReturn

from fulgor import available_packages
from fulgor.unavailable import NotProvidedError

__all__ = ["PUBLIC_INTERNALS", "internal_name", "internal_stand_in", "private_flag"]

# Names without a `_` that are internals all the same: the classes of Lightning's optimization loop, which fulgor runs
# as a closure function (fulgor.trainer.optimization). Name -> its Lightning module; the alias table maps them here.
PUBLIC_INTERNALS = {
    "AbstractClosure": "lightning.pytorch.loops.optimization.closure",
    "OutputResult": "lightning.pytorch.loops.optimization.closure",
    "Closure": "lightning.pytorch.loops.optimization.automatic",
    "ClosureResult": "lightning.pytorch.loops.optimization.automatic",
    "ManualResult": "lightning.pytorch.loops.optimization.manual",
}

_FLAG = re.compile(r"_([A-Z][A-Z0-9_]*?)_(AVAILABLE|GREATER_EQUAL_(\d+(?:_\d+)*))")
# Flag stems whose import name is not the stem in lower case.
_IMPORT_NAMES = {
    "COMET": "comet_ml",
    "JSONARGPARSE_SIGNATURES": "jsonargparse",
    "SKLEARN": "sklearn",
    "HYDRA": "hydra",
    "KINETO": "torch.profiler",
    "PSUTIL": "psutil",
}
# Flag stems whose distribution (for versions) is not the stem in lower case.
_DISTRIBUTIONS = {"COMET": "comet_ml", "SKLEARN": "scikit-learn", "HYDRA": "hydra-core"}


def private_flag(name: str) -> bool | None:
    """The value of Lightning's availability/version flag `name`, or None when `name` is not such a flag.

    fulgor's own table (fulgor.available_packages) answers first (it also holds the refused features, which are
    unavailable even where installed); other flags are derived from their name: `_X_AVAILABLE` asks whether package
    `x` is installed, `_X_GREATER_EQUAL_1_2` whether it is installed at version 1.2 or newer.
    """
    known = getattr(available_packages, name, None)
    if isinstance(known, bool):
        return known
    match = _FLAG.fullmatch(name)
    if match is None:
        return None
    stem, _, version = match.groups()
    if version is None:
        return available_packages.package_available(_IMPORT_NAMES.get(stem, stem.lower()).split(".")[0])
    distribution = _DISTRIBUTIONS.get(stem, stem.lower().replace("_", "-"))
    return available_packages.version_at_least(distribution, version.replace("_", "."))


def internal_name(qualified: str) -> str:
    """What using the Lightning internal `qualified` (e.g. "lightning.pytorch.loops._FitLoop") says."""
    private = any(part.startswith("_") for part in qualified.split("."))
    return (
        f"`{qualified}` is a Lightning internal{' (a `_`-prefixed name)' if private else ''}: fulgor answers its"
        " import so that the file loads, but does not rebuild Lightning's internals. Use the public API instead (see"
        " docs/compatibility.md)."
    )


class _StandInType(type):
    """Using the class itself (calling it, reading an attribute it lacks) raises; dunder lookups stay AttributeErrors
    so `hasattr`, `inspect` and `mock` probing the object behave as with any class."""

    __fulgor_internal__: str

    def __call__(cls, *args: Any, **kwargs: Any) -> NoReturn:
        raise NotProvidedError(internal_name(cls.__fulgor_internal__), name=cls.__fulgor_internal__)

    def __getattr__(cls, attr: str) -> NoReturn:
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        raise NotProvidedError(internal_name(f"{cls.__fulgor_internal__}.{attr}"), name=cls.__fulgor_internal__)


def internal_stand_in(qualified: str) -> Any:
    """What the import aliases return for the private Lightning name `qualified`: the flag's bool for a flag, else a
    stand-in class named after it whose use raises `NotProvidedError`."""
    module, _, name = qualified.rpartition(".")
    flag = private_flag(name)
    if flag is not None:
        return flag
    namespace = {"__module__": module, "__qualname__": name, "__doc__": internal_name(qualified)}
    namespace["__fulgor_internal__"] = qualified
    return _StandInType(name, (), namespace)


def __getattr__(name: str) -> Any:
    """The stand-ins of `PUBLIC_INTERNALS`, made on first access."""
    if name not in PUBLIC_INTERNALS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = internal_stand_in(f"{PUBLIC_INTERNALS[name]}.{name}")
    globals()[name] = value
    return value
