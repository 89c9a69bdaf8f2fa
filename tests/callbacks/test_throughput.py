"""Throughput, Fabric's ThroughputMonitor, measure_flops, get_available_flops and the ThroughputMonitor callback:
numbers, keys and logging steps compared with lightning_fabric / pytorch-lightning 2.6.6."""

from __future__ import annotations

import random
import warnings
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
import torch

import fulgor
from fulgor.callbacks import ThroughputMonitor
from fulgor.throughput import Throughput, compute_dtype, get_available_flops, measure_flops
from fulgor.throughput import ThroughputMonitor as FabricThroughputMonitor
from helpers.boring import boring_classes


def _feed(throughput: Any, seed: int) -> list[dict[str, float]]:
    rng = random.Random(seed)
    elapsed = batches = samples = lengths = 0.0
    results = []
    for _ in range(rng.randrange(1, 10)):
        elapsed += rng.uniform(0.1, 1.0)
        batches += 1
        samples += rng.randrange(1, 5)
        lengths += rng.randrange(5, 20)
        throughput.update(
            time=elapsed, batches=int(batches), samples=int(samples),
            lengths=int(lengths) if seed % 2 else None, flops=rng.randrange(1, 100) if seed % 3 else None,
        )  # fmt: skip
        results.append(throughput.compute())
    return results


def test_throughput_rates() -> None:
    throughput = Throughput(window_size=2, available_flops=100.0)
    throughput.update(time=1.0, batches=1, samples=4, flops=50)
    assert throughput.compute() == {"time": 1.0, "batches": 1, "samples": 4}
    throughput.update(time=3.0, batches=2, samples=8, flops=50)
    assert throughput.compute() == {
        "time": 3.0, "batches": 2, "samples": 8, "device/batches_per_sec": 0.5, "device/samples_per_sec": 2.0,
        "device/flops_per_sec": 25.0, "device/mfu": 0.25,
    }  # fmt: skip
    with pytest.raises(ValueError, match=r"Expected the value to increase, last: 3\.0, current: 2\.0"):
        throughput.update(time=2.0, batches=3, samples=12)
    with pytest.raises(ValueError, match=r"Expected samples \(1\) to be greater or equal than batches \(4\)"):
        throughput.update(time=4.0, batches=4, samples=1)
    with pytest.raises(ValueError, match="window_size=1"):
        Throughput(window_size=1)


@pytest.mark.oracle
@pytest.mark.parametrize("seed", range(40))
def test_throughput_equals_lightning_fabrics(seed: int) -> None:
    fabric_throughput = pytest.importorskip("lightning_fabric.utilities.throughput")
    rng = random.Random(1000 + seed)
    options = {"world_size": rng.choice([1, 2, 4]), "window_size": rng.choice([2, 3, 5]),
               "available_flops": rng.choice([None, 1e3])}  # fmt: skip
    ours = _feed(Throughput(**options), seed)
    theirs = _feed(fabric_throughput.Throughput(**options), seed)
    assert [sorted(r) for r in ours] == [sorted(r) for r in theirs]
    for mine, reference in zip(ours, theirs):
        assert mine == pytest.approx(reference, rel=1e-12)


def test_measure_flops_counts_forward_and_backward() -> None:
    model = torch.nn.Linear(8, 4)
    x = torch.randn(3, 8)
    assert measure_flops(model, lambda: model(x)) == 2 * 3 * 8 * 4
    # The backward pass of a first layer computes only the weight gradient: as many FLOPs as the forward.
    assert measure_flops(model, lambda: model(x), lambda y: y.sum()) == 2 * (2 * 3 * 8 * 4)
    with torch.device("meta"):
        meta_model = torch.nn.Linear(8, 4)
        meta_x = torch.randn(3, 8)
    assert measure_flops(meta_model, lambda: meta_model(meta_x)) == 192


DEVICE_NAMES = [
    "NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "NVIDIA H100 NVL", "NVIDIA H200", "NVIDIA A100-SXM4-40GB",
    "Tesla T4", "NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 3080 Ti", "NVIDIA GeForce RTX 2080 SUPER", "NVIDIA L4",
    "NVIDIA L40", "Tesla V100-SXM2-16GB", "Tesla V100-PCIE-32GB", "NVIDIA A10G", "Quadro RTX 5000",
    "NVIDIA RTX A6000", "Some Other GPU",
]  # fmt: skip
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int8]


