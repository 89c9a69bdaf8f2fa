"""How DDP processes come to exist: `ScriptLauncher` re-runs the user's script once per extra local rank (`ddp`),
`MultiProcessingLauncher` runs the entry point in torch.multiprocessing workers (`ddp_spawn`, `ddp_fork`) and brings
rank 0's results back; watchdogs make a dead process end the whole job with a clear message instead of a hang."""

from __future__ import annotations

import atexit
import dataclasses
import os
import pickle
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fulgor.module import LightningModule
from fulgor.stop_request import STOP
from fulgor.strategies.cluster_environment import ClusterEnvironment

if TYPE_CHECKING:
    from fulgor.strategies.ddp import DDPStrategy

# Set in the processes `ScriptLauncher` starts: the pid of the launching process, which the children watch.
LAUNCHER_PID_ENV = "FULGOR_LAUNCHER_PID"
_POLL_SECONDS = 0.2
# How long a failing launcher waits for a child's exit code before killing it (only on the failure path).
_GRACE_SECONDS = 1.0
_TAIL_LINES = 200
_RANK_PREFIX = re.compile(r"^\[rank\d+\]: ")


def _relay(child: subprocess.Popen[bytes], tail: deque[str]) -> None:
    """Copy a child's stderr to this process's stderr, keeping its last lines."""
    assert child.stderr is not None
    for raw in iter(child.stderr.readline, b""):
        tail.append(raw.decode(errors="replace").rstrip("\n"))
        try:
            sys.stderr.buffer.write(raw)
            sys.stderr.flush()
        except (AttributeError, ValueError, OSError):  # a replaced or closed stderr: the tail is still kept
            pass


def _last_exception_line(lines: list[str]) -> str | None:
    """The `Type: message` line of the last traceback in `lines` (the first unindented line after its frames)."""
    lines = [_RANK_PREFIX.sub("", line, count=1) for line in lines]  # torch's "[rank1]: " prefix of each line
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")]
    if not starts:
        return None
    return next((line for line in lines[starts[-1] + 1 :] if line and not line[0].isspace()), None)


def _stop_job(message: str) -> None:
    """Print why the job stops and end this process at once: other threads may be blocked in a collective."""
    sys.stdout.flush()
    sys.stderr.write(f"\n{message}\n")
    sys.stderr.flush()
    os._exit(1)


def script_command() -> list[str]:
    """The command that runs this program again: `python script.py args` or `python -m module args`."""
    import __main__

    if os.environ.get("FULGOR_COMPAT") == "1":  # under `fulgor run`: the other ranks must get the Lightning aliases too
        return [sys.executable, "-m", "fulgor", "run", os.path.abspath(sys.argv[0]), *sys.argv[1:]]
    spec = getattr(__main__, "__spec__", None)
    if spec is None:
        return [sys.executable, os.path.abspath(sys.argv[0]), *sys.argv[1:]]
    return [sys.executable, "-m", spec.name, *sys.argv[1:]]


