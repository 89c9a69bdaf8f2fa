"""Lightning's deprecated `*PrecisionPlugin` names (renamed `*Precision` in 2.2): each is the renamed class, and
building one emits Lightning's deprecation warning."""

from __future__ import annotations

from typing import Any

from fulgor.lightning_errors import LightningDeprecationWarning
from fulgor.precision import DoublePrecision, FSDPPrecision, HalfPrecision, MixedPrecision, Precision
from fulgor.rank import rank_zero_warn

__all__ = [
    "DoublePrecisionPlugin",
    "FSDPMixedPrecisionPlugin",
    "FSDPPrecisionPlugin",
    "HalfPrecisionPlugin",
    "MixedPrecisionPlugin",
    "PrecisionPlugin",
]


def _warn_renamed(old: str, new: str) -> None:
    rank_zero_warn(
        f"The `{old}` is deprecated. Use `pytorch_lightning.plugins.precision.{new}` instead.",
        LightningDeprecationWarning,
    )


class PrecisionPlugin(Precision):
    """Deprecated name of `Precision`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _warn_renamed("PrecisionPlugin", "Precision")
        super().__init__(*args, **kwargs)


class DoublePrecisionPlugin(DoublePrecision):
    """Deprecated name of `DoublePrecision`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _warn_renamed("DoublePrecisionPlugin", "DoublePrecision")
        super().__init__(*args, **kwargs)


class HalfPrecisionPlugin(HalfPrecision):
    """Deprecated name of `HalfPrecision`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _warn_renamed("HalfPrecisionPlugin", "HalfPrecision")
        super().__init__(*args, **kwargs)


class MixedPrecisionPlugin(MixedPrecision):
    """Deprecated name of `MixedPrecision`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _warn_renamed("MixedPrecisionPlugin", "MixedPrecision")
        super().__init__(*args, **kwargs)


class FSDPPrecisionPlugin(FSDPPrecision):
    """Deprecated name of `FSDPPrecision`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _warn_renamed("FSDPPrecisionPlugin", "FSDPPrecision")
        super().__init__(*args, **kwargs)


class FSDPMixedPrecisionPlugin(FSDPPrecision):
    """Deprecated name of `FSDPPrecision` in its mixed-precision form (`device` is accepted and not needed)."""

    def __init__(self, precision: Any, device: str | None = None, *args: Any, **kwargs: Any) -> None:
        _warn_renamed("FSDPMixedPrecisionPlugin", "FSDPPrecision")
        super().__init__(precision, *args, **kwargs)
