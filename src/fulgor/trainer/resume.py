"""Exact resume from any step: the training loader's position (consumed batches skipped without loading their data),
the random streams at the moments an epoch's iterator and sampler started, accumulated gradients, and where in the
batch cycle a checkpoint was taken, so that the rest of that cycle runs on resume."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch.utils.data import DataLoader, IterableDataset

from fulgor.combined_loader import CombinedLoader, combined_length
from fulgor.errors import PossibleUserWarning
from fulgor.rank import rank_zero_warn
from fulgor.trainer.loop_progress import stateful_loaders
from fulgor.trainer.state import LoopPhase, TrainerFn, TrainerStatus

if TYPE_CHECKING:
    from fulgor.trainer.run import Run

__all__ = [
    "RESUME_KEY",
    "ResumableIndices",
    "ResumedCycle",
    "capture",
    "continue_epoch",
    "continues_epoch",
    "epoch_iterator",
    "get_rng_states",
    "make_resumable",
    "restore",
    "set_rng_states",
]

RESUME_KEY = "fulgor_resume"  # top-level checkpoint key; Lightning ignores keys it does not know
_FORMAT = 1
# Phases whose checkpoint resumes at an epoch's start: nothing of a batch cycle is left to finish.
_AT_EPOCH_START = (LoopPhase.OUTSIDE_EPOCH, LoopPhase.EPOCH_END)


# ---------------------------------------------------------------------------------------------------------------------
# random streams


def get_rng_states(generators: list[torch.Generator] | tuple[torch.Generator, ...] = ()) -> dict[str, Any]:
    """torch (CPU, and CUDA when initialised), Python and NumPy global states, plus `generators`, in a form that
    `torch.load(weights_only=True)` accepts."""
    states: dict[str, Any] = {"torch": torch.get_rng_state(), "python": _python_state()}
    numpy_state = _numpy_state()
    if numpy_state is not None:
        states["numpy"] = numpy_state
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        states["torch.cuda"] = torch.cuda.get_rng_state_all()
    states["generators"] = [g.get_state() for g in generators]
    return states


def set_rng_states(
    states: dict[str, Any], generators: list[torch.Generator] | tuple[torch.Generator, ...] = ()
) -> None:
    """Put every stream back to `states` (from `get_rng_states` with the same `generators`)."""
    torch.set_rng_state(states["torch"])
    version, internal, gauss = states["python"]
    random.setstate((int(version), tuple(int(x) for x in internal), gauss))
    if "numpy" in states:
        _set_numpy_state(states["numpy"])
    cuda = states.get("torch.cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    for generator, state in zip(generators, states.get("generators", [])):
        generator.set_state(state)


@contextmanager
def rng_as(states: dict[str, Any], generators: list[torch.Generator]) -> Iterator[None]:
    """Run the body with the streams set to `states`, then put back what they were."""
    previous = get_rng_states(generators)
    set_rng_states(states, generators)
    try:
        yield
    finally:
        set_rng_states(previous, generators)


def _python_state() -> list[Any]:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _numpy_state() -> dict[str, Any] | None:
    try:
        import numpy as np
    except ImportError:
        return None
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": torch.from_numpy(np.asarray(keys).astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached": float(cached)}  # fmt: skip


def _set_numpy_state(state: dict[str, Any]) -> None:
    import numpy as np

    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state((state["name"], keys, state["pos"], state["has_gauss"], state["cached"]))


# ---------------------------------------------------------------------------------------------------------------------
# the loader's index stream


class ResumableIndices:
    """Wraps a loader's batch sampler (or sampler): iterates exactly like it, records the random states at the moment
    it starts (so the same order can be drawn again), and can start `skip` batches in, drawing only indices."""

    def __init__(self, inner: Any, generators: list[torch.Generator]) -> None:
        self.inner = inner
        self.generators = generators
        self.epoch: int | None = None  # trainer epoch whose iterator the records below belong to
        self.iter_start: dict[str, Any] | None = None  # states just before `iter(loader)`
        self.sampler_start: dict[str, Any] | None = None  # states when the first index was drawn
        self.replay = False  # set while the resumed epoch's iterator is created

    def __iter__(self) -> Iterator[Any]:
        # DataLoader iterators may call this more than once while being created (the multi-process one does).
        if self.replay and self.sampler_start is not None:
            replayed: Iterator[Any] = self._replayed(self.skip)
            return replayed
        return self._recorded()

    def _recorded(self) -> Iterator[Any]:
        # A generator: this body runs at the first `next`, when the wrapped sampler would draw its seed.
        self.sampler_start = get_rng_states(self.generators)
        yield from self.inner

    def _replayed(self, skip: int) -> Iterator[Any]:
        assert self.sampler_start is not None
        with rng_as(self.sampler_start, self.generators):
            iterator = iter(self.inner)
            first = next(iterator, _END) if skip == 0 else _advance(iterator, skip)
        return _chain_first(first, iterator)

    skip = 0

    def __len__(self) -> int:
        return len(self.inner)

    def __getattr__(self, name: str) -> Any:  # batch_size, drop_last, sampler, set_epoch ... of the wrapped object
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


_END = object()


def _advance(iterator: Iterator[Any], skip: int) -> Any:
    """Drop `skip` items (indices only: no data is loaded) and return the next one (or _END)."""
    for _ in range(skip):
        if next(iterator, _END) is _END:
            return _END
    return next(iterator, _END)


def _chain_first(first: Any, iterator: Iterator[Any]) -> Iterator[Any]:
    if first is _END:
        return
    yield first
    yield from iterator


def make_resumable(loader: Any) -> ResumableIndices | None:
    """Wrap the index stream of a map-style DataLoader in place (once); None for loaders fulgor cannot position.

    The DataLoader keeps its class, dataset, sampler and every argument: only the object its iterators draw indices
    from is wrapped, so the order and the random draws are those of the unwrapped loader.
    """
    if not isinstance(loader, DataLoader) or isinstance(loader.dataset, IterableDataset) or _is_stateful(loader):
        return None
    attribute = "batch_sampler" if loader.batch_sampler is not None else "sampler"
    current = getattr(loader, attribute)
    if isinstance(current, ResumableIndices):
        return current
    wrapper = ResumableIndices(current, _generators(loader))
    object.__setattr__(loader, attribute, wrapper)  # DataLoader refuses to set these after __init__
    return wrapper


def _generators(loader: DataLoader[Any]) -> list[torch.Generator]:
    found: dict[int, torch.Generator] = {}
    candidates = [loader.generator, getattr(loader.sampler, "generator", None)]
    batch_sampler = loader.batch_sampler
    if batch_sampler is not None:
        candidates.append(getattr(getattr(batch_sampler, "sampler", None), "generator", None))
    for generator in candidates:
        if isinstance(generator, torch.Generator):
            found[id(generator)] = generator
    return list(found.values())


def _is_stateful(loader: Any) -> bool:
    return callable(getattr(loader, "state_dict", None)) and callable(getattr(loader, "load_state_dict", None))


def _indices_of(loader: Any) -> ResumableIndices | None:
    if not isinstance(loader, DataLoader):
        return None
    found = loader.batch_sampler if loader.batch_sampler is not None else loader.sampler
    return found if isinstance(found, ResumableIndices) else None


# ---------------------------------------------------------------------------------------------------------------------
# the fit loop's side


def epoch_iterator(run: Run, loader: Any) -> Iterator[Any]:
    """`iter(loader)` for the epoch about to run, positioned after the batches a restored checkpoint had consumed."""
    state = run.state
    if run.loader_states is not None:
        _load_loader_states(run, loader)
    indices = make_resumable(loader)
    point = state.resume_point
    if point is not None and point["epoch"] == state.epoch and (point["consumed"] or _record_for(point, state.epoch)):
        return _resumed_iterator(run, loader, indices, point)
    if point is not None and not point.get("rng_applied"):
        set_rng_states(point["rng"], _generators(loader) if isinstance(loader, DataLoader) else [])
        point["rng_applied"] = True
    if indices is not None:
        indices.epoch = state.epoch
        indices.iter_start = get_rng_states(indices.generators)
    return iter(loader)


def _load_loader_states(run: Run, loader: Any) -> None:
    """Give each stateful training iterable its state from the checkpoint (Lightning's `combined_loader` list, in
    the order of the iterables that have a state)."""
    states, run.loader_states = run.loader_states or [], None
    stateful = stateful_loaders(loader)
    if len(states) != len(stateful):
        rank_zero_warn(
            f"The checkpoint holds the states of {len(states)} stateful training dataloader(s), but this fit has"
            f" {len(stateful)}: their states are not restored and they start from their beginning."
        )
        return
    for iterable, saved in zip(stateful, states):
        iterable.load_state_dict(saved)


def _record_for(point: dict[str, Any], epoch: int) -> dict[str, Any] | None:
    """The loader record, if the checkpoint was taken after this epoch's iterator was created."""
    record = point.get("loader")
    return record if record is not None and record["epoch"] == epoch else None


