"""Call-depth contract: a user's step is reached through few fulgor frames (Lightning 2.6.6: 22 for fit, 10 for
validate/test/predict), so tracebacks stay short and the per-step overhead stays small."""

from __future__ import annotations

import sys
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

import fulgor
from helpers.boring import trace_model_class

FULGOR_DIR = str(Path(fulgor.__file__).resolve().parent)
LIMITS = {"fit": 7, "validate": 5, "test": 5, "predict": 5}
STEPS = {"fit": "training_step", "validate": "validation_step", "test": "test_step", "predict": "predict_step"}


def fulgor_chain(step_frame: FrameType, entry: str) -> list[str]:
    """The fulgor frames from `Trainer.<entry>` (inclusive) down to the step's caller, outermost first."""
    chain: list[str] = []
    frame = step_frame.f_back
    while frame is not None:
        filename = str(Path(frame.f_code.co_filename).resolve())
        if filename.startswith(FULGOR_DIR):
            chain.append(f"{Path(filename).relative_to(FULGOR_DIR)}:{frame.f_code.co_name}")
            if frame.f_code.co_name == entry and filename.endswith("trainer.py"):
                return chain[::-1]
        frame = frame.f_back
    raise AssertionError(f"`Trainer.{entry}` is not on the stack: {chain[::-1]}")


class DepthModel(trace_model_class(fulgor)):  # type: ignore[misc]
    def __init__(self, entry: str) -> None:
        super().__init__()
        self.entry = entry
        self.chains: list[list[str]] = []

    def _record(self) -> None:
        self.chains.append(fulgor_chain(sys._getframe(1), self.entry))

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        self._record()
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
        self._record()
        return super().validation_step(batch, batch_idx)

    def test_step(self, batch: Any, batch_idx: int) -> Any:
        self._record()
        return super().test_step(batch, batch_idx)

    def predict_step(self, batch: Any, batch_idx: int) -> Any:
        self._record()
        return super().predict_step(batch, batch_idx)


@pytest.mark.parametrize("entry", ["fit", "validate", "test", "predict"])
def test_call_depth(tmp_path: Path, entry: str) -> None:
    model = DepthModel(entry)
    trainer = fulgor.Trainer(
        max_epochs=1, limit_train_batches=2, num_sanity_val_steps=0, limit_val_batches=0 if entry == "fit" else 2,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    getattr(trainer, entry)(model)
    assert model.chains, f"{STEPS[entry]} never ran"
    chain = max(model.chains, key=len)
    assert len(chain) <= LIMITS[entry], (
        f"{len(chain)} fulgor frames from Trainer.{entry} to {STEPS[entry]} (limit {LIMITS[entry]}):\n  "
        + "\n  ".join(chain)
    )
