"""Lightning's remaining warning and exception names: LightningDeprecationWarning, SIGTERMException, and
disable_possible_user_warnings (fulgor.errors holds MisconfigurationException and PossibleUserWarning)."""

from __future__ import annotations

import warnings

from fulgor.errors import PossibleUserWarning

__all__ = ["LightningDeprecationWarning", "SIGTERMException", "disable_possible_user_warnings"]


class LightningDeprecationWarning(DeprecationWarning):
    """A Lightning API that still works but will be removed (the category of `rank_zero_deprecation`)."""


# Python hides DeprecationWarnings raised outside `__main__`; Lightning shows its own, and so does fulgor.
warnings.simplefilter("default", category=LightningDeprecationWarning)


class SIGTERMException(SystemExit):
    """The process received SIGTERM. A SystemExit, so an uncaught one ends the program quietly; `Callback.on_exception`
    receives it first (e.g. `OnExceptionCheckpoint` saves a checkpoint)."""


def disable_possible_user_warnings(module: str = "") -> None:
    """Silence `PossibleUserWarning`s (warnings about likely, but not certain, mistakes).

    Args:
        module: a regular expression matched against the start of the warning's module name; "" (the default)
            silences them everywhere.
    """
    warnings.filterwarnings("ignore", category=PossibleUserWarning, module=module)