def _resumed_iterator(run: Run, loader: Any, indices: ResumableIndices | None, point: dict[str, Any]) -> Iterator[Any]:
    consumed = int(point["consumed"])
    if _is_stateful(loader) and point.get("loader_state") is not None:
        loader.load_state_dict(point["loader_state"])
        return iter(loader)
    record = _record_for(point, run.state.epoch)
    if indices is None or record is None:
        # Lightning's rule: no warning when every batch was consumed or the loader has `state_dict`/`load_state_dict`
        if 0 < consumed < _length(loader) and not _is_stateful(loader):
            _warn_not_resumable(loader, consumed)
        return iter(loader)
    indices.epoch, indices.iter_start, indices.sampler_start = record["epoch"], record["iter_start"], record["sampler"]
    indices.replay, indices.skip = True, consumed
    try:
        with rng_as(record["iter_start"], indices.generators):
            iterator: Iterator[Any] = iter(loader)
            return iterator
    finally:
        indices.replay, indices.skip = False, 0


def _length(loader: Any) -> float:
    if isinstance(loader, CombinedLoader):
        return combined_length(loader)  # its `len` needs a running pass
    try:
        return len(loader)
    except TypeError:  # an IterableDataset without `__len__`
        return float("inf")


def _warn_not_resumable(loader: Any, consumed: int) -> None:
    rank_zero_warn(  # Lightning's first sentence (code filtering warnings matches it), then what fulgor does
        "You're resuming from a checkpoint that ended before the epoch ended and your dataloader is not resumable."
        f" fulgor cannot position this training loader ({type(loader).__name__}"
        f"{' over an IterableDataset' if isinstance(getattr(loader, 'dataset', None), IterableDataset) else ''},"
        " without `state_dict`/`load_state_dict`): it restarts from its beginning and the epoch runs only its remaining"
        f" batches, so the first {consumed} batches are seen again and the last ones are not. Everything else (weights,"
        " optimizer, random streams, counters) is exact. Give the loader `state_dict`/`load_state_dict` (e.g."
        " torchdata's StatefulDataLoader) or use a map-style dataset for an exact resume.",
        PossibleUserWarning,
    )


