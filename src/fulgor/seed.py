"""Global seeding: `seed_everything`, `reset_seed`, `isolate_rng`, and the dataloader `pl_worker_init_function`,
all deriving seeds exactly as Lightning 2.6.6 does so that random streams match Lightning runs."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from fulgor.rank import log, rank_from_environment, rank_zero_only, rank_zero_warn

__all__ = ["isolate_rng", "pl_worker_init_function", "reset_seed", "seed_everything"]

max_seed_value = 4294967295  # numpy's limit: 2**32 - 1
min_seed_value = 0
_MASK64 = (1 << 64) - 1


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:
        return None
    return numpy


def seed_everything(seed: int | None = None, workers: bool = False, verbose: bool = True) -> int:
    """Seed Python's ``random``, NumPy (if installed) and torch (all devices), and export the seed to subprocesses.

    Sets ``PL_GLOBAL_SEED`` (read by spawned processes and by ``seed=None``) and ``PL_SEED_WORKERS``.

    Args:
        seed: the seed; ``None`` reads ``PL_GLOBAL_SEED`` and falls back to 0 with a warning.
        workers: give every dataloader the Trainer builds :func:`pl_worker_init_function` as ``worker_init_fn``,
            so each worker process (of each rank) gets its own, reproducible seed.
        verbose: log "Seed set to N".

    Returns:
        The seed used.

    Raises:
        ValueError: ``PL_GLOBAL_SEED`` is not an integer, or the seed is outside ``[0, 2**32 - 1]``.
    """
    if seed is None:
        env_seed = os.environ.get("PL_GLOBAL_SEED")
        if env_seed is None:
            seed = 0
            if verbose:
                rank_zero_warn(f"No seed found, seed set to {seed}")
        else:
            try:
                seed = int(env_seed)
            except ValueError:
                raise ValueError(f"Invalid seed specified via PL_GLOBAL_SEED: {env_seed!r}") from None
    elif not isinstance(seed, int):
        seed = int(seed)

    if not min_seed_value <= seed <= max_seed_value:
        raise ValueError(f"{seed} is not in bounds, numpy accepts from {min_seed_value} to {max_seed_value}")

    if verbose:
        rank = rank_from_environment()
        log.info(f"Seed set to {seed}" if rank is None else f"[rank: {rank}] Seed set to {seed}")

    os.environ["PL_GLOBAL_SEED"] = str(seed)
    random.seed(seed)
    np = _numpy()
    if np is not None:
        np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    os.environ["PL_SEED_WORKERS"] = f"{int(workers)}"
    return seed


def reset_seed() -> None:
    """Seed again with the values of the last :func:`seed_everything` (no-op if it never ran)."""
    seed = os.environ.get("PL_GLOBAL_SEED")
    if seed is None:
        return
    workers = os.environ.get("PL_SEED_WORKERS", "0")
    seed_everything(int(seed), workers=bool(int(workers)), verbose=False)


def pl_worker_init_function(worker_id: int, rank: int | None = None) -> None:
    """``worker_init_fn`` for DataLoaders when ``seed_everything(..., workers=True)``: seed torch, ``random`` and NumPy
    in a worker from the worker's base seed, its id and the process rank (Lightning's exact derivation).

    Args:
        worker_id: the DataLoader worker index.
        rank: the global rank; defaults to this process's rank.
    """
    global_rank = rank if rank is not None else rank_zero_only.rank  # type: ignore[attr-defined]
    # torch gives worker i the seed base + i; undo the offset so all 64 bits of the base seed are used.
    base_seed = torch.initial_seed() - worker_id
    log.debug(
        f"Initializing random number generators of process {global_rank} worker {worker_id} with base seed {base_seed}"
    )
    seeds = _seed_sequence(base_seed, worker_id, global_rank, count=4)
    torch.manual_seed(seeds[0])
    random.seed((seeds[1] << 32) | seeds[2])
    np = _numpy()
    if np is not None:
        np.random.seed(np.random.SeedSequence([base_seed, worker_id, global_rank]).generate_state(4))


def _seed_sequence(base_seed: int, worker_id: int, global_rank: int, count: int) -> list[int]:
    """``count`` 64-bit seeds: a MurmurHash3 finalizer over (base, worker, rank), then Knuth's MMIX LCG."""
    x = (base_seed << 32) | (worker_id << 16) | global_rank
    # The finalizer spreads small base seeds over all bits (so low bits are never all zero).
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & _MASK64
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & _MASK64
    x ^= x >> 33
    seeds = []
    for _ in range(count):
        x = (x * 6364136223846793005 + 1) & _MASK64
        seeds.append(x)
    return seeds


def _collect_rng_states(include_cuda: bool) -> dict[str, Any]:
    states: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    np = _numpy()
    if np is not None:
        states["numpy"] = np.random.get_state()
    if include_cuda:
        states["torch.cuda"] = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if "torch.cuda" in states:
        torch.cuda.set_rng_state_all(states["torch.cuda"])
    np = _numpy()
    if np is not None and "numpy" in states:
        np.random.set_state(states["numpy"])
    version, state, gauss = states["python"]
    random.setstate((version, tuple(state), gauss))


@contextmanager
def isolate_rng(include_cuda: bool = True) -> Iterator[None]:
    """Restore the torch (and CUDA), NumPy and Python random states on exit to what they were on entry.

    Args:
        include_cuda: also save and restore the CUDA generators (set False in forked processes that must not
            initialise CUDA).
    """
    states = _collect_rng_states(include_cuda)
    try:
        yield
    finally:
        _set_rng_states(states)
