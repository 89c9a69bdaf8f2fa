"""SpikeDetection (the Trainer callback and Fabric's detector) and TrainingSpikeException: which loss is a spike,
the file of batches to skip, and the state dict, compared with pytorch-lightning 2.6.6 / lightning_fabric."""

from __future__ import annotations

import json
import math
import random
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

import fulgor
from fulgor.callbacks import SpikeDetection
from fulgor.callbacks.spike import TrainingSpikeException
from fulgor.callbacks.spike_detector import SpikeDetection as FabricSpikeDetection
from helpers.boring import boring_classes


class _Strategy:
    root_device = torch.device("cpu")

    def barrier(self) -> None:
        pass

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        return decision


FABRIC = SimpleNamespace(strategy=_Strategy(), global_rank=0)


def _run_detector(detector: Any, losses: list[float]) -> tuple[str, int, list[int]] | None:
    """Feed `losses` as batches 0, 1, ...; the exception, the batch and the file's content at the first spike."""
    for batch_idx, loss in enumerate(losses):
        try:
            detector.on_train_batch_end(FABRIC, torch.tensor(loss), None, batch_idx)
        except Exception as err:
            skipped = json.loads(Path(detector.exclude_batches_path).read_text())
            return type(err).__name__, batch_idx, skipped
    return None


def _random_case(seed: int) -> tuple[list[float], dict[str, Any]]:
    rng = random.Random(seed)
    losses = [rng.uniform(0.5, 1.5) for _ in range(25)]
    spike_at = rng.randrange(2, 25)
    losses[spike_at] *= rng.choice([1.5, 3.0, 10.0, math.nan, math.inf])
    options = {
        "window": rng.choice([2, 5, 10]),
        "warmup": rng.choice([0, 1, 3]),
        "atol": rng.choice([None, 0.5]),
        "rtol": rng.choice([None, 2.0, 0.5]),
        "mode": rng.choice(["min", "max"]),
        "finite_only": rng.choice([True, False]),
    }
    return losses, options


@pytest.mark.oracle
@pytest.mark.parametrize("seed", range(60))
def test_detector_flags_the_same_batch_as_lightning_fabric(seed: int, tmp_path: Path) -> None:
    spike = pytest.importorskip("lightning_fabric.utilities.spike")
    losses, options = _random_case(seed)
    ours = _run_detector(FabricSpikeDetection(exclude_batches_path=tmp_path / "f", **options), losses)
    theirs = _run_detector(spike.SpikeDetection(exclude_batches_path=tmp_path / "l", **options), losses)
    assert ours == theirs, (options, losses)


def test_detector_rules(tmp_path: Path) -> None:
    # A steady loss, then one three times the running mean: batches 4 and 5 are skipped.
    detector = FabricSpikeDetection(window=3, exclude_batches_path=tmp_path)
    assert _run_detector(detector, [1.0, 1.0, 1.0, 1.0, 1.0, 3.5]) == ("TrainingSpikeException", 5, [4, 5])
    # An improvement is never a spike; a NaN is one unless `finite_only=False`.
    assert _run_detector(FabricSpikeDetection(exclude_batches_path=tmp_path), [5.0, 1.0, 0.01]) is None
    assert _run_detector(FabricSpikeDetection(exclude_batches_path=tmp_path), [1.0, math.nan])[1] == 1  # type: ignore[index]
    assert (
        _run_detector(FabricSpikeDetection(exclude_batches_path=tmp_path, finite_only=False), [1.0, math.nan]) is None
    )
    # Under `atol` no spike, even far above `rtol`.
    assert _run_detector(FabricSpikeDetection(atol=10.0, exclude_batches_path=tmp_path), [1.0, 1.0, 5.0]) is None
    with pytest.raises(ValueError, match="mode='avg'"):
        FabricSpikeDetection(mode="avg")  # type: ignore[arg-type]


def test_exception_message() -> None:
    assert str(TrainingSpikeException(batch_idx=7)) == "Training spike detected in batch 7"
    assert issubclass(TrainingSpikeException, RuntimeError)


def _fit_with_spike(lib: Any, root: Path, spike_batch: int) -> tuple[str, list[int], int]:
    classes = boring_classes(lib)

    class Spiky(classes.BoringModel):  # type: ignore[misc,name-defined]
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            out = super().training_step(batch, batch_idx)
            scale = 100.0 if self.trainer.global_step == spike_batch else 1.0
            return {"loss": out["loss"] * scale}

    callback = (lib.callbacks.SpikeDetection if hasattr(lib.callbacks, "SpikeDetection") else SpikeDetection)()
    trainer = lib.Trainer(
        max_epochs=1, limit_train_batches=8, limit_val_batches=0, logger=False, enable_progress_bar=False,
        enable_checkpointing=False, enable_model_summary=False, default_root_dir=root, callbacks=[callback],
    )  # fmt: skip
    torch.manual_seed(0)
    model = Spiky()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError) as raised:  # TrainingSpikeException (each library's own class)
            trainer.fit(model)
    skipped = json.loads((root / "skip_batches.json").read_text())
    return type(raised.value).__name__, skipped, trainer.global_step


def test_callback_stops_the_fit_and_writes_the_batches_to_skip(tmp_path: Path) -> None:
    # The optimizer stepped on the spiking batch before `on_train_batch_end` saw its loss: 6 steps.
    assert _fit_with_spike(fulgor, tmp_path, spike_batch=5) == ("TrainingSpikeException", [4, 5], 6)


@pytest.mark.oracle
def test_callback_matches_lightning_in_a_fit(tmp_path: Path) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    assert _fit_with_spike(fulgor, tmp_path / "f", 5) == _fit_with_spike(pl, tmp_path / "l", 5)


def test_callback_rejects_outputs_without_a_loss(tmp_path: Path) -> None:
    callback = SpikeDetection(exclude_batches_path=tmp_path)
    with pytest.raises(TypeError, match="Mapping, got list"):
        callback.on_train_batch_end(None, None, [1.0], None, 0)  # type: ignore[arg-type]


@pytest.mark.oracle
def test_state_dict_keys_match_lightnings(tmp_path: Path) -> None:
    spike = pytest.importorskip("lightning_fabric.utilities.spike")
    ours, theirs = FabricSpikeDetection(), spike.SpikeDetection()
    _run_detector(ours, [1.0, 0.5])
    _run_detector(theirs, [1.0, 0.5])
    assert ours.state_dict() == theirs.state_dict()
    restored = FabricSpikeDetection(mode="max")
    restored.load_state_dict(ours.state_dict())  # Lightning's own load_state_dict raises AttributeError here
    assert (restored.mode, restored.last_val, restored.bad_batches) == ("min", 0.5, [])
