"""`TensorBoardLogger`: scalars, hparams and graphs as TensorBoard event files in `<save_dir>/<name>/version_N/`, plus
`hparams.yaml`, written through tensorboard's own `SummaryWriter` (tensorboardX's when only that is installed), as
Lightning writes them. tensorboard is imported when the writer is first needed, not with the logger."""

from __future__ import annotations

import importlib.util
import os
from argparse import Namespace
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from torch import Tensor
from torch.nn import Module

from fulgor import fs
from fulgor.hparams import save_hparams_to_yaml
from fulgor.loggers._utils import add_prefix, convert_params, flatten_dict, sanitize_params
from fulgor.loggers.logger import rank_zero_experiment
from fulgor.loggers.versioning import VersionedLogger
from fulgor.rank import rank_zero_only, rank_zero_warn
from fulgor.torchscript import jit_scripting

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

__all__ = ["TensorBoardLogger"]

_INSTALL_HINT = "Install it with `pip install tensorboard` (or `pip install tensorboardX`)."


def tensorboard_available() -> bool:
    """Whether ``tensorboard`` (used through ``torch.utils.tensorboard``) is installed, without importing it."""
    return importlib.util.find_spec("tensorboard") is not None


# a module-level flag (not a call) so that jsonargparse's source analysis can pick the import branch
_HAVE_TENSORBOARD = tensorboard_available()


def _tensorboardx_available() -> bool:
    return importlib.util.find_spec("tensorboardX") is not None


