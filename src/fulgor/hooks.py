"""THE hook table: which receivers get each notification hook and in what order, and where `self.log` may be used.

The whole loop, with every hook in place (C = callbacks, M = LightningModule, DM = LightningDataModule)::

    fit:
      M.configure_callbacks                        (merged into the Trainer's callbacks)
      DM.prepare_data, M.prepare_data
      DM.setup, C.setup, M.setup                   (stage="fit")
      M.configure_model                            (only if overridden)
      M.configure_optimizers
      C.on_fit_start, M.on_fit_start
      [sanity check] C.on_sanity_check_start, <validation loop>, C.on_sanity_check_end
      M.train_dataloader (and M.val_dataloader if the sanity check did not ask for it)
      C.on_train_start, M.on_train_start
      per epoch:
        C.on_train_epoch_start, M.on_train_epoch_start (not again for an epoch a resumed checkpoint continues)
        per batch:
          M.on_before_batch_transfer, M.transfer_batch_to_device, M.on_after_batch_transfer
          C.on_train_batch_start, M.on_train_batch_start      (M returning -1 ends the epoch)
          M.optimizer_step(closure) -> closure: M.training_step,
                                     [C.on_before_zero_grad, M.on_before_zero_grad, M.optimizer_zero_grad],
                                     C.on_before_backward, M.on_before_backward, M.backward,
                                     C.on_after_backward, M.on_after_backward,
                                     C.on_before_optimizer_step, M.on_before_optimizer_step,
                                     M.configure_gradient_clipping
             (while accumulating only the closure's first part runs, without the optimizer step)
          M.lr_scheduler_step                       (step interval; epoch interval on the last batch)
          C.on_train_batch_end, M.on_train_batch_end
          [validation when due] M.on_validation_model_zero_grad, <validation loop>
        C.on_train_epoch_end (plain callbacks), M.on_train_epoch_end, C.on_train_epoch_end (monitoring callbacks)
      C.on_train_end, M.on_train_end
      C.on_fit_end, M.on_fit_end
      DM.teardown, C.teardown, M.teardown
    validation loop (sanity check, inside fit, trainer.validate):
      M.val_dataloader (first time), M.on_validation_model_eval,
      C.on_validation_start, M.on_validation_start, C.on_validation_epoch_start, M.on_validation_epoch_start,
      per batch: batch-transfer hooks, C.on_validation_batch_start, M.on_validation_batch_start,
                 M.validation_step, C.on_validation_batch_end, M.on_validation_batch_end
      C.on_validation_epoch_end, M.on_validation_epoch_end, C.on_validation_end, M.on_validation_end,
      M.on_validation_model_train (if overridden; else each submodule's training flag is restored)
    test and predict loops: the same with test_*/predict_* names (predict has no *_model_train hook).
    validate/test/predict runs: configure_callbacks, prepare_data, setup(stage), configure_model, the loop,
      teardown(stage). On an exception: C.on_exception, DM.on_exception, loggers finalized with "failed".
"""

from __future__ import annotations

from typing import NamedTuple

# Receivers, in call order. "C" = callbacks, "M" = module, "DM" = datamodule,
# "C:plain" / "C:monitoring" = callbacks without / with `monitors_metrics`.
CM = ("C", "M")
HOOKS: dict[str, tuple[str, ...]] = {
    "setup": ("DM", "C", "M"),
    "teardown": ("DM", "C", "M"),
    "prepare_data": ("DM", "M"),
    "on_fit_start": CM,
    "on_fit_end": CM,
    "on_sanity_check_start": ("C",),
    "on_sanity_check_end": ("C",),
    "on_train_start": CM,
    "on_train_end": CM,
    "on_train_epoch_start": CM,
    "on_train_epoch_end": ("C:plain", "M", "C:monitoring"),
    "on_train_batch_start": CM,
    "on_train_batch_end": CM,
    "on_before_zero_grad": CM,
    "on_before_backward": CM,
    "on_after_backward": CM,
    "on_before_optimizer_step": CM,
    "on_validation_start": CM,
    "on_validation_end": CM,
    "on_validation_epoch_start": CM,
    "on_validation_epoch_end": CM,
    "on_validation_batch_start": CM,
    "on_validation_batch_end": CM,
    "on_test_start": CM,
    "on_test_end": CM,
    "on_test_epoch_start": CM,
    "on_test_epoch_end": CM,
    "on_test_batch_start": CM,
    "on_test_batch_end": CM,
    "on_predict_start": CM,
    "on_predict_end": CM,
    "on_predict_epoch_start": CM,
    "on_predict_epoch_end": CM,
    "on_predict_batch_start": CM,
    "on_predict_batch_end": CM,
    "on_exception": ("C", "DM"),
    "on_save_checkpoint": CM,
    "on_load_checkpoint": ("M", "C"),
}

# Module hooks whose default does something: called even when the user did not override them.
ALWAYS_CALLED = frozenset(
    {"on_validation_model_zero_grad", "on_validation_model_eval", "on_test_model_eval", "on_predict_model_eval"}
)


class LogRule(NamedTuple):
    """Defaults of `self.log(on_step=..., on_epoch=...)` in a hook, and whether other values are allowed."""

    on_step: bool
    on_epoch: bool
    fixed: bool  # True: only the defaults are allowed (epoch-level hooks)


_STEP = LogRule(on_step=True, on_epoch=False, fixed=False)
_EVAL = LogRule(on_step=False, on_epoch=True, fixed=False)
_EPOCH = LogRule(on_step=False, on_epoch=True, fixed=True)

# Hooks where `self.log` is allowed. Any other hook raises "You can't `self.log()` inside `<hook>`".
LOG_RULES: dict[str, LogRule] = {
    **dict.fromkeys(
        (
            "training_step",
            "on_train_batch_start",
            "on_train_batch_end",
            "on_before_backward",
            "backward",
            "on_after_backward",
            "on_before_optimizer_step",
            "optimizer_step",
            "configure_gradient_clipping",
            "clip_gradients",
            "on_before_zero_grad",
            "optimizer_zero_grad",
        ),
        _STEP,
    ),
    **dict.fromkeys(
        (
            "validation_step",
            "test_step",
            "on_validation_batch_start",
            "on_validation_batch_end",
            "on_test_batch_start",
            "on_test_batch_end",
        ),
        _EVAL,
    ),
    **dict.fromkeys(
        (
            "on_train_start",
            "on_validation_start",
            "on_test_start",
            "on_train_epoch_start",
            "on_train_epoch_end",
            "on_validation_epoch_start",
            "on_validation_epoch_end",
            "on_test_epoch_start",
            "on_test_epoch_end",
        ),
        _EPOCH,
    ),
}
