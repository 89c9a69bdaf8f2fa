"""What reaches the loggers and when: metric rows at the logging cadence, each with the step it belongs to."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import Tensor

if TYPE_CHECKING:
    from fulgor.trainer.log_store import MetricDicts
    from fulgor.trainer.run import Run


def log_metrics(run: Run, metrics: dict[str, Tensor], step: int, with_epoch: bool = True) -> None:
    """Send `metrics` to every logger as floats (the one host read per logging interval) at `step`.

    Training and epoch rows (`with_epoch`) also carry the epoch number, unless the user logged a value named "step",
    which is then the row's step (Lightning's rule); evaluation batch rows carry their own step only.
    """
    loggers = run.trainer.loggers
    if not loggers or not metrics:
        return
    run.metrics.logged.update(metrics)
    scalars: dict[str, Any] = {k: v.item() if isinstance(v, Tensor) else v for k, v in metrics.items()}
    if with_epoch:
        logged_step = scalars.pop("step", None)
        if logged_step is not None:
            step = int(logged_step)
        else:
            scalars.setdefault("epoch", run.state.epoch)
    for logger in loggers:  # Lightning's keywords, and a `save()` after every row (custom loggers rely on both)
        logger.log_metrics(metrics=scalars, step=step)
        logger.save()


def should_log_step(run: Run) -> bool:
    """Whether this training step's values go to the loggers: every `log_every_n_steps`, and when stopping."""
    every = run.config.log_every_n_steps
    if every == 0:
        return False
    state = run.state
    return (state.batches_that_stepped + 1) % every == 0 or state.should_stop


def save_loggers(run: Run) -> None:
    for logger in run.trainer.loggers:
        logger.save()


def metrics_to_cpu(metrics: MetricDicts) -> None:
    """Move the metric dictionaries to the CPU at the end of a run (they outlive it; device memory should not)."""
    for store in (metrics.callback, metrics.logged, metrics.pbar):
        for key, value in store.items():
            if isinstance(value, Tensor) and value.device.type != "cpu":
                store[key] = value.cpu()
