"""Torn or corrupt newest checkpoints (fallback, moved aside, the CRC-32s inside the archive), non-finite losses,
SLURM requeue, a second signal while saving, and flat memory over a long run."""

from __future__ import annotations

import gc
import os
import signal
import stat
import weakref
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import fulgor
from fulgor.callbacks.model_checkpoint import ModelCheckpoint
from fulgor.checkpointing import CheckpointError, verify_integrity
from fulgor.lightning_errors import SIGTERMException
from fulgor.trainer import preemption
from fulgor.trainer.preemption import FaultTolerance, Options

QUIET = {"enable_progress_bar": False, "enable_model_summary": False, "logger": False, "num_sanity_val_steps": 0}


class Tiny(fulgor.LightningModule):
    def __init__(self, nan_at: int = -1) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.nan_at = nan_at

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        loss = self.layer(batch[0]).pow(2).mean()
        if self.global_step == self.nan_at:
            loss = loss * float("nan")
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


def data(n: int = 16) -> DataLoader[Any]:
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(0))
    return DataLoader(TensorDataset(x), batch_size=4)


def train(root: Path, max_epochs: int, ckpt_path: Any = None, **kw: Any) -> fulgor.Trainer:
    checkpoint = ModelCheckpoint(dirpath=str(root / "ck"), every_n_train_steps=2, save_top_k=-1, save_last=True)
    trainer = fulgor.Trainer(
        default_root_dir=str(root), max_epochs=max_epochs, callbacks=[checkpoint], **{**QUIET, **kw}
    )
    trainer.fit(Tiny(), data(), ckpt_path=ckpt_path)
    return trainer


def test_truncated_last_falls_back_to_previous_and_is_moved_aside(tmp_path: Path) -> None:
    train(tmp_path, 1)
    last = tmp_path / "ck" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:500])  # torn
    with pytest.warns(UserWarning, match=r"last\.ckpt' cannot be used: .* It was moved to .*last\.ckpt\.corrupt"):
        trainer = train(tmp_path, 2, ckpt_path="last")
    assert trainer.ckpt_path == str(tmp_path / "ck" / "epoch=0-step=4.ckpt")
    assert (tmp_path / "ck" / "last.ckpt.corrupt").stat().st_size == 500  # kept, never deleted
    assert trainer.global_step == 8


def test_integrity_record_catches_corruption_torch_load_does_not(tmp_path: Path) -> None:
    train(tmp_path, 1)
    last = tmp_path / "ck" / "last.ckpt"
    times = os.stat(last)
    raw = bytearray(last.read_bytes())
    ckpt = torch.load(last, weights_only=True)
    needle = ckpt["state_dict"]["layer.weight"].numpy().tobytes()
    at = bytes(raw).index(needle)
    raw[at] ^= 0x01  # a flipped bit in the weights: torch.load still succeeds
    last.write_bytes(bytes(raw))
    os.utime(last, ns=(times.st_atime_ns, times.st_mtime_ns))  # on-disk rot keeps the modification time
    assert not torch.equal(torch.load(last, weights_only=True)["state_dict"]["layer.weight"],
                           ckpt["state_dict"]["layer.weight"])  # fmt: skip
    with pytest.raises(CheckpointError, match=r"its record '.*data/0' differs from the CRC-32 written with it"):
        verify_integrity(str(last))
    with pytest.warns(UserWarning, match="differs from the CRC-32 written with it"):
        trainer = train(tmp_path, 2, ckpt_path="last")
    assert trainer.ckpt_path.endswith("epoch=0-step=4.ckpt")
    with pytest.raises(CheckpointError, match="is damaged"):  # an explicit path is never replaced silently
        train(tmp_path / "x", 2, ckpt_path=str(tmp_path / "ck" / "last.ckpt.corrupt"))


def test_no_file_beside_the_checkpoints(tmp_path: Path) -> None:
    trainer = fulgor.Trainer(default_root_dir=str(tmp_path), max_epochs=3, **QUIET)
    trainer.fit(Tiny(), data())
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["epoch=2-step=12.ckpt"]  # no hidden integrity record
    verify_integrity(str(tmp_path / "checkpoints" / "epoch=2-step=12.ckpt"))


@pytest.mark.parametrize("mode", ["skip", "stop"])
def test_non_finite_loss_skips_or_stops_without_touching_weights(tmp_path: Path, mode: str) -> None:
    model = Tiny(nan_at=2)
    checkpoint = ModelCheckpoint(dirpath=str(tmp_path), monitor="train_loss", save_top_k=1, every_n_train_steps=1)
    trainer = fulgor.Trainer(default_root_dir=str(tmp_path), max_epochs=2, **QUIET,
                             callbacks=[FaultTolerance(on_non_finite=mode), checkpoint])  # fmt: skip
    with pytest.warns(UserWarning, match=r"The loss is nan at global_step=2 \(epoch=0, batch_idx=2\): returned by"):
        trainer.fit(model, data())
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert trainer.global_step == (8 if mode == "skip" else 3)
    assert checkpoint.best_model_score is not None
    assert torch.isfinite(checkpoint.best_model_score)
    best = torch.load(checkpoint.best_model_path, weights_only=True)["state_dict"]
    assert all(torch.isfinite(v).all() for v in best.values())


def test_non_finite_raise_names_step_and_hook(tmp_path: Path) -> None:
    trainer = fulgor.Trainer(default_root_dir=str(tmp_path), max_epochs=1, **QUIET,
                             callbacks=[FaultTolerance(on_non_finite="raise")])  # fmt: skip
    with pytest.raises(FloatingPointError, match=r"global_step=1 .*`training_step`, detected in `on_before_backward`"):
        trainer.fit(Tiny(nan_at=1), data())