class ResumedCycle(NamedTuple):
    """The batch cycle a mid-epoch checkpoint was taken in: the fit loop finishes it from `phase` on."""

    phase: LoopPhase
    stepping: bool  # whether that batch ended with an optimizer step
    consumed: int  # batches of the epoch already done once the cycle is finished


def continue_epoch(run: Run) -> ResumedCycle | None:
    """After the epoch's iterator exists: put back counters, random streams and gradients of a mid-epoch checkpoint
    and return the cycle it was taken in (None when the epoch starts from its beginning)."""
    state = run.state
    point = state.resume_point
    state.resume_point = None
    if point is None or point["epoch"] != state.epoch or LoopPhase(point["phase"]) in _AT_EPOCH_START:
        return None
    counters = point["counters"]
    for name in ("batch_idx", "total_batch_idx", "val_batches_seen", "batches_that_stepped"):
        setattr(state, name, int(counters[name]))
    state.is_last_batch = bool(counters["is_last_batch"])
    if not point.get("rng_applied"):
        set_rng_states(point["rng"], _loader_generators(run))
    _restore_grads(run, point.get("grads"))
    return ResumedCycle(LoopPhase(point["phase"]), bool(point["stepping"]), int(point["consumed"]))


def _loader_generators(run: Run) -> list[torch.Generator]:
    loader = run.train_loader
    return _generators(loader) if isinstance(loader, DataLoader) else []


def _restore_grads(run: Run, grads: dict[str, torch.Tensor] | None) -> None:
    if not grads:
        return
    for name, param in run.module.named_parameters():
        saved = grads.get(name)
        if saved is not None:
            param.grad = saved.to(device=param.device, dtype=param.dtype).clone()


def before_validation(run: Run) -> None:
    """Remember the streams and counters as they are before an in-fit validation: a checkpoint taken inside it
    resumes by running that validation again from its start."""
    run.state.pre_validation = (get_rng_states(_loader_generators(run)), run.state.val_batches_seen)


# ---------------------------------------------------------------------------------------------------------------------
# checkpoint side


