"""`ModelCheckpoint`: when to save (epochs, steps, time, validation end, exceptions), file names, top-k bookkeeping,
`last.ckpt` (file or link), and the callback's own checkpoint state. The file operations' crash-safe order is in
`checkpoint_files`, the checks before the first step in `checkpoint_checks`."""

from __future__ import annotations

import inspect
import os
import time
from copy import deepcopy
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal, get_type_hints

import torch
from torch import Tensor

from fulgor import fs
from fulgor.callbacks.checkpoint import Checkpoint
from fulgor.callbacks.checkpoint_checks import (
    check_filename,
    check_save_last,
    check_triggers,
    folder_problem,
    unpicklable_hparams_message,
)
from fulgor.callbacks.checkpoint_files import is_removable, link_checkpoint, resolve_user_dir
from fulgor.callbacks.checkpoint_naming import default_dir, fill_template, last_checkpoints
from fulgor.checkpointing import remove_stale_temporaries
from fulgor.errors import MisconfigurationException
from fulgor.rank import rank_zero_info, rank_zero_warn

if TYPE_CHECKING:
    from fulgor.module import LightningModule
    from fulgor.trainer.trainer import Trainer

__all__ = ["ModelCheckpoint"]


class ModelCheckpoint(Checkpoint):
    """Save checkpoints while training: the latest, the best `save_top_k` by `monitor`, and optionally `last.ckpt`.

    Arguments and behaviour are Lightning 2.6.6's (see docs/checkpointing.md). Differences: every file is written
    atomically, and the file operations are ordered so that every `.ckpt` name and the `last` link point at a
    complete file at every instant (a file a new one replaces is removed last); with `save_last=True` `last.ckpt` is
    rewritten at every check so it always holds the latest state (Lightning 2.6 rewrites it only when a top-k file
    was saved at the same step); a malformed `filename`, an invalid `save_last`, a folder that is a file or not
    writable, and hyperparameters no checkpoint could pickle are refused before the first training step.

    Example::

        checkpoint = ModelCheckpoint(monitor="val_loss", save_top_k=2, filename="{epoch}-{val_loss:.2f}")
        trainer = Trainer(callbacks=[checkpoint])
        trainer.fit(model)
        best = MyModel.load_from_checkpoint(checkpoint.best_model_path)
    """

    monitors_metrics: ClassVar[bool] = True

    CHECKPOINT_JOIN_CHAR = "-"
    CHECKPOINT_EQUALS_CHAR = "="
    CHECKPOINT_NAME_LAST = "last"
    FILE_EXTENSION = ".ckpt"
    STARTING_VERSION = 1

    def __init__(
        self,
        dirpath: str | os.PathLike[str] | None = None,
        filename: str | None = None,
        monitor: str | None = None,
        verbose: bool = False,
        save_last: bool | Literal["link"] | None = None,
        save_top_k: int = 1,
        save_on_exception: bool = False,
        save_weights_only: bool = False,
        mode: str = "min",
        auto_insert_metric_name: bool = True,
        every_n_train_steps: int | None = None,
        train_time_interval: timedelta | None = None,
        every_n_epochs: int | None = None,
        save_on_train_epoch_end: bool | None = None,
        enable_version_counter: bool = True,
    ) -> None:
        self.monitor = monitor
        self.verbose = verbose
        self.save_last = save_last
        self.save_top_k = save_top_k
        self.save_on_exception = save_on_exception
        self.save_weights_only = save_weights_only
        self.auto_insert_metric_name = auto_insert_metric_name
        self._save_on_train_epoch_end = save_on_train_epoch_end
        self._enable_version_counter = enable_version_counter
        self._last_global_step_saved = 0  # nothing to save before the first optimizer step
        self._last_time_checked: float | None = None
        self.current_score: Tensor | None = None
        self.best_k_models: dict[str, Tensor] = {}
        self.kth_best_model_path = ""
        self.best_model_score: Tensor | None = None
        self.best_model_path = ""
        self.last_model_path = ""
        self._last_checkpoint_saved = ""
        self._defer_save_until_validation = False
        self._validation_ran = False  # missing monitor: an error once validation (not sanity) ran
        self._retired: list[str] = []  # files replaced in this check, removed once every name points at its new file
        if mode not in ("min", "max"):
            raise MisconfigurationException(f"`mode` can be min, max but got {mode}")
        self.mode = mode
        self.kth_value: Tensor = torch.tensor(float("inf") if mode == "min" else float("-inf"))
        self._dirpath_from_user = dirpath is not None
        self.dirpath: str | None = resolve_user_dir(dirpath) if dirpath else None
        self.filename = filename
        self._init_triggers(every_n_train_steps, every_n_epochs, train_time_interval)
        self._validate()

    # ------------------------------------------------------------------ configuration
    def _init_triggers(self, steps: int | None, epochs: int | None, interval: timedelta | None) -> None:
        if steps is None and epochs is None and interval is None:
            epochs, steps = 1, 0
        self._train_time_interval = interval
        self._every_n_epochs: int = epochs or 0
        self._every_n_train_steps: int = steps or 0

    def _validate(self) -> None:
        check_save_last(self.save_last)
        check_filename(self.filename, self.auto_insert_metric_name, self.CHECKPOINT_EQUALS_CHAR)
        check_triggers(self)

    @property
    def every_n_epochs(self) -> int:
        return self._every_n_epochs

    @property
    def state_key(self) -> str:
        return self._generate_state_key(
            monitor=self.monitor,
            mode=self.mode,
            every_n_train_steps=self._every_n_train_steps,
            every_n_epochs=self._every_n_epochs,
            train_time_interval=self._train_time_interval,
        )

    # ------------------------------------------------------------------ hooks
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.dirpath = trainer.strategy.broadcast(self._resolve_dir(trainer))
        assert self.dirpath is not None
        if self.save_last == "link" and fs.is_remote(self.dirpath):
            raise ValueError(
                "`ModelCheckpoint(save_last='link')` is only supported for local file paths, got"
                f" `dirpath={self.dirpath}`. Use `save_last=True` to write `last.ckpt` as a file."
            )
        if stage == "fit" and (self.save_top_k != 0 or self.save_last):
            self._check_before_fit(trainer, pl_module)
        folder_in_use = bool(fs.listdir(self.dirpath))  # [] when the folder does not exist
        if trainer.is_global_zero and stage == "fit" and self.save_top_k != 0 and folder_in_use:
            rank_zero_warn(f"Checkpoint directory {self.dirpath} exists and is not empty.")

    def _check_before_fit(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """What the first save would trip over, found before the first training step (each rank raises alike)."""
        assert self.dirpath is not None
        check_save_last(self.save_last)  # the attributes may have been changed since `__init__`
        check_filename(self.filename, self.auto_insert_metric_name, self.CHECKPOINT_EQUALS_CHAR)
        problem = folder_problem(self.dirpath) if trainer.is_global_zero else None
        problem = trainer.strategy.broadcast(problem)  # only rank 0 writes, and only it may see the folder
        for owner in (pl_module, trainer.datamodule):
            problem = problem or unpicklable_hparams_message(owner)
        if problem:
            raise MisconfigurationException(problem)
        if trainer.is_global_zero:  # left by a save that was killed mid-write (no save runs now)
            remove_stale_temporaries(self.dirpath)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._last_time_checked = time.monotonic()

    def _idle_hooks(self) -> frozenset[str]:
        # Without step- or time-based saving, the per-batch hook can never save: it is not dispatched at all.
        if self._every_n_train_steps < 1 and self._train_time_interval is None:
            return frozenset({"on_train_batch_end"})
        return frozenset()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Step- and time-based saving; deferred to validation end when the monitored value is not ready yet."""
        skip_batch = self._every_n_train_steps < 1 or trainer.global_step % self._every_n_train_steps != 0
        skip_time = True
        now = time.monotonic()
        if self._train_time_interval is not None:
            previous = self._last_time_checked
            skip_time = previous is None or now - previous < self._train_time_interval.total_seconds()
            skip_time = trainer.strategy.broadcast(skip_time)
        if skip_batch and skip_time:
            return
        if not skip_time:
            self._last_time_checked = now
        candidates = self._monitor_candidates(trainer)
        if self.monitor is not None and (self.monitor not in candidates or self._validation_follows(trainer)):
            self._defer_save_until_validation = True
            return
        if self._should_skip_saving_checkpoint(trainer):
            return
        self._save_topk_and_last(trainer, candidates)

    def _validation_follows(self, trainer: Trainer) -> bool:
        """A stale monitored value: validation runs right after this last batch and saving waits for it."""
        if self._should_save_on_train_epoch_end(trainer) or not trainer.is_last_batch:
            return False
        if not getattr(trainer, "enable_validation", False) or not sum(_finite(n) for n in trainer.num_val_batches):
            return False
        every = trainer.check_val_every_n_epoch
        return every is None or (trainer.current_epoch + 1) % every == 0

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._should_skip_saving_checkpoint(trainer) and self._should_save_on_train_epoch_end(trainer):
            self._save_at_check(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._validation_ran = self._validation_ran or not trainer.sanity_checking
        if self._should_skip_saving_checkpoint(trainer) or self._should_save_on_train_epoch_end(trainer):
            return
        if self._defer_save_until_validation:
            self._save_topk_and_last(trainer, self._monitor_candidates(trainer))
            self._defer_save_until_validation = False
            return
        self._save_at_check(trainer)

    def _save_at_check(self, trainer: Trainer) -> None:
        # Lightning 2.6 rewrites last.ckpt here only if a top-k file was saved at this step, leaving it stale
        # otherwise; fulgor rewrites it at every check so it always holds the latest state (docs/differences.md).
        topk = self._every_n_epochs >= 1 and (trainer.current_epoch + 1) % self._every_n_epochs == 0
        self._save_topk_and_last(trainer, self._monitor_candidates(trainer), topk=topk)

    def _save_topk_and_last(self, trainer: Trainer, candidates: dict[str, Tensor], topk: bool = True) -> None:
        """One save check: the top-k file, then `last` (a file, or the link moved to the new file), and only then the
        removal of the files they replaced, so that a kill at any instant leaves every name loadable."""
        if topk:
            self._save_topk_checkpoint(trainer, candidates)
        self._save_last_checkpoint(trainer, candidates)
        self._remove_retired(trainer)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if not self._should_save_on_exception(trainer):
            return
        candidates = self._monitor_candidates(trainer)
        filepath = self.format_checkpoint_name(candidates)
        self._save_checkpoint(trainer, filepath)
        self._save_last_checkpoint(trainer, candidates)
        self._remove_retired(trainer)
        rank_zero_info(
            f"An {type(exception).__name__} was raised with message: {exception}, saved checkpoint to {filepath}"
        )

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.save_last and not self._last_checkpoint_saved:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
            self._remove_retired(trainer)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            "monitor": self.monitor,
            "best_model_score": self.best_model_score,
            "best_model_path": self.best_model_path,
            "current_score": self.current_score,
            "dirpath": self.dirpath,
            "best_k_models": self.best_k_models,
            "kth_best_model_path": self.kth_best_model_path,
            "kth_value": self.kth_value,
            "last_model_path": self.last_model_path,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved_dir = state_dict.get("dirpath", self.dirpath)
        if self.dirpath == saved_dir:
            self.best_model_score = state_dict["best_model_score"]
            self.kth_best_model_path = state_dict.get("kth_best_model_path", self.kth_best_model_path)
            self.kth_value = state_dict.get("kth_value", self.kth_value)
            self.best_k_models = state_dict.get("best_k_models", self.best_k_models)
            self.last_model_path = state_dict.get("last_model_path", self.last_model_path)
        else:
            rank_zero_warn(
                f"The dirpath has changed from {saved_dir!r} to {self.dirpath!r},"
                " therefore `best_model_score`, `kth_best_model_path`, `kth_value`, `last_model_path` and"
                " `best_k_models` won't be reloaded. Only `best_model_path` will be reloaded."
            )
        self.best_model_path = state_dict["best_model_path"]

    def to_yaml(self, filepath: str | os.PathLike[str] | None = None) -> None:
        """Write `best_k_models` (path -> score) to `filepath` (default `<dirpath>/best_k_models.yaml`)."""
        import yaml

        best_k = {k: v.item() for k, v in self.best_k_models.items()}
        if filepath is None:
            assert self.dirpath
            filepath = fs.join(self.dirpath, "best_k_models.yaml")
        with fs.open(filepath, "w") as fp:
            yaml.dump(best_k, fp)

    # ------------------------------------------------------------------ decisions
    def _should_skip_saving_checkpoint(self, trainer: Trainer) -> bool:
        return (
            bool(trainer.fast_dev_run)
            or trainer.state.fn != "fit"
            or trainer.sanity_checking
            or self._last_global_step_saved == trainer.global_step
        )

    def _should_save_on_exception(self, trainer: Trainer) -> bool:
        return (
            self.save_on_exception
            and not bool(trainer.fast_dev_run)
            and not trainer.sanity_checking
            and self._last_global_step_saved != trainer.global_step
        )

    def _should_save_on_train_epoch_end(self, trainer: Trainer) -> bool:
        if self._save_on_train_epoch_end is not None:
            return self._save_on_train_epoch_end
        if trainer.val_check_time_interval is not None:  # validation on a clock: save after each one
            return False
        if trainer.check_val_every_n_epoch != 1:
            return False
        if sum(_finite(n) for n in trainer.num_val_batches) == 0:
            return True
        return trainer.val_check_interval == 1.0

    def check_monitor_top_k(self, trainer: Trainer, current: Tensor | None = None) -> bool:
        """Whether `current` earns a place among the best `save_top_k`."""
        if current is None:
            return False
        if self.save_top_k == -1 or len(self.best_k_models) < self.save_top_k:
            return True
        kth = self.best_k_models[self.kth_best_model_path]
        better = bool(current < kth) if self.mode == "min" else bool(current > kth)
        return trainer.strategy.reduce_boolean_decision(better)

    # ------------------------------------------------------------------ names
    def format_checkpoint_name(
        self, metrics: dict[str, Tensor], filename: str | None = None, ver: int | None = None, prefix: str | None = None
    ) -> str:
        """The checkpoint path for `metrics` (template `"{epoch}-{val_loss:.2f}"` -> `epoch=2-val_loss=0.12.ckpt`)."""
        name = self._format_checkpoint_name(filename or self.filename, metrics, prefix, self.auto_insert_metric_name)
        if ver is not None:
            name = self.CHECKPOINT_JOIN_CHAR.join((name, f"v{ver}"))
        name = f"{name}{self.FILE_EXTENSION}"
        return fs.join(self.dirpath, name) if self.dirpath else name

    def _format_checkpoint_name(
        self,
        filename: str | None,
        metrics: dict[str, Tensor],
        prefix: str | None = None,
        auto_insert_metric_name: bool = True,
    ) -> str:
        """The name without folder and extension (Lightning's name for this step, kept for subclasses that override
        it)."""
        template = filename or "{epoch}" + self.CHECKPOINT_JOIN_CHAR + "{step}"
        name = fill_template(template, metrics, auto_insert_metric_name, self.CHECKPOINT_EQUALS_CHAR)
        return self.CHECKPOINT_JOIN_CHAR.join([prefix, name]) if prefix else name

    def _resolve_dir(self, trainer: Trainer) -> str:
        return self.dirpath if self.dirpath is not None else default_dir(trainer)

    def _find_last_checkpoints(self, trainer: Trainer) -> set[str]:
        return last_checkpoints(self._resolve_dir(trainer), self.CHECKPOINT_NAME_LAST, self.FILE_EXTENSION)

    def _monitor_candidates(self, trainer: Trainer) -> dict[str, Tensor]:
        candidates = deepcopy(trainer.callback_metrics)
        epoch, step = candidates.get("epoch"), candidates.get("step")
        candidates["epoch"] = epoch.int() if isinstance(epoch, Tensor) else torch.tensor(trainer.current_epoch)
        candidates["step"] = step.int() if isinstance(step, Tensor) else torch.tensor(trainer.global_step)
        return candidates

    def _free_name(
        self, trainer: Trainer, metrics: dict[str, Tensor], template: str | None, reusable: str | None
    ) -> str:
        """The formatted name, with `-vN` appended while it collides with an existing file (other than `reusable`)."""
        filepath = self.format_checkpoint_name(metrics, template)
        if self._enable_version_counter:
            version = self.STARTING_VERSION
            while self.file_exists(filepath, trainer) and filepath != reusable:
                filepath = self.format_checkpoint_name(metrics, template, ver=version)
                version += 1
        return filepath

    def file_exists(self, filepath: str | os.PathLike[str], trainer: Trainer) -> bool:
        """Whether `filepath` exists on rank 0 (the decision is shared by every rank)."""
        local = fs.exists(filepath) if trainer.is_global_zero else False
        return trainer.strategy.reduce_boolean_decision(local, all=False)

    # ------------------------------------------------------------------ saving
    def _save_topk_checkpoint(self, trainer: Trainer, candidates: dict[str, Tensor]) -> None:
        if self.save_top_k == 0:
            return
        if self.monitor is None:
            self._save_none_monitor_checkpoint(trainer, candidates)
            return
        if self.monitor not in candidates:
            message = (
                f"`ModelCheckpoint(monitor={self.monitor!r})` could not find the monitored key in the returned"
                f" metrics: {list(candidates)}."
                f" HINT: Did you call `log({self.monitor!r}, value)` in the `LightningModule`?"
            )
            if self._validation_ran or trainer.state.val_batches_seen > 0:
                raise MisconfigurationException(message)
            rank_zero_warn(message)
        current = candidates.get(self.monitor)
        if self.check_monitor_top_k(trainer, current):
            assert current is not None
            self._update_best_and_save(current, trainer, candidates)
        elif self.verbose:
            epoch, step = candidates["epoch"], candidates["step"]
            rank_zero_info(f"Epoch {epoch:d}, global step {step:d}: {self.monitor!r} was not in top {self.save_top_k}")

    def _save_none_monitor_checkpoint(self, trainer: Trainer, candidates: dict[str, Tensor]) -> None:
        filepath = self._free_name(trainer, candidates, None, self.best_model_path)
        previous, self.best_model_path = self.best_model_path, filepath  # part of the saved state
        self._save_checkpoint(trainer, filepath)
        if self.save_top_k == 1 and previous and self._should_remove_checkpoint(trainer, previous, filepath):
            self._retire(previous)

    def _update_best_and_save(self, current: Tensor, trainer: Trainer, candidates: dict[str, Tensor]) -> None:
        k = len(self.best_k_models) + 1 if self.save_top_k == -1 else self.save_top_k
        del_filepath = None
        if len(self.best_k_models) == k and k > 0:
            del_filepath = self.kth_best_model_path
            self.best_k_models.pop(del_filepath)
        if torch.isnan(current):
            current = torch.tensor(float("inf" if self.mode == "min" else "-inf"), device=current.device)
        filepath = self._free_name(trainer, candidates, None, del_filepath)
        self.current_score = current
        self.best_k_models[filepath] = current
        worst, best = (max, min) if self.mode == "min" else (min, max)
        if len(self.best_k_models) == k:
            self.kth_best_model_path = worst(self.best_k_models, key=self.best_k_models.__getitem__)
            self.kth_value = self.best_k_models[self.kth_best_model_path]
        self.best_model_path = best(self.best_k_models, key=self.best_k_models.__getitem__)
        self.best_model_score = self.best_k_models[self.best_model_path]
        if self.verbose:
            epoch, step = candidates["epoch"], candidates["step"]
            rank_zero_info(
                f"Epoch {epoch:d}, global step {step:d}: {self.monitor!r} reached {current:0.5f}"
                f" (best {self.best_model_score:0.5f}), saving model to {filepath!r} as top {k}"
            )
        self._save_checkpoint(trainer, filepath)
        # The file it replaces goes once `last` no longer points at it either (`_remove_retired`).
        if del_filepath and self._should_remove_checkpoint(trainer, del_filepath, filepath):
            self._retire(del_filepath)

    def _save_last_checkpoint(self, trainer: Trainer, candidates: dict[str, Tensor]) -> None:
        if not self.save_last:
            return
        filepath = self._free_name(trainer, candidates, self.CHECKPOINT_NAME_LAST, self.last_model_path)
        previous, self.last_model_path = self.last_model_path, filepath
        if self.save_last == "link" and self._last_checkpoint_saved and self.save_top_k != 0:
            self._link_checkpoint(trainer, self._last_checkpoint_saved, filepath)
        else:
            self._save_checkpoint(trainer, filepath)
        if previous and self._should_remove_checkpoint(trainer, previous, filepath):
            self._retire(previous)

    def _save_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        trainer.save_checkpoint(filepath, self.save_weights_only)
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(self)

    @staticmethod
    def _link_checkpoint(trainer: Trainer, filepath: str, linkpath: str) -> None:
        """Point `linkpath` at the committed `filepath` (a relative symlink swapped in atomically; a copy if needed)."""
        link_checkpoint(trainer, filepath, linkpath)

    def _should_remove_checkpoint(self, trainer: Trainer, previous: str, current: str) -> bool:
        """Never remove the new file, files outside `dirpath`, or the checkpoint this run resumed from."""
        assert self.dirpath is not None
        return is_removable(previous, current, self.dirpath, trainer.ckpt_path)

    def _retire(self, filepath: str) -> None:
        self._retired += [] if filepath in self._retired else [filepath]

    def _remove_retired(self, trainer: Trainer) -> None:
        """Remove the files this check replaced, unless a name in use points at them again."""
        retired, self._retired = self._retired, []
        in_use = {*self.best_k_models, self.best_model_path, self.last_model_path, self._last_checkpoint_saved}
        for filepath in retired:
            if filepath not in in_use:
                self._remove_checkpoint(trainer, filepath)

    def _remove_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        # Through the strategy's checkpoint IO (rank 0 only): a user's CheckpointIO sees the removal, and an
        # AsyncCheckpointIO removes the file only after the saves queued before it are committed.
        trainer.strategy.remove_checkpoint(filepath)


def _finite(n: int | float) -> int | float:
    return 0 if n == float("inf") else n


# Annotations as objects, not strings: signature readers (jsonargparse, LightningCLI) see `Literal["link"]` itself.
inspect.unwrap(ModelCheckpoint.__init__).__annotations__.update(get_type_hints(ModelCheckpoint.__init__))
