"""The evaluation loop (sanity check, validation inside fit, `trainer.validate`, `trainer.test`) and the
prediction loop, as plain functions with every hook call visible."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from fulgor.data.transfer import move_data_to_device
from fulgor.overridden import is_overridden
from fulgor.profiler_base import profiled_next
from fulgor.rank import warn_once
from fulgor.stop_request import STOP
from fulgor.trainer import data, preemption
from fulgor.trainer.batch_hints import dict_batch_hint
from fulgor.trainer.dataloader_iter import run_eval_with_iter, run_predict_with_iter, takes_dataloader_iter
from fulgor.trainer.dispatch import call_hook, call_module, set_fx_name
from fulgor.trainer.hook_resolution import profiled
from fulgor.trainer.state import LoopPhase, RunningStage
from fulgor.trainer.to_loggers import log_metrics

if TYPE_CHECKING:
    from fulgor.trainer.run import Run

_NAMES = {
    RunningStage.SANITY_CHECKING: "validation",
    RunningStage.VALIDATING: "validation",
    RunningStage.TESTING: "test",
    RunningStage.PREDICTING: "predict",
}


def run_evaluation(run: Run, stage: RunningStage) -> list[dict[str, float]]:
    """Run the validation or test loop over every loader of the stage; return one metric dict per loader."""
    name = _NAMES[stage]  # "validation" or "test"
    loaders, limits = data.eval_loaders(run, stage)
    if not loaders or sum(limits) == 0 or not is_overridden(f"{name}_step", run.module):
        return []
    own_fetches = _prepare_loaders(run, stage, loaders)
    store = run.eval_store
    modes = _eval_mode(run, name)
    try:
        call_hook(run, f"on_{name}_start")
        call_hook(run, f"on_{name}_epoch_start")
        run_batches = run_eval_with_iter if own_fetches else _run_each_loader
        outputs: list[dict[str, Tensor]] = run_batches(run, stage, loaders, limits)
        store.dataloader_idx = None
        if run.legacy is not None:  # 1.x `validation_epoch_end(outputs)` / `test_epoch_end(outputs)`
            run.legacy.epoch_end(name, len(loaders))
        call_hook(run, f"on_{name}_epoch_end")
        epoch_end = store.epoch_metrics(None, run.metrics)
        for out in outputs:
            out.update(epoch_end)
        if stage != RunningStage.SANITY_CHECKING:
            log_metrics(run, {k: v for out in outputs for k, v in out.items()}, run.state.batches_that_stepped)
        if run.state.phase == LoopPhase.VALIDATING:
            run.state.phase = LoopPhase.VALIDATION_END  # a checkpoint saved from here on needs no validation rerun
        call_hook(run, f"on_{name}_end")
    except StopIteration:  # raised by a hook: fit's epoch ends there (fit_loop); its training goes on after
        _restore_mode(run, name, modes)
        raise
    store.reset()
    _restore_mode(run, name, modes)
    return [{k: float(v) for k, v in out.items()} for out in outputs]


def _prepare_loaders(run: Run, stage: RunningStage, loaders: list[Any]) -> bool:
    """Set the samplers' epoch in fit and check the step's `dataloader_idx`; whether the step takes the iterator."""
    name, module = _NAMES[stage], run.module
    if run.fitting:  # some users shuffle the validation data by the training epoch (outside fit: data.prepare_loader)
        for loader in loaders:
            data.set_sampler_epoch(loader, run.state.epoch)
    own_fetches = takes_dataloader_iter(getattr(module, f"{name}_step"))  # the step fetches its batches itself
    if not own_fetches:
        hooks = (f"{name}_step", f"on_{name}_batch_start", f"on_{name}_batch_end")
        data.check_dataloader_idx(module, hooks, len(loaders) > 1, f"{stage.dataloader_prefix}_dataloader")
    return own_fetches


def _run_each_loader(run: Run, stage: RunningStage, loaders: list[Any], limits: list[int | float]) -> list[Any]:
    """The batches of each loader in turn; each loader's epoch metrics."""
    name, store = _NAMES[stage], run.eval_store
    outputs = []
    for dl_idx, (loader, limit) in enumerate(zip(loaders, limits)):
        ended = False
        try:
            _run_eval_batches(run, stage, name, loader, limit, dl_idx if len(loaders) > 1 else None)
        except StopIteration:  # from a step or batch hook: as Lightning, the end of the data (of every loader)
            _data_ended(run)
            ended = True
        store.in_epoch_phase = True
        outputs.append(store.epoch_metrics(store.dataloader_idx, run.metrics))
        if ended:
            break
    return outputs


def _data_ended(run: Run) -> None:
    """A StopIteration raised by an evaluation or predict batch ended the loop: nothing failed, no batch runs."""
    run.state.failed_eval_batch = 0
    set_fx_name(run.module, None)
    run.eval_store.batch = None


