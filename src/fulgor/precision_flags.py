"""The `precision` flag's accepted values (Lightning's tuple) and their normalisation to the canonical names
("64-true", "32-true", "16-mixed", "bf16-mixed", ...), shared by the Trainer and Fabric."""

from __future__ import annotations

from fulgor.rank import rank_zero_warn

__all__ = ["ALLOWED_PRECISIONS", "normalize_precision", "unified_precision"]

# Lightning's tuple, in its order: the invalid-value error prints it verbatim.
ALLOWED_PRECISIONS: tuple[str | int, ...] = (
    "transformer-engine",
    "transformer-engine-float16",
    "16-true",
    "16-mixed",
    "bf16-true",
    "bf16-mixed",
    "32-true",
    "64-true",
    64,
    32,
    16,
    "64",
    "32",
    "16",
    "bf16",
)
_LEGACY = {"64": "64-true", "32": "32-true", "16": "16-mixed", "bf16": "bf16-mixed"}


def unified_precision(value: str | int) -> str:
    """The canonical name of a `precision` value: 64 → "64-true", 32 → "32-true", 16 → "16-mixed", "bf16" →
    "bf16-mixed" (16 and "bf16" with Lightning's "supported for historical reasons" warning), others as they are.

    Raises:
        ValueError: a value not in `ALLOWED_PRECISIONS` (Lightning's message).
    """
    # `type` rather than isinstance: True == 1 and 16.0 == 16, but neither is a precision.
    if type(value) not in (int, str) or value not in ALLOWED_PRECISIONS:
        raise ValueError(f"Precision {value!r} is invalid. Allowed precision values: {ALLOWED_PRECISIONS}")
    name = str(value)
    if name in _LEGACY:
        if name in ("16", "bf16"):
            rank_zero_warn(
                f"`precision={name}` is supported for historical reasons but its usage is discouraged. "
                f"Please set your precision to {_LEGACY[name]} instead!"
            )
        name = _LEGACY[name]
    return name


def normalize_precision(value: str | int | None, accelerator: str) -> str:
    """Turn the `precision` Trainer flag into its canonical string, as `trainer.precision` reports it.

    Legacy values map as `unified_precision` says. "16-mixed" on CPU becomes "bf16-mixed" with a warning, because fp16
    autocast is not supported there.

    Args:
        value: the flag: None (→ "32-true"), one of `ALLOWED_PRECISIONS`.
        accelerator: the resolved device type ("cpu", "cuda", "mps").

    Raises:
        ValueError: a value not in `ALLOWED_PRECISIONS` (Lightning's message).
        NotImplementedError: "transformer-engine*", which fulgor does not implement.
    """
    if value is None:
        return "32-true"
    name = unified_precision(value)
    if name.startswith("transformer-engine"):
        raise NotImplementedError(
            f"`Trainer(precision={value!r})` needs NVIDIA Transformer Engine, which fulgor does not support. Use"
            " `precision='bf16-mixed'` or `'16-mixed'` instead."
        )
    if name == "16-mixed" and accelerator == "cpu":
        rank_zero_warn(
            "You passed `Trainer(accelerator='cpu', precision='16-mixed')` but AMP with fp16 is not supported on CPU."
            " Using `precision='bf16-mixed'` instead."
        )
        name = "bf16-mixed"
    return name
