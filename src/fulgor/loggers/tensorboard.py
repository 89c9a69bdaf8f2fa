"""`TensorBoardLogger`: scalars, hparams and graphs as TensorBoard event files in `<save_dir>/<name>/version_N/`, plus
`hparams.yaml`, laid out as Lightning lays them out.

Plain scalars, `save()` and `finalize()` go through fulgor's own event writer (`tb_events.ScalarEventWriter`), so a
run that only logs scalars never imports tensorboard (about 0.2 s of start-up). The `SummaryWriter` of
`torch.utils.tensorboard` (or tensorboardX) is imported and created only for `logger.experiment`, dicts of scalars,
hparams with metrics, graphs, a remote log directory, or writer options other than `max_queue`, `flush_secs` and
`filename_suffix`; from then on every scalar goes through it and fulgor's writer is closed (TensorBoard reads all the
event files of a directory)."""

from __future__ import annotations

import importlib.util
import os
from argparse import Namespace
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

from torch import Tensor
from torch.nn import Module

from fulgor import fs
from fulgor.hparams import save_hparams_to_yaml
from fulgor.loggers._utils import add_prefix, convert_params, flatten_dict, sanitize_params
from fulgor.loggers.logger import Logger, rank_zero_experiment
from fulgor.loggers.tb_events import ScalarEventWriter, index_sorting_after
from fulgor.rank import rank_zero_only, rank_zero_warn

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

__all__ = ["TensorBoardLogger"]

_INSTALL_HINT = "Install it with `pip install tensorboard` (or `pip install tensorboardX`)."
# The SummaryWriter options fulgor's own scalar writer understands; any other one sends scalars to the SummaryWriter.
_OWN_WRITER_KWARGS = frozenset({"max_queue", "flush_secs", "filename_suffix"})


def tensorboard_available() -> bool:
    """Whether ``tensorboard`` (used through ``torch.utils.tensorboard``) is installed, without importing it."""
    return importlib.util.find_spec("tensorboard") is not None


def _tensorboardx_available() -> bool:
    return importlib.util.find_spec("tensorboardX") is not None


