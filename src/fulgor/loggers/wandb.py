"""`WandbLogger`: metrics, config and (optionally) checkpoints to Weights & Biases, with Lightning's arguments and
behaviour. wandb is imported only when the logger is created."""

from __future__ import annotations

import inspect
import json
import os
from argparse import Namespace
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from torch import Tensor
from torch.nn import Module

from fulgor.errors import MisconfigurationException
from fulgor.loggers._utils import add_prefix, convert_params, scan_checkpoints
from fulgor.loggers.logger import Logger, rank_zero_experiment
from fulgor.rank import rank_zero_only, rank_zero_warn

__all__ = ["WandbLogger"]

_STEP_KEY = "trainer/global_step"


def _import_wandb() -> Any:
    try:
        import wandb
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            "`WandbLogger` needs the `wandb` package. Install it with `pip install wandb`."
        ) from err
    return wandb


class WandbLogger(Logger):
    """Log to Weights & Biases: one W&B run, created on first use on global rank 0.

    Metrics are logged against the ``trainer/global_step`` metric; hyperparameters go to ``run.config``. ``name`` is
    the project and ``version`` the run id.

    Args:
        name: the run's display name.
        save_dir: where wandb writes its local files (``<save_dir>/wandb/``).
        version: the run id (to resume a run); same as ``id``.
        offline: log locally only; ``wandb sync`` uploads later.
        dir: same as ``save_dir`` (used when ``save_dir`` is None).
        id: same as ``version``.
        anonymous: allow anonymous logging.
        project: the W&B project; defaults to ``$WANDB_PROJECT``, else ``"lightning_logs"``.
        log_model: ``True`` uploads the best/last checkpoints at the end, ``"all"`` each one as it is saved.
        experiment: an existing W&B run to log to.
        prefix: prepended to every metric name, joined with ``"-"``.
        checkpoint_name: the model artifact's name (default ``model-<run id>``).
        **kwargs: passed to ``wandb.init`` (``entity``, ``group``, ``tags``, ``mode``, ...).

    Raises:
        ModuleNotFoundError: wandb is not installed.
        MisconfigurationException: ``offline`` and ``log_model`` are both set (offline runs cannot upload models).

    Example::

        logger = WandbLogger(project="digits", offline=True)
        trainer = Trainer(logger=logger)
    """

    LOGGER_JOIN_CHAR = "-"

    def __init__(
        self,
        name: str | None = None,
        save_dir: str | os.PathLike[str] | None = ".",
        version: str | None = None,
        offline: bool = False,
        dir: str | os.PathLike[str] | None = None,
        id: str | None = None,
        anonymous: bool | None = None,
        project: str | None = None,
        log_model: bool | Literal["all"] = False,
        experiment: Any = None,
        prefix: str = "",
        checkpoint_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        _import_wandb()
        if offline and log_model:
            raise MisconfigurationException(
                f"Providing log_model={log_model} and offline={offline} is an invalid configuration"
                " since model checkpoints cannot be uploaded in offline mode.\n"
                "Hint: Set `offline=False` to log your model."
            )
        super().__init__()
        self._offline = offline
        self._log_model = log_model
        self._prefix = prefix
        self._experiment = experiment
        self._checkpoint_name = checkpoint_name
        self._logged_model_time: dict[str, float] = {}
        self._checkpoint_callbacks: dict[int, Any] = {}
        folder = save_dir if save_dir is not None else dir
        self._wandb_init: dict[str, Any] = {
            "name": name,
            "project": project or os.environ.get("WANDB_PROJECT", "lightning_logs"),
            "dir": None if folder is None else os.fspath(folder),
            "id": version or id,
            "resume": "allow",
            "anonymous": "allow" if anonymous else None,
            **kwargs,
        }
        self._project: str | None = self._wandb_init["project"]
        self._save_dir: str | None = self._wandb_init["dir"]
        self._name: str | None = self._wandb_init["name"]
        self._id: str | None = self._wandb_init["id"]

    def __getstate__(self) -> dict[str, Any]:
        # A run cannot be pickled; keep its id so a spawned process resumes the same run. Pickling is how the
        # "spawn" launcher ships the logger, so the run is started here first: every process then joins one run.
        _ = self.experiment
        state = self.__dict__.copy()
        if self._experiment is not None:
            state["_id"] = getattr(self._experiment, "id", None)
            state["_wandb_init"] = {**self._wandb_init, "id": state["_id"]}
            state["_name"] = getattr(self._experiment, "name", self._name)
        state["_experiment"] = None
        return state

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The ``wandb.Run`` (``wandb.init`` on first access; an already running ``wandb.run`` is reused)."""
        if self._experiment is None:
            wandb = _import_wandb()
            if self._offline:
                os.environ["WANDB_MODE"] = "dryrun"  # what Lightning sets; wandb reads it in `init`
            if wandb.run is not None:
                rank_zero_warn(
                    "There is a wandb run already in progress and newly created instances of `WandbLogger` will reuse"
                    " this run. If this is not desired, call `wandb.finish()` before instantiating `WandbLogger`."
                )
                self._experiment = wandb.run
            else:
                self._experiment = wandb.init(**self._wandb_init)
                if getattr(self._experiment, "define_metric", None) is not None:
                    if self._wandb_init.get("sync_tensorboard"):
                        self._experiment.define_metric("*", step_metric="global_step")
                    else:
                        self._experiment.define_metric(_STEP_KEY)
                        self._experiment.define_metric("*", step_metric=_STEP_KEY, step_sync=True)
        return self._experiment

    @property
    def save_dir(self) -> str | None:
        """wandb's local directory."""
        return self._save_dir

    @property
    def name(self) -> str | None:
        """The project name (not the run's display name: that is ``experiment.name``)."""
        return self._project

    @property
    def version(self) -> str | None:
        """The run id (the one given to the constructor until the run exists)."""
        return self._experiment.id if self._experiment is not None else self._id

    def watch(self, model: Module, log: str | None = "gradients", log_freq: int = 100, log_graph: bool = True) -> None:
        """Track ``model``'s gradients and/or parameters (``wandb.watch``)."""
        self.experiment.watch(model, log=log, log_freq=log_freq, log_graph=log_graph)

    @rank_zero_only
    def log_hyperparams(self, params: Mapping[str, Any] | Namespace | None, *args: Any, **kwargs: Any) -> None:
        """Update ``run.config``: callables become their name or result, values JSON cannot hold become strings."""
        clean = {key: _json_safe(_call_or_name(value)) for key, value in convert_params(params).items()}
        run: Any = self.experiment
        run.config.update(clean, allow_val_change=True)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """``run.log`` the metrics, with ``trainer/global_step = step`` when a step is given."""
        row = dict(add_prefix(metrics, self._prefix, self.LOGGER_JOIN_CHAR))
        if step is not None and not self._wandb_init.get("sync_tensorboard"):
            row[_STEP_KEY] = step
        self.experiment.log(row)

    @rank_zero_only
    def log_table(
        self,
        key: str,
        columns: list[str] | None = None,
        data: list[list[Any]] | None = None,
        dataframe: Any = None,
        step: int | None = None,
    ) -> None:
        """Log a ``wandb.Table`` built from ``columns`` + ``data`` or from a pandas ``dataframe``."""
        wandb = _import_wandb()
        self.log_metrics({key: wandb.Table(columns=columns, data=data, dataframe=dataframe)}, step)

    @rank_zero_only
    def log_text(
        self,
        key: str,
        columns: list[str] | None = None,
        data: list[list[str]] | None = None,
        dataframe: Any = None,
        step: int | None = None,
    ) -> None:
        """Log text rows as a table."""
        self.log_table(key, columns, data, dataframe, step)

    @rank_zero_only
    def log_image(self, key: str, images: list[Any], step: int | None = None, **kwargs: Any) -> None:
        """Log images (tensors, arrays, PIL images or file paths); list-valued ``kwargs`` (``caption``...) go one
        per image."""
        self._log_media("images", "Image", key, images, step, kwargs)

    @rank_zero_only
    def log_audio(self, key: str, audios: list[Any], step: int | None = None, **kwargs: Any) -> None:
        """Log audio clips (arrays or file paths); list-valued ``kwargs`` (``caption``, ``sample_rate``...) go one
        per clip."""
        self._log_media("audios", "Audio", key, audios, step, kwargs)

    @rank_zero_only
    def log_video(self, key: str, videos: list[Any], step: int | None = None, **kwargs: Any) -> None:
        """Log videos (arrays or file paths); list-valued ``kwargs`` (``caption``, ``fps``...) go one per video."""
        self._log_media("videos", "Video", key, videos, step, kwargs)

    def _log_media(
        self, argument: str, media_class: str, key: str, items: Any, step: int | None, kwargs: dict[str, Any]
    ) -> None:
        wandb = _import_wandb()
        if not isinstance(items, list):
            # Lightning's sentence first (code matching it still matches), then how to fix it
            raise TypeError(f'Expected a list as "{argument}", found {type(items)}; wrap a single one as `[item]`.')
        for name, values in kwargs.items():
            if len(values) != len(items):
                raise ValueError(f"Expected {len(items)} items but only found {len(values)} for {name}")
        per_item = [{name: values[i] for name, values in kwargs.items()} for i in range(len(items))]
        build = getattr(wandb, media_class)
        self.log_metrics({key: [build(item, **extra) for item, extra in zip(items, per_item)]}, step)

    @staticmethod
    @rank_zero_only
    def download_artifact(
        artifact: str,
        save_dir: str | os.PathLike[str] | None = None,
        artifact_type: str | None = None,
        use_artifact: bool | None = True,
    ) -> str:
        """Download a W&B artifact (through the active run when there is one and ``use_artifact``, so that the run
        records it; else through the public API); returns the local folder.

        Args:
            artifact: the artifact's path, e.g. ``"entity/project/model-abc:v3"``.
            save_dir: where to download it (W&B's default folder when None).
            artifact_type: the artifact's type, for the public API.
            use_artifact: record the download as an input of the active run.
        """
        wandb = _import_wandb()
        if wandb.run is not None and use_artifact:
            found = wandb.run.use_artifact(artifact)
        else:
            found = wandb.Api().artifact(artifact, type=artifact_type)
        return str(found.download(root=None if save_dir is None else os.fspath(save_dir)))

    def use_artifact(self, artifact: str, artifact_type: str | None = None) -> Any:
        """Record ``artifact`` as an input of this run and return it (``.download()`` fetches its files).

        Args:
            artifact: the artifact's path.
            artifact_type: the artifact's type.
        """
        return self.experiment.use_artifact(artifact, type=artifact_type)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """On success, upload the checkpoints kept for the end (``log_model=True``); the run itself stays open, as in
        Lightning (``wandb.finish()`` closes it)."""
        if status != "success" or self._experiment is None:
            return
        for callback in self._checkpoint_callbacks.values():
            self._log_checkpoints(callback)

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """Upload checkpoints now (``log_model="all"``, or ``True`` with ``save_top_k=-1``) or at the end."""
        if self._log_model == "all" or (self._log_model is True and checkpoint_callback.save_top_k == -1):
            self._log_checkpoints(checkpoint_callback)
        elif self._log_model is True:
            self._checkpoint_callbacks[id(checkpoint_callback)] = checkpoint_callback

    @rank_zero_only
    def _log_checkpoints(self, checkpoint_callback: Any) -> None:
        wandb = _import_wandb()
        settings = ("monitor", "mode", "save_last", "save_top_k", "save_weights_only", "_every_n_train_steps")
        for mtime, path, score, _ in scan_checkpoints(checkpoint_callback, self._logged_model_time):
            metadata = {
                "score": score.item() if isinstance(score, Tensor) else score,
                "original_filename": Path(path).name,
                type(checkpoint_callback).__name__: {
                    name: getattr(checkpoint_callback, name) for name in settings if hasattr(checkpoint_callback, name)
                },
            }
            if not self._checkpoint_name:
                self._checkpoint_name = f"model-{self.experiment.id}"
            artifact = wandb.Artifact(name=self._checkpoint_name, type="model", metadata=metadata)
            artifact.add_file(path, name="model.ckpt")
            aliases = ["latest", "best"] if path == checkpoint_callback.best_model_path else ["latest"]
            self.experiment.log_artifact(artifact, aliases=aliases)
            self._logged_model_time[path] = mtime


def _call_or_name(value: Any) -> Any:
    """Classes -> their name; other callables -> their result (if not callable itself) or name, as Lightning does."""
    if inspect.isclass(value):
        return value.__name__
    if not callable(value):
        return value
    try:
        result = value()
    except Exception:
        return getattr(value, "__name__", None)
    return value.__name__ if callable(result) else result


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str, list, dict)):
        return value
    try:
        json.dumps(value)
    except (TypeError, OverflowError):
        return str(value)
    return value
