"""Callbacks: the `Callback` base class and the callbacks the Trainer and users add.

Each callback's module is imported on first access (PEP 562), so `import fulgor` does not load a dozen modules a
run may never use; `from fulgor.callbacks import EarlyStopping` works as usual."""

from typing import TYPE_CHECKING, Any

from fulgor.callbacks.callback import Callback

if TYPE_CHECKING:
    from fulgor.callbacks.batch_size_finder import BatchSizeFinder
    from fulgor.callbacks.checkpoint import Checkpoint
    from fulgor.callbacks.device_stats_monitor import DeviceStatsMonitor
    from fulgor.callbacks.early_stopping import EarlyStopping, EarlyStoppingReason
    from fulgor.callbacks.fault_tolerance import FaultTolerance
    from fulgor.callbacks.finetuning import BackboneFinetuning, BaseFinetuning
    from fulgor.callbacks.gradient_accumulation_scheduler import GradientAccumulationScheduler
    from fulgor.callbacks.lambda_function import LambdaCallback
    from fulgor.callbacks.lr_finder import LearningRateFinder
    from fulgor.callbacks.lr_monitor import LearningRateMonitor
    from fulgor.callbacks.model_checkpoint import ModelCheckpoint
    from fulgor.callbacks.model_summary import ModelSummary
    from fulgor.callbacks.on_exception_checkpoint import OnExceptionCheckpoint
    from fulgor.callbacks.prediction_writer import BasePredictionWriter
    from fulgor.callbacks.progress import ProgressBar
    from fulgor.callbacks.pruning import ModelPruning
    from fulgor.callbacks.rich_model_summary import RichModelSummary
    from fulgor.callbacks.rich_progress import RichProgressBar, RichProgressBarTheme
    from fulgor.callbacks.spike import SpikeDetection
    from fulgor.callbacks.throughput_monitor import ThroughputMonitor
    from fulgor.callbacks.timer import Timer
    from fulgor.callbacks.tqdm_progress import TQDMProgressBar
    from fulgor.callbacks.weight_averaging import EMAWeightAveraging, StochasticWeightAveraging, WeightAveraging

__all__ = [
    "BackboneFinetuning",
    "BaseFinetuning",
    "BasePredictionWriter",
    "BatchSizeFinder",
    "Callback",
    "Checkpoint",
    "DeviceStatsMonitor",
    "EMAWeightAveraging",
    "EarlyStopping",
    "EarlyStoppingReason",
    "FaultTolerance",
    "GradientAccumulationScheduler",
    "LambdaCallback",
    "LearningRateFinder",
    "LearningRateMonitor",
    "ModelCheckpoint",
    "ModelPruning",
    "ModelSummary",
    "OnExceptionCheckpoint",
    "ProgressBar",
    "RichModelSummary",
    "RichProgressBar",
    "RichProgressBarTheme",
    "SpikeDetection",
    "StochasticWeightAveraging",
    "TQDMProgressBar",
    "ThroughputMonitor",
    "Timer",
    "WeightAveraging",
]

_LAZY = {
    "BackboneFinetuning": "fulgor.callbacks.finetuning",
    "BaseFinetuning": "fulgor.callbacks.finetuning",
    "BasePredictionWriter": "fulgor.callbacks.prediction_writer",
    "BatchSizeFinder": "fulgor.callbacks.batch_size_finder",
    "Checkpoint": "fulgor.callbacks.checkpoint",
    "DeviceStatsMonitor": "fulgor.callbacks.device_stats_monitor",
    "EMAWeightAveraging": "fulgor.callbacks.weight_averaging",
    "EarlyStopping": "fulgor.callbacks.early_stopping",
    "EarlyStoppingReason": "fulgor.callbacks.early_stopping",
    "FaultTolerance": "fulgor.callbacks.fault_tolerance",
    "GradientAccumulationScheduler": "fulgor.callbacks.gradient_accumulation_scheduler",
    "LambdaCallback": "fulgor.callbacks.lambda_function",
    "LearningRateFinder": "fulgor.callbacks.lr_finder",
    "LearningRateMonitor": "fulgor.callbacks.lr_monitor",
    "ModelCheckpoint": "fulgor.callbacks.model_checkpoint",
    "ModelPruning": "fulgor.callbacks.pruning",
    "ModelSummary": "fulgor.callbacks.model_summary",
    "OnExceptionCheckpoint": "fulgor.callbacks.on_exception_checkpoint",
    "ProgressBar": "fulgor.callbacks.progress",
    "RichModelSummary": "fulgor.callbacks.rich_model_summary",
    "RichProgressBar": "fulgor.callbacks.rich_progress",
    "RichProgressBarTheme": "fulgor.callbacks.rich_progress",
    "SpikeDetection": "fulgor.callbacks.spike",
    "StochasticWeightAveraging": "fulgor.callbacks.weight_averaging",
    "TQDMProgressBar": "fulgor.callbacks.tqdm_progress",
    "ThroughputMonitor": "fulgor.callbacks.throughput_monitor",
    "Timer": "fulgor.callbacks.timer",
    "WeightAveraging": "fulgor.callbacks.weight_averaging",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fulgor.callbacks' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
