"""OnExceptionCheckpoint: save a checkpoint when a run is interrupted by an exception (e.g. Ctrl+C), for resuming."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, ClassVar

from fulgor.callbacks.checkpoint import Checkpoint

if TYPE_CHECKING:
    from fulgor.module import LightningModule
    from fulgor.trainer.trainer import Trainer


class OnExceptionCheckpoint(Checkpoint):
    """Write ``<dirpath>/<filename>.ckpt`` through ``trainer.save_checkpoint`` when the run raises.

    The file is removed again when the run ends normally. ``trainer.fit(model, ckpt_path="last")`` considers it
    together with ModelCheckpoint's last checkpoints and resumes from the newest.

    Args:
        dirpath: folder of the checkpoint (known up front: an exception can come at any moment).
        filename: file name without the ``.ckpt`` extension.
    """

    FILE_EXTENSION: ClassVar[str] = ".ckpt"

    def __init__(self, dirpath: str | os.PathLike[str], filename: str = "on_exception") -> None:
        super().__init__()
        if not filename:
            raise ValueError("The filename cannot be empty")
        self.dirpath = dirpath
        self.filename = filename

    @property
    def ckpt_path(self) -> str:
        """Where the checkpoint is written."""
        return os.path.join(self.dirpath, self.filename + self.FILE_EXTENSION)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        trainer.save_checkpoint(self.ckpt_path)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if trainer.is_global_zero and os.path.isfile(self.ckpt_path):
            os.remove(self.ckpt_path)

    def _find_last_checkpoints(self, trainer: Any) -> set[str]:
        """The on-exception file when it exists: a candidate for ``ckpt_path="last"``."""
        return {self.ckpt_path} if os.path.isfile(self.ckpt_path) else set()
