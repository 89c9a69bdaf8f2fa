"""Run code as on a core-only install (`pip install fulgor` without extras): the optional packages that change
fulgor's defaults (rich → the rich progress bar and summary, tensorboard → the default logger) are hidden.

In-process: `hide_optional(monkeypatch)`. For a script: `python tests/helpers/core_only.py SCRIPT [ARGS]`.
"""

from __future__ import annotations

import importlib.util
import runpy
import sys
from typing import Any

OPTIONAL = ("rich", "tensorboard", "tensorboardX")


def _hidden(name: str) -> bool:
    return name.split(".")[0] in OPTIONAL


def hide_optional(monkeypatch: Any) -> None:
    """Make `importlib.util.find_spec` report the optional packages as absent (how fulgor decides its defaults)."""
    real = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> Any:
        return None if _hidden(name) else real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


class _Blocker:
    """A meta path finder that makes the optional packages unimportable (and invisible to find_spec)."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if _hidden(name):
            raise ModuleNotFoundError(f"No module named {name!r} (hidden by tests/helpers/core_only.py)")
        return None


class _Patch:
    """The smallest stand-in for pytest's monkeypatch that `hide_optional` needs."""

    @staticmethod
    def setattr(target: Any, name: str, value: Any) -> None:
        setattr(target, name, value)


def main() -> None:
    hide_optional(_Patch())  # find_spec reports them absent (fulgor's defaults are decided this way)
    sys.meta_path.insert(0, _Blocker())  # and a direct import fails
    script, *args = sys.argv[1:]
    sys.argv = [script, *args]
    sys.path.insert(0, str(__import__("pathlib").Path(script).resolve().parent))
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
