"""Lightning's remaining warning and exception names: LightningDeprecationWarning, SIGTERMException, and
disable_possible_user_warnings, and the settings importing Lightning applies (the `POSSIBLE_USER_WARNINGS` switch,
NVML-based CUDA checks); fulgor.errors holds MisconfigurationException and PossibleUserWarning."""

from __future__ import annotations

import os
import warnings

from fulgor.errors import PossibleUserWarning

# Lightning's names only: the Lightning import aliases offer this module's `__all__` (the setting's function below is
# fulgor's own).
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


def apply_possible_user_warnings_setting() -> bool:
    """Silence `PossibleUserWarning`s when the environment variable `POSSIBLE_USER_WARNINGS` is "0" or "off" (any
    case), as importing Lightning does; run when fulgor is imported.

    Returns:
        Whether the variable turned them off.
    """
    if os.environ.get("POSSIBLE_USER_WARNINGS", "").lower() not in ("0", "off"):
        return False
    disable_possible_user_warnings()
    return True


def apply_import_settings() -> None:
    """What importing Lightning sets up, applied when fulgor (or a Lightning package under the aliases) is imported:
    the `POSSIBLE_USER_WARNINGS` switch, and NVML-based CUDA checks (`PYTORCH_NVML_BASED_CUDA_CHECK=1`: torch then
    answers `torch.cuda.is_available()` without initialising CUDA, so the process can still fork workers)."""
    apply_possible_user_warnings_setting()
    os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"


apply_import_settings()
