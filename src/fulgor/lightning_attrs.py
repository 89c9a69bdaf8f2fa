"""`lightning_hasattr/getattr/setattr`: an attribute looked up where Lightning's tuner looks for it -- the model, its
hparams, the Trainer's datamodule and the datamodule's hparams."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

__all__ = ["lightning_getattr", "lightning_hasattr", "lightning_setattr"]


def _trainer_of(model: Any) -> Any:
    try:
        return model.trainer
    except (AttributeError, RuntimeError):  # a LightningModule not attached to a Trainer raises RuntimeError
        return None


def _holders(model: Any, attribute: str) -> list[Any]:
    """Every object holding `attribute`: the model, its hparams, the datamodule, its hparams (in that order)."""
    owners = [model]
    trainer = _trainer_of(model)
    datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
    if datamodule is not None:
        owners.append(datamodule)
    holders: list[Any] = []
    for owner in owners:
        if hasattr(owner, attribute):
            holders.append(owner)
        hparams = getattr(owner, "hparams", None)
        if hparams is not None and attribute in hparams:
            holders.append(hparams)
    return holders


def _missing(attribute: str) -> AttributeError:
    return AttributeError(
        f"{attribute} is neither stored in the model namespace nor the `hparams` namespace/dict, nor the datamodule."
    )


def lightning_hasattr(model: Any, attribute: str) -> bool:
    """Whether the model, its hparams, the datamodule or the datamodule's hparams hold `attribute`."""
    return bool(_holders(model, attribute))


def lightning_getattr(model: Any, attribute: str) -> Any:
    """The value of `attribute` from the last of its holders (the datamodule's wins over the model's, as in
    Lightning).

    Raises:
        AttributeError: no holder has it.
    """
    holders = _holders(model, attribute)
    if not holders:
        raise _missing(attribute)
    holder = holders[-1]
    return holder[attribute] if isinstance(holder, MutableMapping) else getattr(holder, attribute)


def lightning_setattr(model: Any, attribute: str, value: Any) -> None:
    """Set `attribute` to `value` in every holder (model, hparams, datamodule, its hparams) that has it.

    Raises:
        AttributeError: no holder has it.
    """
    holders = _holders(model, attribute)
    if not holders:
        raise _missing(attribute)
    for holder in holders:
        if isinstance(holder, MutableMapping):
            holder[attribute] = value
        else:
            setattr(holder, attribute, value)
