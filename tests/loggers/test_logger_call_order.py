"""What the Trainer asks of a logger before the `setup` hooks run, against pytorch-lightning 2.6.6 (oracle): only the
`experiment` read, so a logger that answers every attribute (a Mock, a proxy) records no method call before them."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock


def test_no_logger_method_is_called_before_setup(lib: ModuleType, tmp_path: Path) -> None:
    from importlib import import_module

    boring = import_module(f"{lib.__name__}.demos.boring_classes")
    seen: dict[str, Any] = {}

    class Observer(lib.Callback):  # type: ignore[name-defined,misc]
        def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
            seen["setup"] = list(trainer.logger.method_calls)

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            seen["train_start"] = [name for name, *_ in trainer.logger.method_calls]

    logger = mock.Mock()
    logger.version, logger.name, logger.save_dir = "0", "name", str(tmp_path)
    trainer = lib.Trainer(
        default_root_dir=tmp_path, logger=logger, callbacks=[Observer()], max_steps=1, limit_val_batches=0,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(boring.BoringModel())
    assert seen["setup"] == []
    assert seen["train_start"] == ["log_graph", "save"]
