"""Callbacks: the `Callback` base class and the callbacks the Trainer and users add."""

from fulgor.callbacks.batch_size_finder import BatchSizeFinder
from fulgor.callbacks.callback import Callback
from fulgor.callbacks.checkpoint import Checkpoint
from fulgor.callbacks.early_stopping import EarlyStopping, EarlyStoppingReason
from fulgor.callbacks.finetuning import BackboneFinetuning, BaseFinetuning
from fulgor.callbacks.gradient_accumulation_scheduler import GradientAccumulationScheduler
from fulgor.callbacks.lambda_function import LambdaCallback
from fulgor.callbacks.lr_finder import LearningRateFinder
from fulgor.callbacks.lr_monitor import LearningRateMonitor
from fulgor.callbacks.model_checkpoint import ModelCheckpoint
from fulgor.callbacks.model_summary import ModelSummary
from fulgor.callbacks.on_exception_checkpoint import OnExceptionCheckpoint
from fulgor.callbacks.prediction_writer import BasePredictionWriter
from fulgor.callbacks.progress import ProgressBar, TQDMProgressBar
from fulgor.callbacks.rich_model_summary import RichModelSummary
from fulgor.callbacks.rich_progress import RichProgressBar, RichProgressBarTheme
from fulgor.callbacks.timer import Timer
from fulgor.callbacks.weight_averaging import EMAWeightAveraging, StochasticWeightAveraging, WeightAveraging

__all__ = [
    "BackboneFinetuning",
    "BaseFinetuning",
    "BasePredictionWriter",
    "BatchSizeFinder",
    "Callback",
    "Checkpoint",
    "EMAWeightAveraging",
    "EarlyStopping",
    "EarlyStoppingReason",
    "GradientAccumulationScheduler",
    "LambdaCallback",
    "LearningRateFinder",
    "LearningRateMonitor",
    "ModelCheckpoint",
    "ModelSummary",
    "OnExceptionCheckpoint",
    "ProgressBar",
    "RichModelSummary",
    "RichProgressBar",
    "RichProgressBarTheme",
    "StochasticWeightAveraging",
    "TQDMProgressBar",
    "Timer",
    "WeightAveraging",
]
