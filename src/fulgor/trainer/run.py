"""Run: everything one `fit`/`validate`/`test`/`predict` call holds. Built when the call starts (trainer.py), filled
by its set-up (lifecycle.py), handed explicitly to the loops, and replaced by the next call's."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torch import Tensor

from fulgor.trainer.log_store import MetricDicts, ResultStore
from fulgor.trainer.optimization import PlainSteps, run_backward
from fulgor.trainer.state import RunningStage, TrainerFn, TrainerState

if TYPE_CHECKING:
    from torch.optim import Optimizer

    from fulgor.datamodule import LightningDataModule
    from fulgor.module import LightningModule
    from fulgor.optimizer import LightningOptimizer, LRSchedulerConfig
    from fulgor.precision import Precision
    from fulgor.strategies.strategy import Strategy
    from fulgor.trainer.config import TrainerConfig
    from fulgor.trainer.data import DataSource
    from fulgor.trainer.dispatch import Receivers
    from fulgor.trainer.finite_guard import FiniteGuard
    from fulgor.trainer.legacy_hooks import LegacyHooks
    from fulgor.trainer.optimizer_idx_loop import OptimizerIdxLoop
    from fulgor.trainer.trainer import Trainer


class _Reduce:
    """The stores' sync: `strategy.reduce` with the operation by keyword, as Lightning calls it (a class, not a
    closure, so that a pickled Trainer still pickles)."""

    def __init__(self, strategy: Strategy) -> None:
        self.strategy = strategy

    def __call__(self, tensor: Tensor, reduce_op: str) -> Tensor:
        reduced: Tensor = self.strategy.reduce(tensor, group=None, reduce_op=reduce_op)
        return reduced


NOTHING_PLAIN = PlainSteps(zero_grad=False, backward=False, before_step=False, optimizer_step=False, direct_step=False)


@dataclass(eq=False)
class Run:
    """One run of the Trainer. The loops read and write it; the Trainer's properties are views over it."""

    trainer: Trainer  # the parts (callbacks, loggers, profiler) and what callbacks receive
    config: TrainerConfig  # the run's settings (the Trainer keeps it current when a setting is assigned)
    state: TrainerState  # `trainer.state`: counters, stage, phase
    metrics: MetricDicts  # what `trainer.callback_metrics` & co. show; outlives the run
    fn: TrainerFn
    module: LightningModule
    datamodule: LightningDataModule | None
    sources: dict[str, DataSource]  # where each stage's dataloaders come from
    strategy: Strategy
    precision: Precision
    train_store: ResultStore = field(init=False)
    eval_store: ResultStore = field(init=False)
    _store_of_stage: dict[RunningStage, ResultStore] = field(init=False, repr=False)

    # Resolved once by the set-up (lifecycle.py), so the per-batch path only reads them.
    hooks: dict[str, Receivers] = field(default_factory=dict)  # hook name -> receivers nobody else re-resolves
    profiling: bool = False  # a real profiler times hooks and loop steps
    training_step: Callable[..., Any] | None = None  # `training_step` as the strategy runs it
    autocast: Callable[[], AbstractContextManager[Any]] | None = None  # the precision's, when it changes anything
    step_takes_batch_idx: bool = True
    own_fetches: bool = False  # `training_step(dataloader_iter)`: the step fetches its batches itself
    automatic: bool = True  # automatic optimization
    clipping: bool = False  # `configure_gradient_clipping` runs before each optimizer step
    plain: PlainSteps = NOTHING_PLAIN  # which parts of a batch run as plain PyTorch calls (set with the optimizers)
    legacy: LegacyHooks | None = None  # the module's 1.x hooks, when it defines any
    batch_to_device: Callable[[Any, int], Any] | None = None  # None: batches stay as the loader made them

    # Data (trainer/data.py).
    loaders: dict[RunningStage, list[Any]] = field(default_factory=dict)
    limits: dict[RunningStage, list[int | float]] = field(default_factory=dict)
    loader_views: dict[RunningStage, Any] = field(default_factory=dict)  # as given: a collection keeps its shape
    train_loader: Any = None
    num_training_batches: int | float = float("inf")
    val_check_batch: int | float = float("inf")
    validation_enabled: bool = False  # decided once before training starts
    last_train_reload_epoch: int | None = None
    last_val_reload_epoch: int | None = None
    last_val_time: float = 0.0
    eval_steps_logged: dict[tuple[str, int], int] = field(default_factory=dict)
    # Each evaluation loop's last pass over its data, kept until its next pass or the run's end: as in Lightning, a
    # loader's worker processes stop then, not as soon as the pass is over.
    live_iterators: dict[str, Any] = field(default_factory=dict)

    # Optimization (lifecycle.setup_optimizers).
    optimizers: list[Optimizer] = field(default_factory=list)
    lr_scheduler_configs: list[LRSchedulerConfig] = field(default_factory=list)
    lightning_optimizers: list[LightningOptimizer] = field(default_factory=list)
    optimizer_loop: OptimizerIdxLoop | None = None  # Lightning 1.x's `optimizer_idx` loop, when the module uses it

    # Checkpoints: the file this run loaded, and its training state waiting for the optimizers.
    ckpt_path: str | None = None
    restarted_epoch: int | None = None  # the epoch a mid-epoch checkpoint resumed in (`fit_loop.restarting`)
    checkpoint_to_resume: dict[str, Any] | None = None
    # `(ckpt_path, weights_only)` still to load when the strategy restores after its setup (restore_after_setup)
    ckpt_request: tuple[Any, bool | None] | None = None
    loader_states: list[Any] | None = None  # the checkpoint's "combined_loader" states, loaded as training starts
    predict_view: Any = None  # what prediction writers read (eval_loop.PredictLoopView)
    finite_guard: FiniteGuard | None = None  # fit's non-finite loss guard (finite_guard.py), None when off
    received_sigterm: bool = False  # `trainer.received_sigterm`: SIGTERM arrived during this fit

    def __post_init__(self) -> None:
        sync = _Reduce(self.strategy)
        self.train_store = ResultStore(training=True, sync=sync)
        self.eval_store = ResultStore(training=False, sync=sync)
        evaluating = (RunningStage.SANITY_CHECKING, RunningStage.VALIDATING, RunningStage.TESTING)
        self._store_of_stage = {RunningStage.TRAINING: self.train_store, **dict.fromkeys(evaluating, self.eval_store)}

    @property
    def results(self) -> ResultStore | None:
        """The store `self.log` writes to, chosen from the stage: training, evaluation, or none (predicting)."""
        return self._store_of_stage.get(self.state.stage)  # type: ignore[arg-type]

    @property
    def fitting(self) -> bool:
        return self.fn == TrainerFn.FITTING

    def backward(self, loss: Tensor, *args: Any, **kwargs: Any) -> None:
        """`manual_backward`: the precision's loss scaling and the backward hooks around `LightningModule.backward`."""
        run_backward(self, loss, *args, **kwargs)
