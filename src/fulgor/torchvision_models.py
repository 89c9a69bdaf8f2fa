"""`get_torchvision_model`: a torchvision model by name (torchvision imported only when called)."""

from __future__ import annotations

from typing import Any

from torch import nn

from fulgor.available_packages import package_available

__all__ = ["get_torchvision_model"]


def get_torchvision_model(model_name: str, **kwargs: Any) -> nn.Module:
    """`torchvision.models.get_model(model_name, **kwargs)`, e.g. `get_torchvision_model("resnet18", weights=None)`.

    Raises:
        ModuleNotFoundError: torchvision is not installed.
    """
    if not package_available("torchvision"):
        raise ModuleNotFoundError(
            f"get_torchvision_model({model_name!r}) needs torchvision: `pip install torchvision`.", name="torchvision"
        )
    from torchvision import models  # optional third-party package

    model: nn.Module = models.get_model(model_name, **kwargs)
    return model
