"""Fine-tuning callbacks: BaseFinetuning (freeze modules before training, unfreeze them into new optimizer param
groups later) and BackboneFinetuning (unfreeze `pl_module.backbone` at an epoch with its own learning rate)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from torch import Tensor
from torch.nn import Module, ModuleDict
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim import Optimizer

from fulgor.callbacks.callback import Callback
from fulgor.errors import MisconfigurationException
from fulgor.rank import rank_zero_warn

if TYPE_CHECKING:
    from fulgor.module import LightningModule
    from fulgor.trainer.trainer import Trainer

log = logging.getLogger("fulgor.callbacks.finetuning")

Modules = Module | Iterable[Any]


def multiplicative(epoch: int) -> float:
    """BackboneFinetuning's default schedule: the backbone learning rate doubles every epoch."""
    return 2.0


class BaseFinetuning(Callback):
    """Base class for fine-tuning callbacks. Override `freeze_before_training` (called in ``setup``, before
    ``configure_optimizers``) and `finetune_function` (called at every training epoch start, per optimizer).

    Build the optimizer from trainable parameters only, e.g.
    ``SGD(filter(lambda p: p.requires_grad, self.parameters()), lr=0.1)``. Parameter groups added by
    `unfreeze_and_add_param_group` are saved in checkpoints and rebuilt when resuming.
    """

    def __init__(self) -> None:
        super().__init__()
        self._internal_optimizer_metadata: dict[int, list[dict[str, Any]]] = {}
        self._restarting = False

    def state_dict(self) -> dict[str, Any]:
        return {"internal_optimizer_metadata": self._internal_optimizer_metadata}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restarting = True
        self._internal_optimizer_metadata = state_dict.get("internal_optimizer_metadata", state_dict)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """When resuming, rebuild the optimizers' param groups (including added ones) from parameter names."""
        if self._restarting and self._internal_optimizer_metadata:
            named = dict(pl_module.named_parameters())
            for index, optimizer in enumerate(trainer.optimizers):
                if index in self._internal_optimizer_metadata:
                    groups = _map_params(self._internal_optimizer_metadata[index], named)
                    optimizer.param_groups = groups
        self._restarting = False

    @staticmethod
    def flatten_modules(modules: Modules) -> list[Module]:
        """The leaf modules (and parents that own parameters directly) of a module or nested iterable of modules."""
        if isinstance(modules, ModuleDict):
            modules = modules.values()
        if isinstance(modules, Iterable):
            return [leaf for module in modules for leaf in BaseFinetuning.flatten_modules(module)]
        return [m for m in modules.modules() if not list(m.children()) or m._parameters]

    @staticmethod
    def filter_params(modules: Modules, train_bn: bool = True, requires_grad: bool = True) -> Iterator[Tensor]:
        """Yield the parameters whose ``requires_grad`` equals `requires_grad` (BatchNorm's skipped unless
        `train_bn`)."""
        for module in BaseFinetuning.flatten_modules(modules):
            if isinstance(module, _BatchNorm) and not train_bn:
                continue
            for param in module.parameters(recurse=False):
                if param.requires_grad == requires_grad:
                    yield param

    @staticmethod
    def make_trainable(modules: Modules) -> None:
        """Unfreeze every parameter of `modules` (BatchNorm layers track running statistics again)."""
        for module in BaseFinetuning.flatten_modules(modules):
            if isinstance(module, _BatchNorm):
                module.track_running_stats = True
            for param in module.parameters(recurse=False):
                param.requires_grad = True

    @staticmethod
    def freeze_module(module: Module) -> None:
        """Freeze the parameters owned directly by `module` (a BatchNorm layer also stops tracking statistics)."""
        if isinstance(module, _BatchNorm):
            module.track_running_stats = False
        for param in module.parameters(recurse=False):
            param.requires_grad = False

    @staticmethod
    def freeze(modules: Modules, train_bn: bool = True) -> None:
        """Freeze `modules`; with `train_bn` their BatchNorm layers stay trainable."""
        for module in BaseFinetuning.flatten_modules(modules):
            if isinstance(module, _BatchNorm) and train_bn:
                BaseFinetuning.make_trainable(module)
            else:
                BaseFinetuning.freeze_module(module)

    @staticmethod
    def filter_on_optimizer(optimizer: Optimizer, params: Iterable[Tensor]) -> list[Tensor]:
        """`params` minus those the optimizer already has (by identity), with Lightning's warning if any were."""
        present = {id(p) for group in optimizer.param_groups for p in group["params"]}
        params = list(params)
        kept = [p for p in params if id(p) not in present]
        if len(kept) != len(params):
            rank_zero_warn(
                "The provided params to be frozen already exist within another group of this optimizer."
                " Those parameters will be skipped.\n"
                "HINT: Did you init your optimizer in `configure_optimizer` as such:\n"
                f" {type(optimizer)}(filter(lambda p: p.requires_grad, self.parameters()), ...) ",
            )
        return kept

    @staticmethod
    def unfreeze_and_add_param_group(
        modules: Modules,
        optimizer: Optimizer,
        lr: float | None = None,
        initial_denom_lr: float = 10.0,
        train_bn: bool = True,
    ) -> None:
        """Unfreeze `modules` and add their parameters to `optimizer` as a new param group.

        Args:
            modules: the modules to unfreeze.
            optimizer: receives the new param group.
            lr: the group's learning rate; None: the first group's learning rate divided by `initial_denom_lr`.
            initial_denom_lr: see `lr`.
            train_bn: also train the BatchNorm layers.
        """
        BaseFinetuning.make_trainable(modules)
        group_lr = optimizer.param_groups[0]["lr"] / initial_denom_lr if lr is None else float(lr)
        params = BaseFinetuning.filter_params(modules, train_bn=train_bn, requires_grad=True)
        kept = BaseFinetuning.filter_on_optimizer(optimizer, params)
        if kept:
            optimizer.add_param_group({"params": kept, "lr": group_lr})

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.freeze_before_training(pl_module)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        for index, optimizer in enumerate(trainer.optimizers):
            n_groups = len(optimizer.param_groups)
            self.finetune_function(pl_module, trainer.current_epoch, optimizer)
            self._store(pl_module, index, n_groups, optimizer.param_groups)

    def finetune_function(self, pl_module: LightningModule, epoch: int, optimizer: Optimizer) -> None:
        """Override to unfreeze modules at the epochs you choose."""
        raise NotImplementedError

    def freeze_before_training(self, pl_module: LightningModule) -> None:
        """Override to freeze modules before the optimizers are created."""
        raise NotImplementedError

    def _store(self, pl_module: LightningModule, index: int, n_before: int, groups: list[dict[str, Any]]) -> None:
        """Remember the param groups (parameters by name) so a checkpoint can rebuild them."""
        names = {p: n for n, p in pl_module.named_parameters()}
        if index not in self._internal_optimizer_metadata:
            self._internal_optimizer_metadata[index] = _map_params(groups, names)
        elif n_before != len(groups):
            self._internal_optimizer_metadata[index].extend(_map_params(groups[n_before:], names))