def _flops(fn: Any, name: str, dtype: torch.dtype, major: int) -> Any:
    with (
        mock.patch("torch.cuda.get_device_name", return_value=name),
        mock.patch("torch.cuda.get_device_capability", return_value=(major, 0)),
        mock.patch("lightning_fabric.accelerators.cuda._is_ampere_or_later", return_value=major >= 8),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        return fn(torch.device("cuda", 0), dtype)


@pytest.mark.oracle
@pytest.mark.parametrize("name", DEVICE_NAMES)
def test_available_flops_equal_lightning_fabrics(name: str) -> None:
    fabric_throughput = pytest.importorskip("lightning_fabric.utilities.throughput")
    previous = torch.get_float32_matmul_precision()
    try:
        for matmul in ("highest", "high"):
            torch.set_float32_matmul_precision(matmul)
            for dtype in DTYPES:
                for major in (7, 9):
                    ours = _flops(get_available_flops, name, dtype, major)
                    theirs = _flops(fabric_throughput.get_available_flops, name, dtype, major)
                    assert ours == theirs, (name, dtype, major, matmul)
    finally:
        torch.set_float32_matmul_precision(previous)


def test_available_flops_known_and_unknown() -> None:
    with (
        mock.patch("torch.cuda.get_device_name", return_value="NVIDIA H100 80GB HBM3"),
        mock.patch("torch.cuda.get_device_capability", return_value=(9, 0)),
    ):
        assert get_available_flops(torch.device("cuda", 0), torch.bfloat16) == 989_400_000_000_000
    with mock.patch("torch.cuda.get_device_name", return_value="Mystery"), pytest.warns(UserWarning, match="Mystery"):
        assert get_available_flops(torch.device("cuda", 0), torch.float32) is None
    assert get_available_flops(torch.device("cpu"), torch.float32) is None
    assert compute_dtype("bf16-mixed") == torch.bfloat16
    assert compute_dtype("64-true") == torch.float64
    assert compute_dtype(SimpleNamespace(precision="16-mixed")) == torch.float16
    assert compute_dtype(None) == torch.float32


def test_fabric_throughput_monitor_logs_with_the_fabric_object() -> None:
    logged: list[tuple[dict[str, Any], int]] = []
    fabric = SimpleNamespace(
        device=torch.device("cpu"), world_size=1, strategy=SimpleNamespace(precision="32-true"),
        log_dict=lambda metrics, step: logged.append((metrics, step)),
    )  # fmt: skip
    monitor = FabricThroughputMonitor(fabric, window_size=2)
    for i in range(1, 4):
        monitor.update(time=float(i), batches=i, samples=2 * i)
        monitor.compute_and_log()
    assert [step for _, step in logged] == [0, 1, 2]
    assert logged[-1][0]["device/samples_per_sec"] == 2.0
    assert monitor.compute_and_log(step=10)["batches"] == 3
    assert logged[-1][1] == 10


def _record_monitor(lib: Any) -> tuple[list[tuple[int | None, list[str]]], list[str]]:
    classes = boring_classes(lib)
    monitor_class = lib.callbacks.ThroughputMonitor if hasattr(lib.callbacks, "ThroughputMonitor") else None
    rows: list[tuple[int | None, list[str]]] = []

    class Recorder(lib.loggers.Logger):  # type: ignore[misc,name-defined]
        name, version = "r", 0

        def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
            rows.append((step, sorted(metrics)))

        def log_hyperparams(self, *args: Any, **kwargs: Any) -> None:
            pass

    class Model(classes.BoringModel):  # type: ignore[misc,name-defined]
        flops_per_batch = 10

    assert monitor_class is not None
    trainer = lib.Trainer(
        max_epochs=2, limit_train_batches=5, limit_val_batches=3, log_every_n_steps=2, accumulate_grad_batches=2,
        val_check_interval=2, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        logger=Recorder(), callbacks=[monitor_class(batch_size_fn=lambda batch: batch.shape[0], window_size=2)],
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(Model())
        trainer.log_every_n_steps = 2
        trainer.test(Model(), verbose=False)
        trainer.predict(Model())
    return rows, sorted(k for k in trainer.logged_metrics if "/" in k)


def test_monitor_logs_training_validation_test_and_predict_rows() -> None:
    rows, logged = _record_monitor(fulgor)
    train = [(step, keys) for step, keys in rows if any(k.startswith("train/") for k in keys)]
    assert [step for step, _ in train] == [1, 3, 5]  # steps that stepped the optimizer, every 2nd logging step
    assert "epoch" in train[0][1]
    assert "train/device/flops_per_sec" in train[0][1]
    # 32 test batches, a row every 2nd (`log_every_n_steps=2`), its step the batch count.
    assert [step for step, keys in rows if keys[0].startswith("test/")] == list(range(2, 33, 2))
    assert "predict/device/samples_per_sec" in logged


@pytest.mark.oracle
def test_monitor_rows_equal_lightnings() -> None:
    pl = pytest.importorskip("pytorch_lightning")
    assert _record_monitor(fulgor) == _record_monitor(pl)


def test_monitor_warns_without_flops_per_batch() -> None:
    monitor = ThroughputMonitor(batch_size_fn=lambda batch: batch.shape[0])
    trainer = fulgor.Trainer(
        max_epochs=1, limit_train_batches=2, limit_val_batches=0, logger=False, enable_progress_bar=False,
        enable_checkpointing=False, callbacks=[monitor],
    )  # fmt: skip
    with pytest.warns(UserWarning, match="define a `flops_per_batch` attribute"):
        trainer.fit(boring_classes(fulgor).BoringModel())
    assert monitor._samples[fulgor.trainer.state.RunningStage.TRAINING] == 4
