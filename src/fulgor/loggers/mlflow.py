"""`MLFlowLogger`: metrics, hyperparameters and (optionally) checkpoints to an MLflow tracking store, with Lightning's
arguments and behaviour. mlflow (or mlflow-skinny) is imported only when the logger is created."""

from __future__ import annotations

import os
import re
import tempfile
import time
from argparse import Namespace
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import yaml
from torch import Tensor

from fulgor.loggers._utils import add_prefix, convert_params, flatten_dict, scan_checkpoints
from fulgor.loggers.logger import DummyExperiment, Logger, rank_zero_experiment
from fulgor.rank import log, rank_zero_only, rank_zero_warn

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

__all__ = ["MLFlowLogger"]

LOCAL_FILE_URI_PREFIX = "file:"
_STATUS = {"success": "FINISHED", "failed": "FAILED", "finished": "FINISHED"}
_PARAM_VALUE_LIMIT = 250  # Lightning truncates parameter values to what old MLflow servers accepted
_PARAMS_PER_BATCH = 100  # MLflow's log_batch limit


def _import_mlflow() -> Any:
    try:
        import mlflow
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            "`MLFlowLogger` needs the `mlflow` package. Install it with `pip install mlflow` (or `pip install"
            " mlflow-skinny` for the client only)."
        ) from err
    return mlflow


def _supports_synchronous() -> bool:
    """False only when the installed mlflow is known to be older than 2.8 (no `synchronous` logging)."""
    from importlib import metadata

    for distribution in ("mlflow", "mlflow-skinny"):
        try:
            version = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
        major, minor = (int(part) for part in re.findall(r"\d+", version)[:2])
        return (major, minor) >= (2, 8)
    return True