def _map_params(groups: list[dict[str, Any]], mapping: dict[Any, Any]) -> list[dict[str, Any]]:
    return [
        {**{k: v for k, v in g.items() if k != "params"}, "params": [mapping[p] for p in g["params"]]} for g in groups
    ]


class BackboneFinetuning(BaseFinetuning):
    """Freeze ``pl_module.backbone`` before training and unfreeze it at `unfreeze_backbone_at_epoch` into a new
    param group, whose learning rate then follows `lambda_func`.

    Args:
        unfreeze_backbone_at_epoch: epoch at which the backbone starts training.
        lambda_func: ``epoch -> factor``: each later epoch, backbone lr = ``lambda_func(epoch + 1) * previous``.
        backbone_initial_ratio_lr: backbone lr at unfreezing = current lr x this (unless `backbone_initial_lr`).
        backbone_initial_lr: explicit backbone lr at unfreezing.
        should_align: cap the backbone lr at the model's current lr once it reaches it.
        initial_denom_lr: passed to `unfreeze_and_add_param_group`.
        train_bn: train the backbone's BatchNorm layers (kept trainable while frozen too).
        verbose: log the model and backbone learning rates each epoch from unfreezing on.
        rounding: decimals of the learning rates in those messages.

    Raises:
        MisconfigurationException: at fit start, if the module has no ``backbone`` ``nn.Module`` attribute.
    """

    def __init__(
        self,
        unfreeze_backbone_at_epoch: int = 10,
        lambda_func: Callable[[int], float] = multiplicative,
        backbone_initial_ratio_lr: float = 10e-2,
        backbone_initial_lr: float | None = None,
        should_align: bool = True,
        initial_denom_lr: float = 10.0,
        train_bn: bool = True,
        verbose: bool = False,
        rounding: int = 12,
    ) -> None:
        super().__init__()
        self.unfreeze_backbone_at_epoch = unfreeze_backbone_at_epoch
        self.lambda_func = lambda_func
        self.backbone_initial_ratio_lr = backbone_initial_ratio_lr
        self.backbone_initial_lr = backbone_initial_lr
        self.should_align = should_align
        self.initial_denom_lr = initial_denom_lr
        self.train_bn = train_bn
        self.verbose = verbose
        self.rounding = rounding
        self.previous_backbone_lr: float | None = None

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "previous_backbone_lr": self.previous_backbone_lr}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.previous_backbone_lr = state_dict["previous_backbone_lr"]
        super().load_state_dict(state_dict)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not isinstance(getattr(pl_module, "backbone", None), Module):
            raise MisconfigurationException("The LightningModule should have a nn.Module `backbone` attribute")
        super().on_fit_start(trainer, pl_module)

    def freeze_before_training(self, pl_module: LightningModule) -> None:
        self.freeze(pl_module.backbone)

    def finetune_function(self, pl_module: LightningModule, epoch: int, optimizer: Optimizer) -> None:
        current_lr = optimizer.param_groups[0]["lr"]
        if epoch == self.unfreeze_backbone_at_epoch:
            backbone_lr = self.backbone_initial_lr
            if backbone_lr is None:
                backbone_lr = current_lr * self.backbone_initial_ratio_lr
            self.previous_backbone_lr = backbone_lr
            self.unfreeze_and_add_param_group(
                pl_module.backbone, optimizer, backbone_lr, train_bn=self.train_bn,
                initial_denom_lr=self.initial_denom_lr,
            )  # fmt: skip
        elif epoch > self.unfreeze_backbone_at_epoch:
            assert self.previous_backbone_lr is not None
            backbone_lr = self.lambda_func(epoch + 1) * self.previous_backbone_lr
            if self.should_align and backbone_lr > current_lr:
                backbone_lr = current_lr
            optimizer.param_groups[-1]["lr"] = backbone_lr
            self.previous_backbone_lr = backbone_lr
        else:
            return
        if self.verbose:
            log.info(
                f"Current lr: {round(current_lr, self.rounding)}, Backbone lr: {round(backbone_lr, self.rounding)}"
            )