def test_slurm_requeue_calls_scontrol_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "calls"
    scontrol = tmp_path / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    scontrol.chmod(scontrol.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "70")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert preemption._requeue(Options()) == " SLURM job 70_3 was requeued."
    assert log.read_text() == "requeue 70_3\n"
    monkeypatch.setenv("PATH", "/nonexistent")
    assert "NOT requeued: `scontrol` is not on PATH" in preemption._requeue(Options())


class RecordOptions(fulgor.Callback):
    """Keeps the stop options the fit installed (read at fit start)."""

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self.options = preemption.STOP.options


@pytest.mark.parametrize(
    ("environment", "signals", "requeue"),
    [
        (None, {signal.SIGTERM, signal.SIGUSR1}, "auto"),
        ("slurm", {signal.SIGTERM, signal.SIGUSR1}, "auto"),
        ("slurm_hup_no_requeue", {signal.SIGTERM, signal.SIGHUP}, False),
    ],
)
def test_a_slurm_environment_plugin_chooses_the_time_limit_signal_and_requeue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, environment: Any, signals: set[int], requeue: Any
) -> None:
    """`plugins=[SLURMEnvironment(auto_requeue=False, requeue_signal=SIGHUP)]`: SIGHUP (not SIGUSR1) stops the fit,
    and the job does not requeue itself, as in Lightning."""
    from fulgor.strategies.scheduler_environments import SLURMEnvironment

    for name in ("FULGOR_PREEMPT_SIGNALS", "FULGOR_REQUEUE"):
        monkeypatch.delenv(name, raising=False)
    if environment is not None:  # one SLURM task on this machine, in an interactive allocation
        slurm = {"SLURM_NTASKS": "1", "SLURM_NODEID": "0", "SLURM_PROCID": "0", "SLURM_LOCALID": "0",
                 "SLURM_NODELIST": "127.0.0.1", "SLURM_JOB_ID": "12345", "SLURM_JOB_NAME": "bash"}  # fmt: skip
        for name, value in slurm.items():
            monkeypatch.setenv(name, value)
    plugins = {
        None: None,
        "slurm": SLURMEnvironment(),
        "slurm_hup_no_requeue": SLURMEnvironment(auto_requeue=False, requeue_signal=signal.SIGHUP),
    }[environment]
    recorder = RecordOptions()
    trainer = fulgor.Trainer(
        default_root_dir=str(tmp_path), max_epochs=1, callbacks=[recorder], enable_checkpointing=False,
        strategy="ddp" if plugins is not None else "auto", devices=1, plugins=plugins, **QUIET,
    )  # fmt: skip
    try:
        trainer.fit(Tiny(), data())
    finally:  # DDP keeps its one-process group for the next fit; forked ranks of later tests must not inherit it
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    assert set(recorder.options.signals) == signals
    assert recorder.options.requeue == requeue


class SignalTwice(fulgor.Callback):
    """SIGTERM at step 3; a second SIGTERM from inside the checkpoint save."""

    def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
        if trainer.global_step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        if preemption.STOP.saving:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_saves_at_safe_point_and_second_signal_corrupts_nothing(tmp_path: Path) -> None:
    trainer = fulgor.Trainer(default_root_dir=str(tmp_path), max_epochs=3, callbacks=[SignalTwice()], **QUIET)
    assert trainer.received_sigterm is False
    with pytest.raises(SIGTERMException) as stopped:  # Lightning's exception type; fulgor's Preempted
        trainer.fit(Tiny(), data())
    assert isinstance(stopped.value, preemption.Preempted)
    assert trainer.received_sigterm is True
    assert stopped.value.code == 75
    path = tmp_path / "checkpoints" / "last.ckpt"
    assert stopped.value.checkpoint == str(path)
    assert torch.load(path, weights_only=True)["global_step"] == 3
    verify_integrity(str(path))
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers are put back after fit
    resumed = fulgor.Trainer(default_root_dir=str(tmp_path), max_epochs=3, **QUIET)
    resumed.fit(Tiny(), data(), ckpt_path=str(path))
    assert resumed.global_step == 12


class KeepOutputs(fulgor.Callback):
    def __init__(self) -> None:
        self.refs: list[Any] = []

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, *args: Any) -> None:
        self.refs.append(weakref.ref(outputs["loss"]))


def _rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


@pytest.mark.timeout(300)
def test_memory_is_flat_over_200_epochs(tmp_path: Path) -> None:
    class Logged(Tiny):
        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self.log("val_loss", self.layer(batch[0]).pow(2).mean())

    keep = KeepOutputs()
    sizes: list[int] = []

    class Measure(fulgor.Callback):
        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            if trainer.current_epoch in (20, 199):
                gc.collect()
                sizes.append(_rss_kb())

    trainer = fulgor.Trainer(default_root_dir=str(tmp_path), max_epochs=200, log_every_n_steps=1,
                             enable_checkpointing=False, callbacks=[keep, Measure()],
                             **{**QUIET, "logger": fulgor.loggers.CSVLogger(str(tmp_path))})  # fmt: skip
    trainer.fit(Logged(), data(), data(8))
    growth_kb = sizes[1] - sizes[0]
    assert growth_kb < 3 * 1024, f"resident memory grew by {growth_kb} kB after warm-up"
    gc.collect()
    assert sum(ref() is not None for ref in keep.refs) <= 1  # step outputs are not retained