class MLFlowLogger(Logger):
    """Log to MLflow: one run per fit, in the experiment ``experiment_name`` (created if missing).

    The run is created on first use, on global rank 0 only. ``name`` is the experiment id and ``version`` the run id.

    Args:
        experiment_name: the MLflow experiment.
        run_name: the run's name (the ``mlflow.runName`` tag).
        tracking_uri: where to log (``http://...``, ``sqlite:///...``, ``file:...``); defaults to the
            ``MLFLOW_TRACKING_URI`` environment variable, else the local directory ``save_dir``.
        tags: tags for the new run.
        save_dir: the local file store used when no tracking URI is given (MLflow 3 needs
            ``MLFLOW_ALLOW_FILE_STORE=true`` in the environment for file stores).
        log_model: ``True`` uploads the best/last checkpoints at the end of training, ``"all"`` every checkpoint as
            it is saved, ``False`` none.
        prefix: prepended to every metric name, joined with ``"-"``.
        artifact_location: where a newly created experiment stores artifacts.
        run_id: resume this existing run instead of creating one.
        synchronous: whether each logging call waits until mlflow stored it (mlflow>=2.8); None: mlflow's default.

    Raises:
        ModuleNotFoundError: mlflow is not installed, or too old for ``synchronous``.

    Example::

        logger = MLFlowLogger(experiment_name="digits", tracking_uri="sqlite:///mlflow.db")
        trainer = Trainer(logger=logger)
    """

    LOGGER_JOIN_CHAR = "-"

    def __init__(
        self,
        experiment_name: str = "lightning_logs",
        run_name: str | None = None,
        tracking_uri: str | None = None,
        tags: dict[str, Any] | None = None,
        save_dir: str | None = "./mlruns",
        log_model: bool | Literal["all"] = False,
        prefix: str = "",
        artifact_location: str | None = None,
        run_id: str | None = None,
        synchronous: bool | None = None,
    ) -> None:
        super().__init__()
        _import_mlflow()
        if synchronous is not None and not _supports_synchronous():
            raise ModuleNotFoundError("`synchronous` requires mlflow>=2.8.0")
        # passed to every `log_batch`: None keeps mlflow's own default
        self._log_batch_kwargs: dict[str, Any] = {} if synchronous is None else {"synchronous": synchronous}
        if tracking_uri is None:
            tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or f"{LOCAL_FILE_URI_PREFIX}{save_dir}"
        from mlflow.tracking import MlflowClient

        self._experiment_name = experiment_name
        self._run_name = run_name
        self._tracking_uri = tracking_uri
        self.tags = tags
        self._log_model = log_model
        self._prefix = prefix
        self._artifact_location = artifact_location
        self._run_id = run_id
        self._experiment_id: str | None = None
        self._initialized = False
        self._logged_model_time: dict[str, float] = {}
        self._checkpoint_callback: Any = None
        self._mlflow_client = MlflowClient(tracking_uri)

    @property
    @rank_zero_experiment
    def experiment(self) -> MlflowClient:
        """The ``MlflowClient``; the experiment and run are created (or looked up) on first access."""
        if not self._initialized:
            self._start()
        return self._mlflow_client

    def _start(self) -> None:
        # Like Lightning: the fluent API (`mlflow.log_artifact(...)` in user code) goes to the same store.
        _import_mlflow().set_tracking_uri(self._tracking_uri)
        client = self._mlflow_client
        if self._run_id is not None:
            self._experiment_id = client.get_run(self._run_id).info.experiment_id
            self._initialized = True
            return
        if self._experiment_id is None:
            found = client.get_experiment_by_name(self._experiment_name)
            if found is not None and found.lifecycle_stage != "deleted":
                self._experiment_id = found.experiment_id
            else:
                log.warning(f"Experiment with name {self._experiment_name} not found. Creating it.")
                self._experiment_id = client.create_experiment(
                    name=self._experiment_name, artifact_location=self._artifact_location
                )
        tags = dict(self.tags or {})
        if self._run_name is not None:
            from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

            if MLFLOW_RUN_NAME in tags:
                log.warning(
                    f"The tag {MLFLOW_RUN_NAME} is found in tags. The value will be overridden by {self._run_name}."
                )
            tags[MLFLOW_RUN_NAME] = self._run_name
        run = client.create_run(experiment_id=self._experiment_id, tags=_resolve_tags(tags))
        self._run_id = run.info.run_id
        self._initialized = True

    @property
    def run_id(self) -> str | None:
        """The run id (creates the run if needed)."""
        _ = self.experiment
        return self._run_id

    @property
    def experiment_id(self) -> str | None:
        """The experiment id (creates the experiment if needed)."""
        _ = self.experiment
        return self._experiment_id

    @property
    def name(self) -> str | None:
        """The experiment id."""
        return self.experiment_id

    @property
    def version(self) -> str | None:
        """The run id."""
        return self.run_id

    @property
    def save_dir(self) -> str | None:
        """The local directory of a ``file:`` tracking store, else None."""
        if self._tracking_uri.startswith(LOCAL_FILE_URI_PREFIX):
            return self._tracking_uri[len(LOCAL_FILE_URI_PREFIX) :]
        return None

    @rank_zero_only
    def log_hyperparams(self, params: Mapping[str, Any] | Namespace | None, *args: Any, **kwargs: Any) -> None:
        """Log the flattened hyperparameters as run params (values as strings, at most 250 characters)."""
        from mlflow.entities import Param

        flat = flatten_dict(convert_params(params))
        items = [Param(key=key, value=str(value)[:_PARAM_VALUE_LIMIT]) for key, value in flat.items()]
        client, run_id = self._client_and_run()
        for start in range(0, len(items), _PARAMS_PER_BATCH):
            client.log_batch(run_id=run_id, params=items[start : start + _PARAMS_PER_BATCH], **self._log_batch_kwargs)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log the metrics at ``step`` (0 when None) in one batch; string values are skipped, names are cleaned of
        characters MLflow rejects."""
        from mlflow.entities import Metric

        timestamp_ms = int(time.time() * 1000)
        batch = []
        for key, value in add_prefix(metrics, self._prefix, self.LOGGER_JOIN_CHAR).items():
            if isinstance(value, str):
                log.warning(f"Discarding metric with string value {key}={value}.")
                continue
            clean = re.sub("[^a-zA-Z0-9_/. -]+", "", key)
            if clean != key:
                rank_zero_warn(
                    "MLFlow only allows '_', '/', '.' and ' ' special characters in metric name."
                    f" Replacing {key} with {clean}.",
                    category=RuntimeWarning,
                )
            number = value.item() if isinstance(value, Tensor) else value
            batch.append(Metric(key=clean, value=number, timestamp=timestamp_ms, step=step or 0))
        client, run_id = self._client_and_run()
        client.log_batch(run_id=run_id, metrics=batch, **self._log_batch_kwargs)

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        """Upload pending checkpoints (``log_model=True``) and mark the run FINISHED or FAILED."""
        if not self._initialized:
            return
        if self._checkpoint_callback is not None:
            self._log_checkpoints(self._checkpoint_callback)
        run_id = self.run_id
        if run_id is not None and self.experiment.get_run(run_id):
            self.experiment.set_terminated(run_id, _STATUS.get(status, status))

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """Upload checkpoints now (``log_model="all"``, or ``True`` with ``save_top_k=-1``) or at the end."""
        if self._log_model == "all" or (self._log_model is True and checkpoint_callback.save_top_k == -1):
            self._log_checkpoints(checkpoint_callback)
        elif self._log_model is True:
            self._checkpoint_callback = checkpoint_callback

    def _client_and_run(self) -> tuple[MlflowClient, str]:
        # Only called on rank 0 (rank-zero-only methods), where the experiment is the real client and the run exists.
        client = self.experiment
        assert not isinstance(client, DummyExperiment)
        # the run id mlflow gave (Lightning passes it on unchecked; a client that returned none fails in its own call)
        return client, cast(str, self._run_id)

    @rank_zero_only
    def _log_checkpoints(self, checkpoint_callback: Any) -> None:
        """Each new checkpoint goes to artifact folder ``<stem>/`` with ``metadata.yaml`` and ``aliases.txt``."""
        client, run_id = self._client_and_run()
        for mtime, path, score, _ in scan_checkpoints(checkpoint_callback, self._logged_model_time):
            folder = Path(path).stem
            client.log_artifact(run_id, path, folder)
            aliases = ["latest", "best"] if path == checkpoint_callback.best_model_path else ["latest"]
            metadata = {
                "score": score.item() if isinstance(score, Tensor) else score,
                "original_filename": Path(path).name,
                "Checkpoint": _checkpoint_settings(checkpoint_callback),
            }
            with tempfile.TemporaryDirectory() as tmp:
                with open(os.path.join(tmp, "metadata.yaml"), "w") as file:
                    yaml.dump(metadata, file, default_flow_style=False)
                with open(os.path.join(tmp, "aliases.txt"), "w") as file:
                    file.write(str(aliases))
                client.log_artifacts(run_id, tmp, folder)
            self._logged_model_time[path] = mtime


def _checkpoint_settings(callback: Any) -> dict[str, Any]:
    names = ("monitor", "mode", "save_last", "save_top_k", "save_weights_only", "_every_n_train_steps")
    return {name: getattr(callback, name) for name in names if hasattr(callback, name)}


def _resolve_tags(tags: dict[str, Any]) -> dict[str, Any]:
    """Add MLflow's context tags (user, source) as ``mlflow.start_run`` would; older clients lack the resolver."""
    try:
        from mlflow.tracking.context.registry import resolve_tags
    except ImportError:  # pragma: no cover - very old mlflow
        return tags
    resolved: dict[str, Any] = resolve_tags(tags)
    return resolved