def _run_eval_batches(
    run: Run, stage: RunningStage, name: str, loader: Any, limit: int | float, dl_idx: int | None
) -> None:
    module = run.module
    store = run.eval_store
    step = _timed_step(run, f"{name}_step")
    pass_batch_idx = data.accepts_batch_idx(getattr(module, f"{name}_step"))
    hook_idx = () if dl_idx is None else (dl_idx,)
    transfer = run.batch_to_device
    autocast = run.precision.autocast
    logging_steps = stage != RunningStage.SANITY_CHECKING
    in_fit = stage == RunningStage.VALIDATING and run.fitting
    seen = run.eval_steps_logged
    position = 0  # how far the running batch has gone: read only if an exception leaves the loop
    try:
        for batch_idx, batch in _limited(loader, limit, run, "[_EvaluationLoop]." + _NEXT[name]):
            if STOP.pending or STOP.sync_every:  # a stop request is acted on between validation batches too
                preemption.safe_point(run)
            if transfer is not None:
                batch = transfer(batch, dl_idx or 0)
            store.start_batch(batch, dl_idx)
            position = 1
            call_hook(run, f"on_{name}_batch_start", batch, batch_idx, *hook_idx)
            position = 2
            set_fx_name(module, f"{name}_step")
            try:
                with autocast():
                    output = step(batch, batch_idx, *hook_idx) if pass_batch_idx else step(batch, *hook_idx)
            except (TypeError, ValueError) as error:
                hinted = dict_batch_hint(error, f"{name}_step", batch)
                if hinted is None:
                    raise
                raise hinted from error
            set_fx_name(module, None)
            position = 0
            if run.legacy is not None:  # 1.x `*_step_end`, and outputs for `*_epoch_end`
                output = run.legacy.after_step(f"{name}_step", output, dl_idx or 0)
            call_hook(run, f"on_{name}_batch_end", output, batch, batch_idx, *hook_idx)
            store.flush(run.metrics)
            if in_fit:
                run.state.val_batches_seen += 1  # saved in checkpoints as the fit's validation progress
            if logging_steps:
                key = (name, dl_idx or 0)
                log_metrics(run, store.step_log_metrics(dl_idx), seen.get(key, 0), with_epoch=False)
                seen[key] = seen.get(key, 0) + 1
    except BaseException:
        run.state.failed_eval_batch = position
        raise
    store.batch = None


def _limited(loader: Any, limit: int | float, run: Run, action: str) -> Iterator[tuple[int, Any]]:
    started = run.live_iterators[action] = iter(loader)  # replacing the last pass's stops its workers
    iterator = data.epoch_batches(loader, started)
    limited = iterator if limit == float("inf") else islice(iterator, int(limit))
    if run.profiling:  # each fetch timed as Lightning's `[_EvaluationLoop].val_next` (and the like)
        limited = profiled_next(run.trainer.profiler, limited, action, limit)
    return enumerate(limited)


# The profiler's action names of each loop's batch fetch (Lightning's).
_NEXT = {"validation": "val_next", "test": "test_next"}


def _timed_step(run: Run, name: str) -> Any:
    """The strategy's `name` step, timed as Lightning's `[Strategy]<class>.<name>` when the run has a real profiler."""
    step = run.strategy.step_fn(run.module, name)
    if run.profiling:
        step = profiled(run.trainer.profiler, step, f"[Strategy]{type(run.strategy).__name__}.{name}")
    return step


def _eval_mode(run: Run, name: str) -> dict[torch.nn.Module, bool]:
    """Remember each submodule's training flag, then run `on_<stage>_model_eval` (default: `.eval()`)."""
    modes = {m: m.training for m in run.module.modules()}
    call_module(run, f"on_{name}_model_eval")
    return modes


def _restore_mode(run: Run, name: str, modes: dict[torch.nn.Module, bool]) -> None:
    """`on_<stage>_model_train` when the user overrides it, else put every submodule back as it was."""
    hook = f"on_{name}_model_train"
    if name != "predict" and is_overridden(hook, run.module):
        call_module(run, hook)
        return
    for submodule, training in modes.items():
        submodule.training = training


class PredictLoopView:
    """What prediction writers read during `predict` (Lightning's `trainer.predict_loop`): the outputs so far, the
    dataset indices of each batch, and where this `predict`'s batches start in the Trainer's count of finished predict
    batches (`TrainerState.predict_batches`: Lightning's totals keep counting over `predict` calls)."""

    def __init__(self, num_loaders: int, batches_before: int = 0) -> None:
        self.outputs: list[list[Any]] = [[] for _ in range(num_loaders)]
        # As Lightning: filled only for a writer that writes at epoch end (the indices of every batch are kept)...
        self.epoch_batch_indices: list[list[Any]] = [[] for _ in range(num_loaders)]
        # ... and set only for one that writes per batch; empty where a loader has no indices (iterable datasets).
        self.current_batch_indices: Any = []
        self.batches_before = batches_before

    @property
    def predictions(self) -> list[Any]:
        return self.outputs[0] if len(self.outputs) == 1 else self.outputs