class TensorBoardLogger(VersionedLogger):
    """Log to TensorBoard event files in ``save_dir/name/version_N`` (Lightning's layout).

    Also writes ``hparams.yaml`` next to the event files. Uses ``torch.utils.tensorboard`` when ``tensorboard`` is
    installed, else ``tensorboardX``, imported on the first call that writes (``log_metrics``, ``log_hyperparams``,
    ``log_graph``, ``experiment``, ``finalize``): importing it takes a few tenths of a second. Only global rank 0
    writes.

    Args:
        save_dir: the directory holding all experiments (a local path, or a URL when fsspec is installed).
        name: the experiment name; ``None`` or ``""`` puts versions directly in ``save_dir``.
        version: an int (directory ``version_<N>``), a string (used as the directory name), or ``None`` for the next
            free integer after the existing ``version_*`` directories.
        log_graph: record the model graph, traced with the module's ``example_input_array``.
        default_hp_metric: when hyperparameters are logged without metrics, log ``hp_metric = -1`` so TensorBoard's
            HPARAMS tab shows them.
        prefix: prepended to every metric name, joined with ``"-"``.
        sub_dir: an extra directory level under the version directory (``save_dir/name/version_N/sub_dir``).
        **kwargs: passed to ``SummaryWriter`` (``max_queue``, ``flush_secs``, ``filename_suffix``, ...).

    Raises:
        ModuleNotFoundError: neither tensorboard nor tensorboardX is installed.

    Example::

        logger = TensorBoardLogger("tb_logs", name="my_model")
        trainer = Trainer(logger=logger)
    """

    NAME_HPARAMS_FILE = "hparams.yaml"
    LOGGER_JOIN_CHAR = "-"

    def __init__(
        self,
        save_dir: str | os.PathLike[str],
        name: str | None = "lightning_logs",
        version: int | str | None = None,
        log_graph: bool = False,
        default_hp_metric: bool = True,
        prefix: str = "",
        sub_dir: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> None:
        if not tensorboard_available() and not _tensorboardx_available():
            raise ModuleNotFoundError(f"`TensorBoardLogger` needs `tensorboard` or `tensorboardX`. {_INSTALL_HINT}")
        super().__init__(save_dir, name, version, sub_dir=sub_dir, expand_log_dir=True)
        if log_graph and not tensorboard_available():
            rank_zero_warn(
                "You set `TensorBoardLogger(log_graph=True)` but `tensorboard` is not available;"
                " the graph will not be logged. Install it with `pip install tensorboard`."
            )
        self._log_graph = log_graph and tensorboard_available()
        self._default_hp_metric = default_hp_metric
        self._prefix = prefix
        self._kwargs = kwargs
        self._experiment: SummaryWriter | None = None
        # Set by `_prepare_for_setup`, where Lightning opens its writer: the event file is then owed by `finalize`.
        self._event_file_due = False
        self.hparams: dict[str, Any] = {}

    @property
    def sub_dir(self) -> str | None:
        """The extra directory level under the version directory, if any."""
        return self._sub_dir

    @property
    @rank_zero_experiment
    def experiment(self) -> SummaryWriter:
        """The ``SummaryWriter`` (created, with the directories, on first access; a dummy on other ranks).

        Use it for anything TensorBoard can show: ``logger.experiment.add_image("digits", grid, step)``.
        """
        if self._experiment is None:
            if self.root_dir:
                fs.makedirs(self._on_disk(self.root_dir), exist_ok=True)
            # imported here, in this shape, so that jsonargparse (LightningCLI) resolves `**kwargs` to its arguments
            if _HAVE_TENSORBOARD:
                from torch.utils.tensorboard import SummaryWriter
            else:  # pragma: no cover - only without tensorboard
                from tensorboardX import SummaryWriter  # type: ignore[no-redef,import-not-found,unused-ignore]
            self._experiment = SummaryWriter(log_dir=self.log_dir, **self._kwargs)
        return self._experiment

    def _writer(self) -> SummaryWriter:
        # Only called from rank-zero-only methods, where `experiment` is the real writer.
        return cast("SummaryWriter", self.experiment)

    @rank_zero_only
    def _prepare_for_setup(self) -> None:
        """Create the log directory before the setup hooks run (the Trainer calls this instead of ``experiment``).

        Lightning opens its writer at this point; fulgor opens it, and imports tensorboard, with the first thing
        logged, or else in :meth:`finalize`, so the run ends with the same files.
        """
        if self._experiment is None:
            fs.makedirs(self._on_disk(self.log_dir), exist_ok=True)
            self._event_file_due = True

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Write each metric as a scalar (a dict value becomes a group of scalars via ``add_scalars``).

        Raises:
            ValueError: a value is neither a number, a one-element tensor nor a dict of numbers.
        """
        metrics = add_prefix(metrics, self._prefix, self.LOGGER_JOIN_CHAR)
        writer = self._writer()
        for name, value in metrics.items():
            if isinstance(value, Tensor):
                value = value.item()
            if isinstance(value, dict):
                writer.add_scalars(name, value, step)
                continue
            try:
                writer.add_scalar(name, value, step)
            except Exception as err:
                raise ValueError(
                    f"\n you tried to log {value} which is currently not supported. Try a dict or a scalar/tensor."
                ) from err

    @rank_zero_only
    def log_hyperparams(
        self,
        params: Mapping[str, Any] | Namespace | None,
        metrics: Mapping[str, Any] | float | None = None,
        step: int | None = None,
    ) -> None:
        """Record hyperparameters for TensorBoard's HPARAMS tab (and for ``hparams.yaml``).

        Nested dicts are flattened with ``/``; values TensorBoard cannot show become strings.

        Args:
            params: the hyperparameters.
            metrics: metrics to show next to them (a number is logged as ``hp_metric``); when ``None`` and
                ``default_hp_metric`` is on, ``hp_metric = -1`` is logged.
            step: the step for those metrics.
        """
        raw = convert_params(params)
        self.hparams.update(raw)
        flat = sanitize_params(flatten_dict(raw))
        flat = {k: str(v) if getattr(v, "ndim", 0) > 1 else v for k, v in flat.items()}
        if metrics is None:
            metrics = {"hp_metric": -1} if self._default_hp_metric else None
        elif not isinstance(metrics, Mapping):
            metrics = {"hp_metric": metrics}
        if not metrics:
            return  # nothing for the HPARAMS tab: no writer needed
        self.log_metrics(metrics, step)
        if tensorboard_available():
            from torch.utils.tensorboard.summary import hparams
        else:  # pragma: no cover - only without tensorboard
            from tensorboardX.summary import hparams  # type: ignore[no-redef,import-not-found,unused-ignore]
        file_writer = self._writer()._get_file_writer()  # type: ignore[no-untyped-call]
        for summary in hparams(flat, dict(metrics)):  # type: ignore[no-untyped-call]
            file_writer.add_summary(summary, step)

    @rank_zero_only
    def log_graph(self, model: Module, input_array: Any = None) -> None:
        """Trace ``model`` with ``input_array`` (default: its ``example_input_array``) and write the graph.

        Does nothing unless the logger was created with ``log_graph=True``. The input goes through the module's
        batch-transfer hooks first, as a training batch would.
        """
        if self._log_graph:
            self._write_graph(model, input_array)

    def _write_graph(self, model: Module, input_array: Any) -> None:
        if input_array is None:
            input_array = getattr(model, "example_input_array", None)
        if input_array is None:
            rank_zero_warn(
                "Could not log computational graph to TensorBoard: The `model.example_input_array` attribute"
                " is not set or `input_array` was not given."
            )
            return
        if not isinstance(input_array, (Tensor, tuple)):
            rank_zero_warn(
                "Could not log computational graph to TensorBoard: The `input_array` or `model.example_input_array`"
                f" has type {type(input_array)} which can't be traced by TensorBoard. Make the input array a tuple"
                " representing the positional arguments to the model's `forward()` implementation."
            )
            return
        model = _unwrapped(model)
        input_array = _through_transfer_hooks(model, input_array)
        with _tracing(model):
            self._writer().add_graph(model, input_array)

    @rank_zero_only
    def save(self) -> None:
        """Flush the event file; write ``hparams.yaml`` once the log directory exists (if not written yet).

        Does not open the writer: before anything is logged there is nothing to flush (Lightning's ``save`` opens
        it; fulgor leaves that to the first log call or :meth:`finalize`, so the Trainer's ``save`` at fit start
        does not import tensorboard).
        """
        if self._experiment is not None:
            self._experiment.flush()
        log_dir = self._on_disk(self.log_dir)
        hparams_file = fs.join(log_dir, self.NAME_HPARAMS_FILE)
        if fs.isdir(log_dir) and not fs.exists(hparams_file):
            save_hparams_to_yaml(hparams_file, self.hparams)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Flush and close the writer; after a successful run also :meth:`save` (writes ``hparams.yaml``).

        Opens the writer first if nothing was logged but Lightning would have one by now (after
        ``_prepare_for_setup``, or on success), so the run leaves the same event file.
        """
        if self._experiment is None and (self._event_file_due or status == "success"):
            self._writer()
        if self._experiment is not None:
            self._experiment.flush()
            self._experiment.close()
        if status == "success":
            self.save()

    def __getstate__(self) -> dict[str, Any]:
        # The writer holds a thread and an open file; it is recreated on first use after unpickling.
        state = self.__dict__.copy()
        state["_experiment"] = None
        return state


def _unwrapped(model: Module) -> Module:
    """The module whose graph is drawn: a compiled module's original, and the module inside a wrapper that exposes it
    as a `module` property (Fabric's), whose own graph would only show the wrapping. A submodule a model merely
    stores as `self.module` is an attribute, not a property of its class, and is left alone."""
    model = getattr(model, "_orig_mod", model)
    if isinstance(getattr(type(model), "module", None), property):
        inner = model.module
        if isinstance(inner, Module):
            return inner
    return model


@contextmanager
def _tracing(model: Module) -> Iterator[None]:
    """Tracing reads every attribute of the module; a LightningModule not attached to a Trainer must then answer
    `trainer` with None instead of raising (its class's `_jit_is_scripting` switch, as `to_torchscript` sets it)."""
    base = next((cls for cls in type(model).__mro__ if "_jit_is_scripting" in vars(cls)), None)
    if base is None:
        yield
        return
    with jit_scripting(base):
        yield


def _through_transfer_hooks(model: Module, batch: Any) -> Any:
    """Run ``batch`` through a LightningModule's batch hooks onto its device (plain modules: unchanged)."""
    before = getattr(model, "on_before_batch_transfer", None)
    transfer = getattr(model, "transfer_batch_to_device", None)
    after = getattr(model, "on_after_batch_transfer", None)
    if not (callable(before) and callable(transfer) and callable(after)):
        return batch
    batch = before(batch, 0)
    device = next((p.device for p in model.parameters()), None)
    if device is not None:
        batch = transfer(batch, device, 0)
    return after(batch, 0)
