"""Run by test_api_walk.py in a subprocess (not a test module): list the oracle's public surface as
/work/notes/walk_surface.py does (every importable module of pytorch_lightning and lightning_fabric whose path has no
`_`-prefixed part; its `__all__`, else the public classes/functions it defines), then evict the real packages, install
fulgor's aliases and check every module and name through each of its roots. Prints one JSON object:
`{module: {"roots": {root_path: error_or_null}, "names": {name: error_or_null}}}`."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import sys
from typing import Any

ROOTS = {
    "pytorch_lightning": ("pytorch_lightning", "lightning.pytorch"),
    "lightning_fabric": ("lightning_fabric", "lightning.fabric"),
}
CLAIMED = ("pytorch_lightning", "lightning_fabric", "lightning")


def public_modules(package: str) -> list[str]:
    root = importlib.import_module(package)
    found = [package]
    for info in pkgutil.walk_packages(root.__path__, package + "."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            found.append(info.name)
    return found


def public_names(module_name: str) -> list[str] | None:
    try:
        module = importlib.import_module(module_name)
    except Exception:
        return None  # not importable in the oracle either: not part of the surface
    if hasattr(module, "__all__"):
        return sorted(set(module.__all__))
    return sorted(
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", None) == module_name
    )


def oracle_surface() -> dict[str, list[str]]:
    surface: dict[str, list[str]] = {}
    for package in ROOTS:
        for module in public_modules(package):
            names = public_names(module)
            if names is not None:
                surface[module] = names
    return surface


def check_module(path: str, names: list[str], compat: Any) -> tuple[str | None, dict[str, str | None]]:
    try:
        module = importlib.import_module(path)
    except Exception as error:
        return f"{type(error).__name__}: {error}", {}
    spec = getattr(module, "__spec__", None)
    if spec is None or spec.loader is not compat.LightningAliasFinder._loader or getattr(module, "__file__", None):
        return f"not an alias module: {module!r} came from {getattr(module, '__file__', spec)}", {}
    results: dict[str, str | None] = {}
    for name in names:
        try:
            getattr(module, name)
            results[name] = None
        except Exception as error:
            results[name] = f"{type(error).__name__}: {error}"
    return None, results


def main() -> None:
    surface = oracle_surface()
    for name in [n for n in sys.modules if n.split(".", 1)[0] in CLAIMED]:
        del sys.modules[name]  # the real packages become unreachable: only the alias finder answers from here on
    import fulgor.compat as compat

    compat.install()
    report: dict[str, Any] = {}
    for module, names in surface.items():
        package, _, rest = module.partition(".")
        entry: dict[str, Any] = {"roots": {}, "names": dict.fromkeys(names)}
        for root in ROOTS[package]:
            path = f"{root}.{rest}" if rest else root
            error, name_results = check_module(path, names, compat)
            entry["roots"][path] = error
            for name, problem in name_results.items():
                entry["names"][name] = entry["names"][name] or problem
            if error:
                entry["names"] = {name: entry["names"][name] or "module unresolved" for name in names}
        report[module] = entry
    leaked = sorted(n for n, m in sys.modules.items() if n.split(".", 1)[0] in CLAIMED and getattr(m, "__file__", None))
    json.dump({"surface": report, "leaked_real_modules": leaked}, sys.stdout)


if __name__ == "__main__":
    main()
