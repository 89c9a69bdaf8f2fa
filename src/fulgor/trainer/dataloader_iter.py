"""Steps that fetch their own batches (`training_step(self, dataloader_iter)`, and the same for validation, test and
predict): the iterator they receive, and the loops that call such a step until its data is exhausted."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import TYPE_CHECKING, Any

import torch

from fulgor.combined_loader import CombinedLoader
from fulgor.data.transfer import move_data_to_device
from fulgor.trainer.dispatch import call_hook, set_fx_name
from fulgor.trainer.state import RunningStage

if TYPE_CHECKING:
    from fulgor.trainer.run import Run

__all__ = [
    "DataLoaderIter",
    "loader_triples",
    "run_eval_with_iter",
    "run_predict_with_iter",
    "takes_dataloader_iter",
]

Triple = tuple[Any, int, int]
_NOTHING = object()


def takes_dataloader_iter(step: Callable[..., Any]) -> bool:
    """Whether a step method fetches its own batches: its signature names a `dataloader_iter` parameter."""
    try:
        return "dataloader_iter" in inspect.signature(step).parameters
    except (TypeError, ValueError):  # a builtin or a callable without a signature
        return False


class DataLoaderIter:
    """What a `dataloader_iter` step receives: each `next()` gives ``(batch, batch_idx, dataloader_idx)``, the batch
    moved to the device. One item is read ahead, so that the loop knows the data is exhausted (`done`) without the
    step meeting StopIteration.

    Args:
        triples: the pass's ``(batch, batch_idx, dataloader_idx)`` items, limits applied.
        transfer: moves a batch to the device (`transfer(batch, dataloader_idx)`), or None to leave it.
    """

    def __init__(self, triples: Iterable[Triple], transfer: Callable[[Any, int], Any] | None) -> None:
        self._items = iter(triples)
        self._transfer = transfer
        self._next: Any = next(self._items, _NOTHING)
        self.batch: Any = None  # the batch fetched last (what the batch hooks receive), its index and loader
        self.batch_idx = 0
        self.dataloader_idx = 0
        self.fetched = 0

    @property
    def done(self) -> bool:
        """Whether every item has been fetched."""
        return self._next is _NOTHING

    def __iter__(self) -> DataLoaderIter:
        return self

    def __next__(self) -> Triple:
        if self._next is _NOTHING:
            raise StopIteration
        batch, batch_idx, dataloader_idx = self._next
        self._next = next(self._items, _NOTHING)
        if self._transfer is not None:
            batch = self._transfer(batch, dataloader_idx)
        self.batch, self.batch_idx, self.dataloader_idx = batch, batch_idx, dataloader_idx
        self.fetched += 1
        return batch, batch_idx, dataloader_idx


def loader_triples(
    loader: Any, iterator: Iterator[Any], limit: int | float, dataloader_idx: int = 0
) -> Iterator[Triple]:
    """The ``(batch, batch_idx, dataloader_idx)`` items of one pass over `loader` (`iterator` = its started pass),
    at most `limit` of them: a CombinedLoader gives its own, any other loader its batches numbered from 0."""
    if isinstance(loader, CombinedLoader):
        items: Iterator[Triple] = iter(iterator.__next__, _NOTHING)  # `iter()` of a CombinedLoader starts a new pass
    else:
        items = ((batch, i, dataloader_idx) for i, batch in enumerate(iterator))
    return items if limit == float("inf") else islice(items, int(limit))


def eval_triples(run: Run, loaders: list[Any], limits: list[int | float], key: str) -> Iterator[Triple]:
    """One evaluation pass over every loader in turn, each limited (Lightning's sequential mode); each loader's pass
    is kept on the run (`live_iterators`) until the next, as the batch-by-batch loop keeps it."""
    for dataloader_idx, (loader, limit) in enumerate(zip(loaders, limits)):
        started = run.live_iterators[key] = iter(loader)
        yield from loader_triples(loader, started, limit, dataloader_idx)


def run_eval_with_iter(run: Run, stage: RunningStage, loaders: list[Any], limits: list[int | float]) -> list[Any]:
    """The batches of a validation or test whose step takes `dataloader_iter`: one pass over every loader in turn;
    return each loader's epoch metrics (as the batch-by-batch loop does)."""
    name = "test" if stage == RunningStage.TESTING else "validation"
    store, module = run.eval_store, run.module
    multi = len(loaders) > 1
    fetcher = DataLoaderIter(eval_triples(run, loaders, limits, f"{name}_dataloader_iter"), run.batch_to_device)
    step = run.strategy.step_fn(module, f"{name}_step")
    in_fit = stage == RunningStage.VALIDATING and run.fitting
    while not fetcher.done:
        store.start_batch(fetcher.batch, fetcher.dataloader_idx if multi else None)
        call_hook(run, f"on_{name}_batch_start", fetcher.batch, fetcher.batch_idx, *_idx(fetcher, multi))
        output = _call_step(run, f"{name}_step", step, fetcher)
        if output is _STOPPED:
            break
        call_hook(run, f"on_{name}_batch_end", output, fetcher.batch, fetcher.batch_idx, *_idx(fetcher, multi))
        store.flush(run.metrics)
        if in_fit:
            run.state.val_batches_seen += 1  # saved in checkpoints as the fit's validation progress
    outputs = []
    for dataloader_idx in range(len(loaders)):
        store.in_epoch_phase = True
        outputs.append(store.epoch_metrics(dataloader_idx if multi else None, run.metrics))
    return outputs


def run_predict_with_iter(run: Run, loaders: list[Any], limits: list[int | float], outputs: list[list[Any]]) -> None:
    """The batches of a predict whose `predict_step` takes `dataloader_iter`; each output is appended to
    `outputs[dataloader_idx]` (moved to the CPU)."""
    multi = len(loaders) > 1
    fetcher = DataLoaderIter(eval_triples(run, loaders, limits, "predict_dataloader_iter"), run.batch_to_device)
    step = run.strategy.step_fn(run.module, "predict_step")
    while not fetcher.done:
        call_hook(run, "on_predict_batch_start", fetcher.batch, fetcher.batch_idx, *_idx(fetcher, multi))
        output = _call_step(run, "predict_step", step, fetcher)
        if output is _STOPPED:
            break
        call_hook(run, "on_predict_batch_end", output, fetcher.batch, fetcher.batch_idx, *_idx(fetcher, multi))
        run.state.predict_batches += 1  # `predict_loop.batch_progress` counts it (as in eval_loop)
        outputs[fetcher.dataloader_idx].append(move_data_to_device(output, torch.device("cpu")))


_STOPPED = object()


def _idx(fetcher: DataLoaderIter, multi: bool) -> tuple[int, ...]:
    return (fetcher.dataloader_idx,) if multi else ()


def _call_step(run: Run, name: str, step: Callable[..., Any], fetcher: DataLoaderIter) -> Any:
    """`step(fetcher)` with the `self.log` context and autocast; `_STOPPED` when the step raised StopIteration."""
    module = run.module
    set_fx_name(module, name)
    try:
        with run.precision.autocast():
            return step(fetcher)
    except StopIteration:
        return _STOPPED
    finally:
        set_fx_name(module, None)
