"""One fresh-process benchmark run, started by run.py: import time (W4), time to the first optimizer step (W4),
peak resident memory of W3 (W5), and W3 under DDP on 2 CPU processes (W6). Writes its result to a file.

Usage: python benchmarks/child.py MODE RUNNER OUT [ARGS...]; RUNNER is raw, fulgor or pytorch-lightning
(or, in import mode, ignite or accelerate).
"""

import time

START = time.perf_counter()  # before anything else, so import time is measured from here

import importlib  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

# The Lightning-style frameworks (every mode) and the peers of peers.py (import mode only).
FRAMEWORKS = {"fulgor": "fulgor", "pytorch-lightning": "pytorch_lightning"}
PEERS = {"ignite": "ignite.engine", "accelerate": "accelerate"}  # = peers.MODULES, not imported: it imports torch


def save(out: str, **values: object) -> None:
    import torch

    torch.save(values, out)


def import_time(runner: str, out: str) -> None:
    """Seconds to `import torch`, then to import the framework on top of it."""
    import torch

    after_torch = time.perf_counter()
    if runner != "raw":
        importlib.import_module({**FRAMEWORKS, **PEERS}[runner])
    done = time.perf_counter()
    del torch
    save(out, torch_s=after_torch - START, framework_s=done - after_torch)


def first_step(runner: str, out: str, n_train: str, started: str) -> None:
    """Wall time from the parent's Popen to the first `optimizer.step` returning on W3 (default Trainer flags)."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    def stop(*_: object) -> None:
        save(out, seconds=time.time() - float(started))
        os._exit(0)  # the measurement is done: skip the rest of the epoch

    register_optimizer_step_post_hook(stop)
    _run_w3(runner, int(n_train))


def first_step_share(runner: str, out: str, n_train: str) -> None:
    """The runner's own part of the time to the first step: from importing the framework (raw: from creating the
    optimizer) to the first `optimizer.step` returning. `torch._dynamo`, which the first optimizer constructor imports
    in every runner (about 2 s of noisy import here), is imported before the clock starts."""
    import torch._dynamo  # imported for its side effect: its import is out of the timed part
    import workloads
    from torch.optim.optimizer import register_optimizer_step_post_hook

    started: list[float] = []
    stdout = os.dup(1)  # the run below sends fd 1 to /dev/null

    def stop(*_: object) -> None:
        os.dup2(stdout, 1)
        save(out, seconds=time.perf_counter() - started[0])
        os._exit(0)

    register_optimizer_step_post_hook(stop)
    import torch

    torch.set_num_threads(1)
    (encoder, decoder), (train, val) = workloads.w3_nets(), workloads.w3_loaders(int(n_train))
    started.append(time.perf_counter())
    if runner == "raw":
        optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=1e-3)
        for x, _ in train:
            loss = torch.nn.functional.mse_loss(decoder(encoder(x)), x)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return
    pl = importlib.import_module(FRAMEWORKS[runner])
    with tempfile.TemporaryDirectory() as root, workloads.quiet():
        pl.Trainer(max_epochs=1, default_root_dir=root).fit(workloads.w3_module(pl), train, val)


def peak_memory(runner: str, out: str, n_train: str) -> None:
    """W3 in a fresh process; `ru_maxrss` (KiB on Linux) is the peak resident set size of the whole process."""
    import resource

    result = _run_w3(runner, int(n_train))
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    save(out, rss_mib=rss_kib / 1024, wall=result.wall, loss=result.loss, weights=result.weights)


def _run_w3(runner: str, n_train: int):  # type: ignore[no-untyped-def]
    import torch

    torch.set_num_threads(1)
    import workloads

    if runner == "raw":
        return workloads.raw_w3(n_train)
    return workloads.framework_w3(importlib.import_module(FRAMEWORKS[runner]), n_train)


def ddp(runner: str, out: str, n_train: str) -> None:
    """W6: W3 on 2 gloo processes; rank 0 reports the time of the epoch + validation and its final weights."""
    import torch

    torch.set_num_threads(1)
    import ddp_workload

    if runner == "raw":
        result = ddp_workload.raw_ddp(int(n_train), __file__, sys.argv[1:])
    else:
        result = ddp_workload.framework_ddp(importlib.import_module(FRAMEWORKS[runner]), int(n_train))
    if result is not None:
        save(out, wall=result.wall, loss=result.loss, weights=result.weights)


MODES = {
    "import": import_time,
    "first_step": first_step,
    "first_step_share": first_step_share,
    "memory": peak_memory,
    "ddp": ddp,
}

if __name__ == "__main__":
    MODES[sys.argv[1]](*sys.argv[2:])
