"""Helpers shared by the TensorBoard, MLflow and W&B loggers: hyperparameter flattening/sanitizing, metric prefixes,
and finding checkpoints a logger has not uploaded yet."""

from __future__ import annotations

import os
from argparse import Namespace
from collections.abc import Mapping, MutableMapping
from dataclasses import asdict, is_dataclass
from typing import Any

from torch import Tensor

__all__ = ["add_prefix", "convert_params", "flatten_dict", "sanitize_params", "scan_checkpoints"]


def convert_params(params: Mapping[str, Any] | Namespace | None) -> dict[str, Any]:
    """A dict copy of ``params`` (``None`` -> ``{}``, a Namespace -> its attributes)."""
    if params is None:
        return {}
    return dict(vars(params) if isinstance(params, Namespace) else params)


def flatten_dict(params: Mapping[Any, Any], delimiter: str = "/", parent: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "l": [{"c": 2}]}`` -> ``{"a/b": 1, "l/0/c": 2}`` (Namespaces and dataclasses too)."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{parent}{delimiter}{key}" if parent else str(key)
        if is_dataclass(value) and not isinstance(value, type):
            value = asdict(value)
        elif isinstance(value, Namespace):
            value = vars(value)
        if isinstance(value, MutableMapping):
            flat.update(flatten_dict(value, delimiter, name))
        elif isinstance(value, list) and value and all(isinstance(item, MutableMapping) for item in value):
            for i, item in enumerate(value):
                flat.update(flatten_dict(item, delimiter, f"{name}{delimiter}{i}"))
        else:
            flat[name] = value
    return flat


def sanitize_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Keep bool/int/float/str/Tensor values (numpy scalars become Python numbers); everything else becomes ``str``."""
    clean: dict[str, Any] = {}
    for key, value in params.items():
        if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
            value = value.item()
        clean[key] = value if type(value) in (bool, int, float, str, Tensor) else str(value)
    return clean


def add_prefix(metrics: Mapping[str, Any], prefix: str, separator: str) -> Mapping[str, Any]:
    """``{"loss": 1}`` -> ``{"<prefix><separator>loss": 1}``; unchanged when ``prefix`` is empty."""
    if not prefix:
        return metrics
    return {f"{prefix}{separator}{key}": value for key, value in metrics.items()}


def scan_checkpoints(checkpoint_callback: Any, logged: Mapping[str, float]) -> list[tuple[float, str, Any, str]]:
    """Checkpoints of a ModelCheckpoint that are new or rewritten since ``logged`` (path -> mtime when uploaded).

    Returns:
        ``(mtime, path, score, tag)`` sorted by mtime, where tag is ``"latest"``, ``"best"`` or ``"best_k"``.
    """
    # Lightning's precedence for a path in several roles: best_k over best over latest; a best path counts even
    # without a score (ModelCheckpoint without `monitor` keeps its latest checkpoint as the "best").
    found: dict[str, tuple[Any, str]] = {}
    last = getattr(checkpoint_callback, "last_model_path", "")
    if last:
        found[last] = (getattr(checkpoint_callback, "current_score", None), "latest")
    best = getattr(checkpoint_callback, "best_model_path", "")
    if best:
        found[best] = (getattr(checkpoint_callback, "best_model_score", None), "best")
    for path, score in (getattr(checkpoint_callback, "best_k_models", None) or {}).items():
        found[path] = (score, "best_k")
    fresh = []
    for path, (score, tag) in found.items():
        if not os.path.isfile(path):
            continue
        mtime = os.path.getmtime(path)
        if path not in logged or logged[path] < mtime:
            fresh.append((mtime, path, score, tag))
    return sorted(fresh)