def capture(run: Run) -> dict[str, Any] | None:
    """What a checkpoint needs beyond Lightning's keys to resume exactly where it was taken (None outside a fit)."""
    state = run.state
    # interrupted: a save from `on_exception`
    if run.fn != TrainerFn.FITTING or state.status not in (TrainerStatus.RUNNING, TrainerStatus.INTERRUPTED):
        return None
    phase = state.phase
    counters = {**state.counters(), "is_last_batch": bool(state.is_last_batch)}
    rng = get_rng_states(_loader_generators(run))
    if phase == LoopPhase.VALIDATING and state.pre_validation is not None:
        rng, counters["val_batches_seen"] = state.pre_validation
    consumed = _consumed(state.batch_idx, phase)
    point: dict[str, Any] = {
        "format": _FORMAT,
        "phase": phase.value,
        "epoch": state.epoch + (1 if phase == LoopPhase.EPOCH_END else 0),
        "consumed": consumed,
        "stepping": _stepped(run, consumed - 1) if consumed else False,
        "counters": counters,
        "rng": rng,
        "loader": _loader_record(run),
    }
    loader = run.train_loader
    if phase not in _AT_EPOCH_START and _is_stateful(loader):
        point["loader_state"] = loader.state_dict()
    accumulate = int(run.config.accumulate_grad_batches)
    if accumulate > 1 and consumed % accumulate and phase not in _AT_EPOCH_START:
        point["grads"] = {n: p.grad for n, p in run.module.named_parameters() if p.grad is not None}
    return point


def _consumed(batch_idx: int, phase: LoopPhase) -> int:
    """Batches of the epoch that are done: the running one counts from its `on_train_batch_end` on."""
    if phase == LoopPhase.BATCH_END:
        return batch_idx + 1
    if phase in _AT_EPOCH_START:
        return 0
    return batch_idx


def _stepped(run: Run, batch_idx: int) -> bool:
    """Whether batch `batch_idx` of this epoch ended with an optimizer step (the fit loop's `_will_step` rule)."""
    accumulate = run.config.accumulate_grad_batches
    n = run.num_training_batches
    return accumulate == 1 or (batch_idx + 1) % accumulate == 0 or batch_idx + 1 == n or run.state.is_last_batch


def _loader_record(run: Run) -> dict[str, Any] | None:
    indices = _indices_of(run.train_loader)
    if indices is None or indices.iter_start is None:
        return None
    return {"epoch": indices.epoch, "iter_start": indices.iter_start, "sampler": indices.sampler_start}


def _continued_cut_epoch(run: Run, point: dict[str, Any]) -> dict[str, Any]:
    """An epoch-end checkpoint of an epoch that ended before its last batch (`max_steps` reached, or a stop request):
    a step-based fit (`max_steps` set) continues that epoch with its next batch, without `on_train_epoch_start`, as
    Lightning does (and as the uninterrupted run would have); an epoch-based fit starts the next epoch."""
    counters = point["counters"]
    done = int(counters.get("batch_idx", 0))
    if LoopPhase(point["phase"]) != LoopPhase.EPOCH_END or counters["is_last_batch"] or not done:
        return point
    if run.config.max_steps == -1:
        return point
    return {**point, "phase": LoopPhase.BETWEEN_BATCHES.value, "epoch": int(point["epoch"]) - 1, "consumed": done}


def continues_epoch(run: Run) -> bool:
    """Whether the epoch about to open continues one a restored checkpoint was taken inside (Lightning then skips
    `on_train_epoch_start`: that epoch already started)."""
    point = run.state.resume_point
    if point is None or point["epoch"] != run.state.epoch:
        return False
    return LoopPhase(point["phase"]) not in _AT_EPOCH_START


def restore(run: Run, point: dict[str, Any]) -> None:
    """Set the epoch-level counters from a fulgor checkpoint; the rest waits for the epoch's iterator (see
    `epoch_iterator` and `continue_epoch`)."""
    point = _continued_cut_epoch(run, point)
    state = run.state
    counters = point["counters"]
    state.epoch = int(point["epoch"])
    state.global_step = int(counters["global_step"])
    state.batches_that_stepped = int(counters["batches_that_stepped"])
    state.total_batch_idx = int(counters["total_batch_idx"])
    state.val_batches_seen = int(counters["val_batches_seen"])
    state.resume_point = dict(point)
    # Inside an epoch: the fit loop is "restarting" until it ends. An epoch-end checkpoint is not a restart (as in
    # Lightning), unless the fit is step-based (`max_steps` set).
    at_epoch_end = LoopPhase(point["phase"]) == LoopPhase.EPOCH_END and run.config.max_steps == -1
    if int(counters.get("batch_idx", 0)) > 0 and not at_epoch_end:
        run.restarted_epoch = state.epoch
