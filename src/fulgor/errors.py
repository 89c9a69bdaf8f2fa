"""Exception and warning types raised by fulgor (named as in Lightning, so user code that catches them works)."""

from __future__ import annotations


class MisconfigurationException(Exception):
    """A flag, hook or argument was configured in a way that cannot work; the message names it and the fix."""


class PossibleUserWarning(UserWarning):
    """A warning about something that is probably, but not certainly, a mistake."""


class ConfigurationTypeError(MisconfigurationException, TypeError):
    """A value of the wrong type that Lightning reports as `MisconfigurationException` (fulgor's own checks raise
    `TypeError` for a wrong type): catching either works."""


class ConfigurationValueError(MisconfigurationException, ValueError):
    """A misconfiguration that Lightning's Trainer reports as `MisconfigurationException` and Lightning Fabric as
    `ValueError` (fulgor's classes serve both): catching either works."""