def run_prediction(run: Run, return_predictions: bool) -> list[Any] | None:
    """Run `predict_step` over every predict loader; return the outputs (a list per loader when several)."""
    loaders, limits = data.eval_loaders(run, RunningStage.PREDICTING)
    if not loaders or sum(limits) == 0:
        return [] if return_predictions else None
    data.check_predict_mode(loaders)
    module = run.module
    own_fetches = takes_dataloader_iter(module.predict_step)  # the step fetches its batches itself
    if not own_fetches:
        hooks = ("predict_step", "on_predict_batch_start", "on_predict_batch_end")
        data.check_dataloader_idx(module, hooks, len(loaders) > 1, "predict_dataloader")
    view = run.predict_view = PredictLoopView(len(loaders), run.state.predict_batches)
    writers = [cb for cb in run.trainer.callbacks if hasattr(cb, "writes_on_epoch")]
    keep = return_predictions or any(cb.writes_on_epoch for cb in writers)
    modes = _eval_mode(run, "predict")
    call_hook(run, "on_predict_start")
    call_hook(run, "on_predict_epoch_start")
    if own_fetches:
        run_predict_with_iter(run, loaders, limits, view.outputs)
    else:
        try:
            _predict_each_loader(run, loaders, limits, writers, keep)
        except StopIteration:  # from a step or batch hook: as Lightning, the end of the data (of every loader)
            _data_ended(run)
    call_hook(run, "on_predict_epoch_end")
    call_hook(run, "on_predict_end")
    _restore_mode(run, "predict", modes)
    if not return_predictions:
        return None
    return view.predictions


def _predict_each_loader(
    run: Run, loaders: list[Any], limits: list[int | float], writers: list[Any], keep: bool
) -> None:
    """`predict_step` on the batches of each loader in turn, recording the dataset indices for `writers`."""
    module, view = run.module, run.predict_view
    step = _timed_step(run, "predict_step")
    pass_batch_idx = data.accepts_batch_idx(module.predict_step)
    on_batch = any(getattr(cb, "writes_on_batch", False) for cb in writers)
    on_epoch = any(cb.writes_on_epoch for cb in writers)
    for dl_idx, (loader, limit) in enumerate(zip(loaders, limits)):
        hook_idx = () if len(loaders) == 1 else (dl_idx,)
        indices = _IndexRecorder.attach(loader) if writers else None
        batches = indices.loader if indices else loader
        for batch_idx, batch in _limited(batches, limit, run, "[_PredictionLoop].predict_next"):
            if run.batch_to_device is not None:
                batch = run.batch_to_device(batch, dl_idx)
            if indices is not None:
                _record_indices(view, indices.seen[batch_idx], dl_idx, on_batch, on_epoch)
            call_hook(run, "on_predict_batch_start", batch, batch_idx, *hook_idx)
            set_fx_name(module, "predict_step")  # as Lightning (`self.log` and `predict_loop.batch_progress` read it)
            try:
                with run.precision.autocast():
                    output = step(batch, batch_idx, *hook_idx) if pass_batch_idx else step(batch, *hook_idx)
            except (TypeError, ValueError) as error:
                hinted = dict_batch_hint(error, "predict_step", batch)
                if hinted is None:
                    raise
                raise hinted from error
            finally:
                set_fx_name(module, None)
            if output is None:
                warn_once("predict returned None if it was on purpose, ignore this warning...")
            call_hook(run, "on_predict_batch_end", output, batch, batch_idx, *hook_idx)
            run.state.predict_batches += 1  # `predict_loop.batch_progress` counts it
            if keep:
                view.outputs[dl_idx].append(_to_cpu(output))


def _record_indices(view: PredictLoopView, indices: Any, dl_idx: int, on_batch: bool, on_epoch: bool) -> None:
    """The running batch's dataset indices, where the attached writers read them (Lightning keeps each list only
    for the writers that use it)."""
    if on_batch:
        view.current_batch_indices = indices
    if on_epoch:
        view.epoch_batch_indices[dl_idx].append(indices)


class _IndexRecorder:
    """Wraps a DataLoader's batch sampler to record the dataset indices of every batch, for prediction writers."""

    def __init__(self, batch_sampler: Any) -> None:
        self.batch_sampler = batch_sampler
        self.seen: list[Any] = []
        self.loader: Any = None

    def __iter__(self) -> Iterator[Any]:
        self.seen = []
        for indices in self.batch_sampler:
            self.seen.append(indices)
            yield indices

    def __len__(self) -> int:
        return len(self.batch_sampler)

    @classmethod
    def attach(cls, loader: Any) -> _IndexRecorder | None:
        from torch.utils.data import DataLoader, IterableDataset

        if not isinstance(loader, DataLoader) or loader.batch_sampler is None:
            return None  # batch_size=None: no indices to record
        if isinstance(loader.dataset, IterableDataset):
            return None  # its sampler is a placeholder: the dataset yields items, there are no indices (Lightning: [])
        recorder = cls(loader.batch_sampler)
        recorder.loader = data.rebuild_dataloader(loader, sampler=None, batch_sampler=recorder)
        return recorder


def _to_cpu(output: Any) -> Any:
    return move_data_to_device(output, torch.device("cpu"))
