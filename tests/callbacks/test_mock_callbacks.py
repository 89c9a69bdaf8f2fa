"""Duck-typed callbacks (`Mock(spec=Callback)`, a pattern of users' own tests): every hook is called on them, in
Lightning's order, and they pass the Trainer's checks (state keys, ordering). Pinned against pytorch-lightning 2.6.6
(oracle): both give the same recorded calls."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest.mock import Mock

_VALIDATION = [
    "on_validation_start", "on_validation_epoch_start", "on_validation_batch_start", "on_validation_batch_end",
    "on_validation_epoch_end", "on_validation_end",
]  # fmt: skip
_BATCH = [
    "on_train_batch_start", "on_before_zero_grad", "on_before_backward", "on_after_backward",
    "on_before_optimizer_step", "on_train_batch_end",
]  # fmt: skip
EXPECTED = [
    "setup", "on_fit_start", "on_sanity_check_start", *_VALIDATION, "on_sanity_check_end", "on_train_start",
    "on_train_epoch_start", *_BATCH, *_BATCH, *_VALIDATION, "on_train_epoch_end", "on_train_end", "on_fit_end",
    "teardown", "setup", *_VALIDATION, "teardown",
]  # fmt: skip


def test_mock_callback_receives_every_hook_in_order(lib: ModuleType, tmp_path: Path) -> None:
    boring = import_module(f"{lib.__name__}.demos.boring_classes")
    callback = Mock(spec=lib.Callback)
    trainer = lib.Trainer(
        default_root_dir=tmp_path, callbacks=[callback], limit_train_batches=2, limit_val_batches=1, max_epochs=1,
        enable_progress_bar=False, enable_model_summary=False, logger=False, enable_checkpointing=False,
    )  # fmt: skip
    trainer.fit(boring.BoringModel())
    trainer.validate(boring.BoringModel(), verbose=False)
    assert [name for name, *_ in callback.method_calls] == EXPECTED


def test_mock_callbacks_from_configure_callbacks_are_appended_once(lib: ModuleType, tmp_path: Path) -> None:
    boring = import_module(f"{lib.__name__}.demos.boring_classes")
    from_model = Mock(spec=lib.Callback)

    class Model(boring.BoringModel):  # type: ignore[misc,name-defined]
        def configure_callbacks(self) -> Any:
            return from_model

    trainer = lib.Trainer(default_root_dir=tmp_path, fast_dev_run=True, enable_checkpointing=False)
    before = list(trainer.callbacks)
    trainer.fit(Model())
    trainer.validate(Model())
    trainer.validate(Model())
    assert trainer.callbacks == [*before, from_model]
    assert [name for name, *_ in from_model.method_calls].count("setup") == 3
