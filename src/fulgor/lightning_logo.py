"""The logo `pytorch_lightning.cli_lightning_logo()` prints (fulgor's own drawing of a lightning bolt)."""

from __future__ import annotations

__all__ = ["LIGHTNING_LOGO", "cli_lightning_logo"]

LIGHTNING_LOGO = r"""
        ______
       /     /
      /     /____
     /__       /
       /     /
      /    /
     /   /
    /  /
   / /
  //
"""

_MAGENTA, _RESET = "\033[0;35m", "\033[0m"


def cli_lightning_logo() -> None:
    """Print the logo in magenta (as Lightning's command-line tools do before they start)."""
    print(_MAGENTA + LIGHTNING_LOGO + _RESET)  # noqa: T201 (printing is what it is for)
