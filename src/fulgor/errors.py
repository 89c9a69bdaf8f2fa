"""Exception and warning types raised by fulgor (named as in Lightning, so user code that catches them works)."""

from __future__ import annotations


class MisconfigurationException(Exception):
    """A flag, hook or argument was configured in a way that cannot work; the message names it and the fix."""


class PossibleUserWarning(UserWarning):
    """A warning about something that is probably, but not certainly, a mistake."""