class ScriptLauncher:
    """Start `num_processes - 1` copies of the running script (local ranks 1..n-1) on this node.

    Args:
        environment: this process's rank layout (must not create processes externally).
        num_processes: processes per node (`devices`).
        num_nodes: the `num_nodes` flag.
    """

    is_interactive_compatible = False

    def __init__(self, environment: ClusterEnvironment, num_processes: int, num_nodes: int) -> None:
        self.environment = environment
        self.num_processes = num_processes
        self.num_nodes = num_nodes
        self.children: list[subprocess.Popen[bytes]] = []
        self._tails: list[deque[str]] = []  # the last stderr lines of each child
        self._finished = False

    @property
    def launched(self) -> bool:
        return bool(self.children)

    def launch(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Start the other local ranks (they re-run the script), then run `function(*args, **kwargs)` here
        (`Fabric.launch`); returns its result."""
        self.launch_children()
        return function(*args, **kwargs)

    def launch_children(self) -> None:
        """Set the rendezvous variables and start the other local ranks (once per process)."""
        if self.children or self.environment.creates_processes_externally:
            return
        env = self.environment
        port = env.main_port
        os.environ.update(
            MASTER_ADDR=env.main_address,
            MASTER_PORT=str(port),
            NODE_RANK=str(env.node_rank()),
            LOCAL_RANK="0",
            WORLD_SIZE=str(self.num_processes * self.num_nodes),
        )
        command = script_command()
        for local_rank in range(1, self.num_processes):
            child_env = {**os.environ, "LOCAL_RANK": str(local_rank), LAUNCHER_PID_ENV: str(os.getpid())}
            child = subprocess.Popen(command, env=child_env, stderr=subprocess.PIPE)
            self.children.append(child)
            # The child's stderr is relayed line by line; its last lines name its exception if it fails.
            tail: deque[str] = deque(maxlen=_TAIL_LINES)
            self._tails.append(tail)
            threading.Thread(target=_relay, args=(child, tail), name="fulgor-ddp-stderr", daemon=True).start()
        threading.Thread(target=self._watch_children, name="fulgor-ddp-watchdog", daemon=True).start()
        atexit.register(self.wait_children)

    def _watch_children(self) -> None:
        while not self._finished:
            dead = self.failed_child()
            if dead is not None:
                self.kill_children()
                _stop_job(dead)
            time.sleep(_POLL_SECONDS)

    def failed_child(self) -> str | None:
        """A message naming the first child that exited with an error, or None."""
        for local_rank, child in enumerate(self.children, start=1):
            code = child.poll()
            if STOP.handled and code == STOP.options.exit_code:
                continue  # an agreed preemption stop: every rank saves and exits with this code, not a failure
            if code is not None and code != 0:
                rank = self.environment.node_rank() * self.num_processes + local_rank
                time.sleep(_POLL_SECONDS)  # the relay thread reads what the child wrote before it exited
                last = _last_exception_line(list(self._tails[local_rank - 1])) if self._tails else None
                raised = f" after raising `{last}`" if last else ""
                return (
                    f"fulgor: the process of global rank {rank} (local rank {local_rank}, pid {child.pid}) exited"
                    f" with code {code}{raised}. Stopping every process of this job so that none waits forever for it."
                )
        return None

    def kill_children(self) -> None:
        """Terminate every child still running (after a failure in this process or in one of them), first saying
        which child failed when one did: its death is usually what made this process fail."""
        self._finished = True
        dead = self.failed_child()
        deadline = time.monotonic() + _GRACE_SECONDS
        while dead is None and time.monotonic() < deadline:
            # A peer's death reaches this process (as a gloo/nccl error) before the OS reports the exit code.
            time.sleep(0.05)
            dead = self.failed_child()
        if dead is not None:
            sys.stderr.write(f"\n{dead}\n")
            failing = sys.exc_info()[1]
            if failing is not None:  # this process fails because of the peer (e.g. gloo's "Connection closed"): say so
                failing.add_note(dead)
        for child in self.children:
            if child.poll() is None:
                child.kill()
        for child in self.children:
            child.wait()

    def wait_children(self) -> None:
        """At exit of the launching process: let the children finish the script too (the watchdog keeps watching)."""
        for child in self.children:
            child.wait()
        self._finished = True


def watch_launcher() -> None:
    """In a child `ScriptLauncher` started: exit (with a message) as soon as the launching process is gone, so a
    crash of rank 0 never leaves the other ranks waiting in a collective."""
    parent = os.environ.get(LAUNCHER_PID_ENV)
    if parent is None or int(parent) != os.getppid():
        return
    rank = os.environ.get("LOCAL_RANK", "?")

    def watch() -> None:
        while os.getppid() == int(parent):
            time.sleep(_POLL_SECONDS)
        _stop_job(
            f"fulgor: the launching process (local rank 0, pid {parent}) exited; local rank {rank} stops too so that"
            " it does not wait forever for it."
        )

    threading.Thread(target=watch, name="fulgor-ddp-parent-watchdog", daemon=True).start()


class MultiProcessingLauncher:
    """Run an entry point in `num_processes` torch.multiprocessing workers ("spawn" or "fork"); only the calling
    process continues afterwards, with rank 0's weights, metrics, callback states and trainer state.

    Args:
        strategy: the DDP strategy being launched.
        start_method: "spawn" (the default) or "fork".
    """

    def __init__(self, strategy: DDPStrategy, start_method: str = "spawn") -> None:
        self.strategy = strategy
        self.start_method = start_method
        self.in_worker = False

    @property
    def is_interactive_compatible(self) -> bool:
        return self.start_method == "fork"

    def launch(self, function: Callable[..., Any], *args: Any, trainer: Any = None, **kwargs: Any) -> Any:
        """Run `function(*args, **kwargs)` on every rank and return rank 0's return value in this process.

        Args:
            function: usually the Trainer's fit/validate/test/predict implementation.
            *args: its positional arguments (the LightningModule first, as for `Trainer.fit`).
            trainer: the Trainer whose state rank 0 sends back (None for `Fabric.launch`: only the return value).
            **kwargs: its keyword arguments.
        """
        import torch
        import torch.multiprocessing as mp

        env = self.strategy.cluster_environment
        assert env is not None, "the strategy is configured before it launches"
        os.environ.update(MASTER_ADDR=env.main_address, MASTER_PORT=str(env.main_port))
        with tempfile.TemporaryDirectory(prefix="fulgor-spawn-") as tmp:
            path = os.path.join(tmp, "rank0.pt")
            call: Any = (self, trainer, function, args, kwargs)
            if self.start_method == "spawn":
                # Plain pickle copies tensors; torch.multiprocessing's pickler would put the parameters in shared
                # memory, and every worker would then update the same weights.
                call = pickle.dumps(call)
            mp.start_processes(  # type: ignore[attr-defined,no-untyped-call]
                _run_worker,
                args=(call, path),
                nprocs=self.strategy.num_processes,
                start_method=self.start_method,
            )
            results = torch.load(path, weights_only=False)
        if trainer is not None:
            _restore_in_main(trainer, args, results)
        return results["return"]


def _run_worker(local_rank: int, call: Any, path: str) -> None:
    if isinstance(call, bytes):
        call = pickle.loads(call)
    launcher, trainer, function, args, kwargs = call
    launcher.in_worker = True
    launcher.strategy.set_local_rank(local_rank)
    value = function(*args, **kwargs)
    if launcher.strategy.global_rank == 0:
        import torch

        torch.save(_rank_zero_results(trainer, value), path)
    _end_worker(forked=launcher.start_method == "fork")


def _end_worker(forked: bool) -> None:
    """End a worker that finished its work: leave the process group while every rank is still here (a `Fabric.launch`
    function leaves it joined), run the `atexit` handlers (a spawned worker's own; a forked one's are the parent's,
    which Python's multiprocessing does not run in children either), flush, and exit without the interpreter's
    teardown.

    That teardown destroys torch's C++ objects in no set order, and now and then one of gloo's threads is still
    joinable then: the worker aborts ("terminate called without an active exception", SIGABRT; Lightning's own tests
    retry for it) after its work was done, and the whole launch fails. Objects the function left open are not
    finalized: close files it writes (a `with` block does)."""
    import logging

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    if not forked:
        atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(0)


def _rank_zero_results(trainer: Any, value: Any) -> dict[str, Any]:
    """What the calling process takes over from rank 0: the return value, weights, counters, metrics, callbacks."""
    if trainer is None:
        return {"return": value}
    module = trainer.lightning_module
    return {
        "return": value,
        "state_dict": {k: v.cpu() for k, v in module.state_dict().items()},
        "state": trainer.state,
        "callback_metrics": dict(trainer.callback_metrics),
        "logged_metrics": dict(trainer.logged_metrics),
        "callbacks": {cb.state_key: cb.state_dict() for cb in trainer.callbacks if hasattr(cb, "state_key")},
    }


def _restore_in_main(trainer: Any, args: tuple[Any, ...], results: dict[str, Any]) -> None:
    """Load rank 0's weights (non-strictly, as Lightning) and state into the objects of the calling process."""
    module = next((a for a in args if isinstance(a, LightningModule)), None)
    if module is None and trainer.state.fn is not None:
        module = trainer.lightning_module
    if module is not None:
        module.load_state_dict(results["state_dict"], strict=False)
        module.trainer = trainer
    for field in dataclasses.fields(results["state"]):
        setattr(trainer.state, field.name, getattr(results["state"], field.name))
    trainer.callback_metrics.update(results["callback_metrics"])
    trainer.logged_metrics.update(results["logged_metrics"])
    for callback in trainer.callbacks:
        state = results["callbacks"].get(getattr(callback, "state_key", None)) or {}
        # Attributes, not `load_state_dict`: that one refuses state from another dirpath, and this callback in the
        # calling process never resolved its dirpath.
        for key, value in state.items():
            if hasattr(callback, key):
                setattr(callback, key, value)
