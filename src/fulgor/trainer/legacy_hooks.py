"""Lightning 1.x hooks that 2.0 dropped (`*_step_end`, `*_epoch_end(outputs)`), called where 1.9.5 called them and
only when the module defines them: outputs are collected for a stage only if its `*_epoch_end` exists."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fulgor.errors import MisconfigurationException
from fulgor.trainer.dispatch import set_fx_name

__all__ = ["LegacyHooks", "resolve_legacy_hooks"]

# step name -> the 1.x hook that post-processes its output
STEP_END = {
    "training_step": "training_step_end",
    "validation_step": "validation_step_end",
    "test_step": "test_step_end",
}
# stage name (as the loops spell it) -> the 1.x epoch-end hook that receives the collected outputs
EPOCH_END = {"train": "training_epoch_end", "validation": "validation_epoch_end", "test": "test_epoch_end"}
# 1.9.5's `self.log` rules for the legacy hooks are those of these 2.x hooks
_LOG_AS = {
    "training_step_end": "training_step",
    "validation_step_end": "validation_step",
    "test_step_end": "test_step",
    "training_epoch_end": "on_train_epoch_end",
    "validation_epoch_end": "on_validation_epoch_end",
    "test_epoch_end": "on_test_epoch_end",
}


def _defines(module: Any, name: str) -> bool:
    """The 1.x hooks do not exist on fulgor's LightningModule, so "defined" means "the user wrote it"."""
    return callable(getattr(module, name, None))


class LegacyHooks:
    """The 1.x hooks one module defines, and the step outputs collected for its `*_epoch_end` hooks.

    Built once per run by `resolve_legacy_hooks`; the loops call `after_step` right after each `*_step`,
    `collect_train` with each training batch's result and `epoch_end` right before `on_*_epoch_end`.
    """

    def __init__(self, module: Any) -> None:
        self.module = module
        self.step_end: dict[str, Callable[[Any], Any]] = {
            step: getattr(module, hook) for step, hook in STEP_END.items() if _defines(module, hook)
        }
        self.epoch_end_hooks: dict[str, Callable[[Any], Any]] = {
            stage: getattr(module, hook) for stage, hook in EPOCH_END.items() if _defines(module, hook)
        }
        # stage -> one list of step outputs per dataloader
        self.outputs: dict[str, list[list[Any]]] = {stage: [] for stage in self.epoch_end_hooks}

    def __bool__(self) -> bool:
        return bool(self.step_end or self.epoch_end_hooks)

    def after_step(self, step: str, output: Any, dataloader_idx: int = 0) -> Any:
        """Run `<step>_end(output)` if defined; its result replaces `output` unless it is None (as in 1.9.5).

        For `validation_step`/`test_step` the (replaced) output is also kept for `*_epoch_end` when that hook exists
        and the output is not None.

        Args:
            step: "training_step", "validation_step" or "test_step".
            output: what the step returned.
            dataloader_idx: the evaluation dataloader the batch came from.

        Returns:
            The output the loop continues with (passed to `on_*_batch_end`, and for training to the loss parser).
        """
        hook = self.step_end.get(step)
        if hook is not None:
            previous = self.module._current_fx_name
            set_fx_name(self.module, _LOG_AS[STEP_END[step]])
            try:
                replaced = hook(output)
            finally:
                set_fx_name(self.module, previous)
            if replaced is not None:
                output = replaced
        if step != "training_step" and output is not None:
            self._keep(step.removesuffix("_step"), output, dataloader_idx)
        return output

    def collect_train(self, batch_output: Any) -> None:
        """Keep one training batch's result (`{"loss": loss / accumulate, **extra}`; empty when skipped) for
        `training_epoch_end`."""
        if batch_output and "train" in self.outputs:
            self._keep("train", batch_output, 0)

    def _keep(self, stage: str, output: Any, dataloader_idx: int) -> None:
        per_loader = self.outputs.get(stage)
        if per_loader is None:
            return
        while len(per_loader) <= dataloader_idx:
            per_loader.append([])
        per_loader[dataloader_idx].append(output)

    def epoch_end(self, stage: str, num_dataloaders: int = 1) -> None:
        """Call `<stage>_epoch_end(outputs)` if defined, with 1.9.5's `outputs`, then free the outputs.

        `training_epoch_end` gets the list of batch results and is skipped when there are none; the evaluation hooks
        get the list of step outputs, or one such list per dataloader when there are several.

        Args:
            stage: "train", "validation" or "test".
            num_dataloaders: how many evaluation dataloaders ran.

        Raises:
            MisconfigurationException: `training_epoch_end` returned a value.
        """
        hook = self.epoch_end_hooks.get(stage)
        if hook is None:
            return
        per_loader, self.outputs[stage] = self.outputs[stage], []
        while len(per_loader) < num_dataloaders:
            per_loader.append([])
        if stage == "train":
            if not per_loader[0]:
                return
            outputs: Any = per_loader[0]
        else:
            outputs = per_loader[0] if num_dataloaders == 1 else per_loader
        name = EPOCH_END[stage]
        previous = self.module._current_fx_name
        set_fx_name(self.module, _LOG_AS[name])
        try:
            result = hook(outputs)
        finally:
            set_fx_name(self.module, previous)
        if stage == "train" and result is not None:
            raise MisconfigurationException(
                "`training_epoch_end` expects a return of None. HINT: remove the return statement in"
                " `training_epoch_end`."
            )


def resolve_legacy_hooks(module: Any) -> LegacyHooks | None:
    """The module's 1.x hooks, or None when it defines none (then the loops skip every legacy call)."""
    legacy = LegacyHooks(module)
    return legacy if legacy else None
