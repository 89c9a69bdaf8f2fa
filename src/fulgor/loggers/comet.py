"""`CometLogger`: metrics, hyperparameters and the model graph to Comet (comet.com) with Lightning's arguments and
behaviour; `comet_ml` is imported when the logger is created, never by `import fulgor`."""

from __future__ import annotations

import os
from argparse import Namespace
from collections.abc import Mapping
from typing import Any, Literal

from torch import Tensor
from torch.nn import Module

from fulgor.loggers._utils import convert_params
from fulgor.loggers.logger import Logger, rank_zero_experiment
from fulgor.rank import log, rank_zero_only

__all__ = ["CometLogger"]

# The framework name Comet files the experiment's data under (Lightning's, so Comet shows it as a Lightning run).
FRAMEWORK_NAME = "pytorch-lightning"


def _import_comet() -> Any:
    # Comet hooks into ML libraries imported before it unless told not to; Lightning disables that too.
    os.environ["COMET_DISABLE_AUTO_LOGGING"] = "1"
    try:
        import comet_ml
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            "`CometLogger` needs the `comet-ml` package (>=3.44.4). Install it with `pip install comet-ml`."
        ) from err
    return comet_ml


def _renamed(kwargs: dict[str, Any], old: str, new: str, current: Any) -> Any:
    """Lightning's handling of an argument renamed from `old` to `new`: warn, and use it when `new` was not given."""
    if old not in kwargs:
        return current
    log.warning(f"The parameter `{old}` is deprecated, please use `{new}` instead.")
    value = kwargs.pop(old)
    if current is None:
        return value
    log.warning(f"You specified both `{old}` and `{new}` parameters, please use `{new}` only")
    return current


class CometLogger(Logger):
    """Log to Comet: one experiment, created on global rank 0 when the logger is built (other ranks get a dummy).

    ``name`` is the Comet project, ``version`` the experiment key, ``save_dir`` the offline directory.

    Args:
        api_key: Comet API key (default: Comet's configuration, e.g. ``comet login`` or ``COMET_API_KEY``).
        workspace: the workspace (default: the user's default workspace).
        project: the project (default: Comet's "Uncategorized").
        experiment_key: the key of an experiment to continue, or to give a new one (32 to 50 alphanumerics).
        mode: ``"get_or_create"``, ``"get"`` (continue ``experiment_key``) or ``"create"`` (always a new one).
        online: False logs to an offline archive (``offline_directory``) to upload later.
        prefix: prepended to every metric name (``prefix_metric``).
        **kwargs: ``comet_ml.ExperimentConfig`` arguments (``name``, ``offline_directory``, ``log_code``, ...).
            The old names ``experiment_name``, ``project_name``, ``offline`` and ``save_dir`` still work, with a
            warning.

    Raises:
        ModuleNotFoundError: ``comet_ml`` is not installed.

    Example::

        logger = CometLogger(project="digits", online=False, offline_directory="comet")
        trainer = Trainer(logger=logger)
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        workspace: str | None = None,
        project: str | None = None,
        experiment_key: str | None = None,
        mode: Literal["get_or_create", "get", "create"] | None = None,
        online: bool | None = None,
        prefix: str | None = None,
        **kwargs: Any,
    ) -> None:
        comet_ml = _import_comet()
        super().__init__()
        kwargs["name"] = _renamed(kwargs, "experiment_name", "name", kwargs.get("name"))
        if kwargs["name"] is None:
            del kwargs["name"]
        project = _renamed(kwargs, "project_name", "project", project)
        if "offline" in kwargs:  # the old flag says the opposite of `online`
            offline = _renamed(kwargs, "offline", "online", None)
            online = online if online is not None else not offline
        offline_directory = _renamed(kwargs, "save_dir", "offline_directory", kwargs.get("offline_directory"))
        if offline_directory is not None:
            kwargs["offline_directory"] = offline_directory
        self._api_key = api_key
        self._experiment: Any = None
        self._workspace = workspace
        self._mode = mode
        self._online = online
        self._project_name = project
        self._experiment_key = experiment_key
        self._prefix = prefix
        self._kwargs = kwargs
        config_kwargs = dict(kwargs)
        if online is False:
            config_kwargs["disabled"] = True
        self._comet_config = comet_ml.ExperimentConfig(**config_kwargs)
        if rank_zero_only.rank != 0:  # type: ignore[attr-defined]  # rank 0 alone creates the experiment
            return
        self._create_experiment()

    def _create_experiment(self) -> None:
        comet_ml = _import_comet()
        self._experiment = comet_ml.start(
            api_key=self._api_key,
            workspace=self._workspace,
            project=self._project_name,
            experiment_key=self._experiment_key,
            mode=self._mode,
            online=self._online,
            experiment_config=self._comet_config,
        )
        if self._experiment is None:
            raise comet_ml.exceptions.ExperimentNotFound("Failed to create Comet experiment.")
        self._experiment_key = self._experiment.get_key()
        self._project_name = self._experiment.project_name
        self._experiment.log_other("Created from", FRAMEWORK_NAME)

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The Comet experiment (created on first access in processes that do not have one yet, e.g. spawned)."""
        if not self._experiment:
            self._create_experiment()
        return self._experiment

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        """Log `params` as Comet parameters (nested dicts flattened by Comet)."""
        self.experiment.__internal_api__log_parameters__(
            parameters=convert_params(params), framework=FRAMEWORK_NAME, flatten_nested=True, source="manual"
        )

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Tensor | float], step: int | None = None) -> None:
        """Log `metrics` at `step`; an ``epoch`` entry becomes the Comet epoch."""
        values = {k: v.detach().cpu() if isinstance(v, Tensor) else v for k, v in metrics.items()}
        epoch = values.pop("epoch", None)
        self.experiment.__internal_api__log_metrics__(
            values, step=step, epoch=epoch, prefix=self._prefix, framework=FRAMEWORK_NAME
        )

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Send the buffered data; the experiment is not ended, so it can still be used after training."""
        if self._experiment is None:
            return  # e.g. the main process of a spawned run never created one
        self.experiment.flush()

    @property
    def save_dir(self) -> str | None:
        """The offline directory Comet writes to."""
        directory: str | None = self._comet_config.offline_directory
        return directory

    @property
    def name(self) -> str | None:
        """The Comet project."""
        return self._project_name

    @property
    def version(self) -> str | None:
        """The experiment key (None before the experiment exists)."""
        if self._experiment is None:
            return None
        key: str = self._experiment.get_key()
        return key

    def __getstate__(self) -> dict[str, Any]:
        # The experiment holds connections; a copy in another process reconnects with the key.
        state = self.__dict__.copy()
        state["_experiment_key"] = self._experiment.get_key() if self._experiment is not None else None
        state["_experiment"] = None
        return state

    def log_graph(self, model: Module, input_array: Tensor | None = None) -> None:
        """Send the model's structure to Comet."""
        if self._experiment is not None:
            self._experiment.__internal_api__set_model_graph__(graph=model, framework=FRAMEWORK_NAME)
