"""`ThroughputMonitor`: batches, samples, items and FLOPs per second of training, validation, testing and prediction,
measured with `fulgor.throughput.Throughput` and sent to the loggers at Lightning's cadence and steps."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from fulgor.callbacks.callback import Callback
from fulgor.rank import rank_zero_only, rank_zero_warn
from fulgor.throughput import Throughput, compute_dtype, get_available_flops
from fulgor.trainer.state import RunningStage, TrainerFn

if TYPE_CHECKING:
    from fulgor.module import LightningModule
    from fulgor.trainer.trainer import Trainer

__all__ = ["ThroughputMonitor"]

_FIRST_STAGE = {
    TrainerFn.FITTING: RunningStage.TRAINING,
    TrainerFn.VALIDATING: RunningStage.VALIDATING,
    TrainerFn.TESTING: RunningStage.TESTING,
    TrainerFn.PREDICTING: RunningStage.PREDICTING,
}


def _global_zero() -> bool:
    return bool(rank_zero_only.rank == 0)  # type: ignore[attr-defined]


class ThroughputMonitor(Callback):
    """Log throughput (``train/device/samples_per_sec``, ``validate/...``, ``test/...``, ``predict/...``; see
    :class:`~fulgor.throughput.Throughput` for the keys) on global rank 0.

    Training rows are logged when the optimizer stepped, every ``log_every_n_steps``, with the trainer's logging step;
    evaluation and prediction rows per batch with the batch count as step. The time spent validating is not counted
    as training time. FLOPs come from a ``flops_per_batch`` attribute of the LightningModule when it has one (see
    :func:`~fulgor.throughput.measure_flops`).

    Args:
        batch_size_fn: the number of samples in a batch.
        length_fn: the number of items (e.g. tokens) in a batch, for ``items_per_sec``.
        **kwargs: ``window_size`` and ``separator`` of :class:`~fulgor.throughput.Throughput`.

    Example::

        trainer = Trainer(callbacks=ThroughputMonitor(batch_size_fn=lambda batch: batch[0].size(0)))
    """

    def __init__(
        self, batch_size_fn: Callable[[Any], int], length_fn: Callable[[Any], int] | None = None, **kwargs: Any
    ) -> None:
        super().__init__()
        self.kwargs = kwargs
        self.batch_size_fn = batch_size_fn
        self.length_fn = length_fn
        self.available_flops: int | None = None
        self._throughputs: dict[RunningStage, Throughput] = {}
        self._t0s: dict[RunningStage, float] = {}
        self._lengths: dict[RunningStage, int] = {}
        self._samples: dict[RunningStage, int] = {}
        self._batches: dict[RunningStage, int] = {}
        self._run_batches: dict[RunningStage, int] = {}  # batches since the stage's loop last started
        self._module_has_flops: bool | None = None

    def _new_throughput(self, trainer: Trainer) -> Throughput:
        return Throughput(available_flops=self.available_flops, world_size=trainer.world_size, **self.kwargs)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.available_flops = get_available_flops(trainer.strategy.root_device, compute_dtype(trainer.precision))
        fn = TrainerFn(stage)
        if fn == TrainerFn.FITTING and trainer.enable_validation:  # fit validates too, unless validation is off
            self._throughputs[RunningStage.VALIDATING] = self._new_throughput(trainer)
        self._throughputs[_FIRST_STAGE[fn]] = self._new_throughput(trainer)

    def _start(self, trainer: Trainer) -> None:
        stage = _stage(trainer)
        if trainer.state.fn == TrainerFn.FITTING or stage not in self._samples:
            self._throughputs[stage].reset()
            self._lengths[stage] = self._samples[stage] = self._batches[stage] = 0
        self._run_batches[stage] = 0
        self._t0s[stage] = time.perf_counter()

    @torch.inference_mode()  # `batch_size_fn` / `length_fn` must not record graphs
    def _update(self, trainer: Trainer, pl_module: LightningModule, batch: Any) -> None:
        stage = _stage(trainer)
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()  # the clock must include the queued kernels
        elapsed = time.perf_counter() - self._t0s[stage]
        if self.length_fn is not None:
            self._lengths[stage] += self.length_fn(batch)
        if self._module_has_flops is None:
            self._module_has_flops = hasattr(pl_module, "flops_per_batch")
            if not self._module_has_flops:
                rank_zero_warn(
                    "When using the `ThroughputMonitor`, you need to define a `flops_per_batch` attribute or property"
                    f" in {type(pl_module).__name__} to compute the FLOPs."
                )
        self._samples[stage] += self.batch_size_fn(batch)
        self._batches[stage] += 1
        self._run_batches[stage] += 1
        self._throughputs[stage].update(
            time=elapsed,
            batches=self._batches[stage],
            samples=self._samples[stage],  # assumes every batch had the same size
            lengths=None if self.length_fn is None else self._lengths[stage],
            flops=getattr(pl_module, "flops_per_batch", None) if self._module_has_flops else None,
        )

    def _compute(self, trainer: Trainer, step: int | None = None) -> None:
        stage = _stage(trainer)
        if not self._should_log(trainer, stage):
            return
        throughput = self._throughputs[stage]
        metrics = {f"{stage.value}{throughput.separator}{k}": v for k, v in throughput.compute().items()}
        _log_metrics(trainer, metrics, step)

    def _should_log(self, trainer: Trainer, stage: RunningStage) -> bool:
        """Lightning's logging cadence: every `log_every_n_steps` optimizer steps in training, batches of the running
        loop in evaluation and prediction; always when stopping; never with `log_every_n_steps=0`."""
        every = trainer.log_every_n_steps
        if not every:
            return False
        count = trainer.state.batches_that_stepped + 1 if stage == RunningStage.TRAINING else self._run_batches[stage]
        return count % every == 0 or bool(trainer.should_stop)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if _global_zero():
            self._start(trainer)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not _global_zero():
            return
        self._update(trainer, pl_module, batch)
        # Measured when the optimizer stepped, so the effective batch and its optimizer step are both included.
        ready = batch_idx + 1
        if ready % trainer.accumulate_grad_batches == 0 or _last_batch(trainer, ready):
            self._compute(trainer)

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if _global_zero() and not trainer.sanity_checking:
            self._start(trainer)

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if _global_zero() and not trainer.sanity_checking:
            self._eval_batch_end(trainer, pl_module, batch)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not _global_zero() or trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        # Move the training clock's start forward by the pause and the validation, so they do not count as training.
        train = self._throughputs[RunningStage.TRAINING]._time.values
        val = self._throughputs[RunningStage.VALIDATING]._time.values
        train_finished = self._t0s[RunningStage.TRAINING] + (train[-1] if train else 0.0)
        pause = self._t0s[RunningStage.VALIDATING] - train_finished
        self._t0s[RunningStage.TRAINING] += pause + (val[-1] if val else 0.0)

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if _global_zero():
            self._start(trainer)

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if _global_zero():
            self._eval_batch_end(trainer, pl_module, batch)

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if _global_zero():
            self._start(trainer)

    def on_predict_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if _global_zero():
            self._eval_batch_end(trainer, pl_module, batch)

    def _eval_batch_end(self, trainer: Trainer, pl_module: LightningModule, batch: Any) -> None:
        self._update(trainer, pl_module, batch)
        stage = _stage(trainer)
        if trainer.state.fn == TrainerFn.FITTING:  # the step: validation batches of this training epoch so far
            step = trainer.fit_loop.epoch_loop.val_loop.batch_progress.total.ready
        else:  # batches this stage has run with this Trainer (Lightning's loop totals)
            step = self._batches[stage]
        self._compute(trainer, step)


def _stage(trainer: Trainer) -> RunningStage:
    stage = trainer.state.stage
    assert stage is not None, "ThroughputMonitor hooks run inside a stage"
    return stage


def _last_batch(trainer: Trainer, ready: int) -> bool:
    return ready == trainer.num_training_batches or bool(trainer.is_last_batch)


def _log_metrics(trainer: Trainer, metrics: dict[str, Any], step: int | None) -> None:
    """Send `metrics` to the loggers as Lightning's logger connector does: without a step, at the trainer's logging
    step with the epoch added; they also show in `trainer.logged_metrics`."""
    if not trainer.loggers or not metrics:
        return
    trainer.logged_metrics.update(metrics)
    if step is None:
        metrics = dict(metrics)
        metrics.setdefault("epoch", trainer.current_epoch)
        step = trainer.state.batches_that_stepped
    for logger in trainer.loggers:
        logger.log_metrics(metrics=metrics, step=step)  # by keyword, as Lightning's Trainer calls it
        logger.save()
