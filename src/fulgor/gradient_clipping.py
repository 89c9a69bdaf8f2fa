"""The arguments of `LightningModule.clip_gradients` resolved against the Trainer's `gradient_clip_val` and
`gradient_clip_algorithm` flags, with Lightning's errors when the two disagree."""

from __future__ import annotations

from fulgor.errors import MisconfigurationException


def clip_value(trainer_value: float | None, value: float | None) -> float:
    """The clipping threshold: the call's, else the Trainer's, else 0 (no clipping)."""
    if value is None:
        return trainer_value or 0.0
    if trainer_value is not None and trainer_value != value:
        raise MisconfigurationException(
            f"You have set `Trainer(gradient_clip_val={trainer_value!r})`"
            f" and have passed `clip_gradients(gradient_clip_val={value!r})`."
            " Please use only one of them."
        )
    if not isinstance(value, (int, float)):
        raise TypeError(f"`gradient_clip_val` should be an int or a float. Got {value}.")
    return value


def clip_algorithm(trainer_value: str | None, value: str | None) -> str:
    """ "norm" or "value": the call's, else the Trainer's, else "norm"."""
    if value is None:
        return trainer_value or "norm"
    value = value.lower()
    if trainer_value is not None and trainer_value != value:
        raise MisconfigurationException(
            f"You have set `Trainer(gradient_clip_algorithm={trainer_value!r})`"
            f" and have passed `clip_gradients(gradient_clip_algorithm={value!r})"
            " Please use only one of them."
        )
    if value not in ("norm", "value"):
        raise MisconfigurationException(
            f"`gradient_clip_algorithm` {value} is invalid. Allowed algorithms: ['value', 'norm']."
        )
    return value