class TensorBoardLogger(Logger):
    """Log to TensorBoard event files in ``save_dir/name/version_N`` (Lightning's layout).

    Also writes ``hparams.yaml`` next to the event files. Uses ``torch.utils.tensorboard`` when ``tensorboard`` is
    installed, else ``tensorboardX``; plain scalars are written without importing either (see the module docstring).
    Only global rank 0 writes.

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
        super().__init__()
        if not tensorboard_available() and not _tensorboardx_available():
            raise ModuleNotFoundError(f"`TensorBoardLogger` needs `tensorboard` or `tensorboardX`. {_INSTALL_HINT}")
        if log_graph and not tensorboard_available():
            rank_zero_warn(
                "You set `TensorBoardLogger(log_graph=True)` but `tensorboard` is not available;"
                " the graph will not be logged. Install it with `pip install tensorboard`."
            )
        self._save_dir = os.fspath(save_dir)
        self._name = name or ""
        self._version = version
        self._sub_dir = None if sub_dir is None else os.fspath(sub_dir)
        self._log_graph = log_graph and tensorboard_available()
        self._default_hp_metric = default_hp_metric
        self._prefix = prefix
        self._kwargs = kwargs
        self._experiment: SummaryWriter | None = None
        # fulgor's scalar writer: used (with tensorboard installed) until the SummaryWriter is created.
        self._own_writer_ok = tensorboard_available() and _OWN_WRITER_KWARGS.issuperset(kwargs)
        self._scalars: ScalarEventWriter | None = None
        self.hparams: dict[str, Any] = {}

    # ---- directories ----

    @property
    def name(self) -> str:
        """The experiment name ("" when none)."""
        return self._name

    @property
    def version(self) -> int | str:
        """The experiment version; chosen on first access when not given."""
        if self._version is None:
            self._version = self._next_version()
        return self._version

    @property
    def save_dir(self) -> str:
        """The directory holding all experiments."""
        return self._save_dir

    @property
    def root_dir(self) -> str:
        """``save_dir/name``: the directory holding every version of this experiment."""
        return os.path.join(self.save_dir, self.name)

    @property
    def sub_dir(self) -> str | None:
        """The extra directory level under the version directory, if any."""
        return self._sub_dir

    @property
    def log_dir(self) -> str:
        """``root_dir/version_<N>[/sub_dir]`` (``~`` and ``$VARS`` expanded), where the event files go."""
        version = self.version
        log_dir = os.path.join(self.root_dir, version if isinstance(version, str) else f"version_{version}")
        if self._sub_dir is not None:
            log_dir = os.path.join(log_dir, self._sub_dir)
        return os.path.expanduser(os.path.expandvars(log_dir))

    def _next_version(self) -> int:
        found = [-1]
        for entry in fs.listdir(self.root_dir):
            # Like Lightning: "version_3" and "version_3_old" both count as 3.
            number = entry.split("_")[1] if entry.startswith("version_") else ""
            if number.isdigit() and fs.isdir(os.path.join(self.root_dir, entry)):
                found.append(int(number))
        return max(found) + 1

    # ---- the writer ----

    @property
    @rank_zero_experiment
    def experiment(self) -> SummaryWriter:
        """The ``SummaryWriter`` (created, with the directories, on first access; a dummy on other ranks).

        Use it for anything TensorBoard can show: ``logger.experiment.add_image("digits", grid, step)``. Creating it
        closes fulgor's own scalar writer: later scalars go to the ``SummaryWriter``'s event file.
        """
        if self._experiment is None:
            if self._scalars is not None:
                self._scalars.close()
                self._scalars = None
            if self.root_dir:
                fs.makedirs(self.root_dir, exist_ok=True)
            if tensorboard_available():
                from torch.utils.tensorboard import SummaryWriter

                _skip_file_indices_we_used()
            else:  # pragma: no cover - only without tensorboard
                from tensorboardX import SummaryWriter  # type: ignore[no-redef,import-not-found,unused-ignore]
            self._experiment = SummaryWriter(log_dir=self.log_dir, **self._kwargs)
        return self._experiment

    def _writer(self) -> SummaryWriter:
        # Only called from rank-zero-only methods, where `experiment` is the real writer.
        return cast("SummaryWriter", self.experiment)

    def _scalar_writer(self) -> ScalarEventWriter | None:
        """fulgor's writer for plain scalars (opened on first use), or None when the SummaryWriter must write them."""
        writer = self._scalars
        if writer is not None and not writer.closed:
            return writer
        if self._experiment is not None or not self._own_writer_ok:
            return None
        log_dir = self.log_dir
        if fs.is_remote(log_dir):
            return None
        self._scalars = ScalarEventWriter(log_dir.removeprefix("file://"), **self._kwargs)
        return self._scalars

    def _open_writer(self) -> ScalarEventWriter | SummaryWriter:
        """The writer in use, else fulgor's scalar writer when allowed, else the ``SummaryWriter`` (both create the
        log directory and an event file, as Lightning's first ``experiment`` access does)."""
        if self._experiment is not None:
            return self._experiment
        if self._scalars is not None:
            return self._scalars  # possibly closed by finalize(): reopened by the next scalar only
        own = self._scalar_writer()
        return own if own is not None else self._writer()

    @rank_zero_only
    def _prepare_for_setup(self) -> None:
        """Create the log directory before the setup hooks run (the Trainer calls this instead of ``experiment``)."""
        self._open_writer()

    # ---- logging ----

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Write each metric as a scalar (a dict value becomes a group of scalars via ``add_scalars``).

        Raises:
            ValueError: a value is neither a number, a one-element tensor nor a dict of numbers.
        """
        metrics = add_prefix(metrics, self._prefix, self.LOGGER_JOIN_CHAR)
        # A dict of scalars needs the SummaryWriter's add_scalars: then the whole call goes through it.
        own = None if any(isinstance(v, dict) for v in metrics.values()) else self._scalar_writer()
        add_scalar: Callable[..., None] = own.add_scalar if own is not None else self._writer().add_scalar
        for name, value in metrics.items():
            if isinstance(value, Tensor):
                value = value.item()
            try:
                if isinstance(value, dict):
                    self._writer().add_scalars(name, value, step)
                else:
                    add_scalar(name, value, step)
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
            return
        file_writer = self._writer()._get_file_writer()  # type: ignore[no-untyped-call]
        self.log_metrics(metrics, step)  # through the SummaryWriter, next to the hparams summaries
        if tensorboard_available():
            from torch.utils.tensorboard.summary import hparams
        else:  # pragma: no cover - only without tensorboard
            from tensorboardX.summary import hparams  # type: ignore[no-redef,import-not-found,unused-ignore]
        for summary in hparams(flat, dict(metrics)):  # type: ignore[no-untyped-call]
            file_writer.add_summary(summary, step)

    @rank_zero_only
    def log_graph(self, model: Module, input_array: Any = None) -> None:
        """Trace ``model`` with ``input_array`` (default: its ``example_input_array``) and write the graph.

        Does nothing unless the logger was created with ``log_graph=True``. The input goes through the module's
        batch-transfer hooks first, as a training batch would.
        """
        if not self._log_graph:
            return
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
        self._writer().add_graph(model, _through_transfer_hooks(model, input_array))

    @rank_zero_only
    def save(self) -> None:
        """Flush the event files; write ``hparams.yaml`` once the log directory exists (if not written yet).

        Does not create the ``SummaryWriter``: with none yet, fulgor's scalar writer is opened (as Lightning opens its
        writer here, so the directory and an event file exist).
        """
        self._open_writer().flush()
        log_dir = self.log_dir
        hparams_file = os.path.join(log_dir, self.NAME_HPARAMS_FILE)
        if not fs.is_remote(log_dir) and os.path.isdir(log_dir) and not os.path.isfile(hparams_file):
            save_hparams_to_yaml(hparams_file, self.hparams)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Flush and close the writers; after a successful run also :meth:`save` (writes ``hparams.yaml``)."""
        if self._experiment is not None:
            self._experiment.flush()
            self._experiment.close()
        if self._scalars is not None:
            self._scalars.close()
        if status == "success":
            self.save()

    def __getstate__(self) -> dict[str, Any]:
        # The writers hold threads and open files; they are recreated on first use after unpickling.
        state = self.__dict__.copy()
        state["_experiment"] = None
        state["_scalars"] = None
        return state


def _skip_file_indices_we_used() -> None:
    """Advance tensorboard's per-process event-file counter past the ``<n>`` of our newest file.

    Both name files ``events.out.tfevents.<seconds>.<host>.<pid>.<n>`` with ``n`` counted from 0 per process, and
    tensorboard opens its file with ``"wb"``: a ``SummaryWriter`` created in the same second as one of our files could
    otherwise take its name and truncate it, or sort before it. Sets a private counter; does nothing without it.
    """
    last = ScalarEventWriter.last_index
    try:
        from tensorboard.summary.writer.event_file_writer import _global_uid as counter
    except ImportError:  # pragma: no cover - other tensorboard versions
        return
    lock = getattr(counter, "_lock", None)
    if last < 0 or lock is None or not isinstance(getattr(counter, "_value", None), int):
        return  # pragma: no cover - other tensorboard versions
    with lock:
        counter._value = index_sorting_after(last, counter._value)


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
