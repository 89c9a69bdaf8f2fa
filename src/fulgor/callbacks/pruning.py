"""`ModelPruning`: prune a model's weights during training with `torch.nn.utils.prune` (per layer or globally, on a
schedule), optionally rewinding the kept weights to their initial values (lottery ticket), with the masks applied
permanently in saved checkpoints and at the end of training."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from copy import deepcopy
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

import torch.nn.utils.prune as torch_prune
from torch import Tensor, nn

from fulgor.callbacks.callback import Callback
from fulgor.errors import MisconfigurationException
from fulgor.module import LightningModule
from fulgor.rank import log, rank_zero_only

if TYPE_CHECKING:
    from fulgor.trainer.trainer import Trainer

__all__ = ["ModelPruning"]

ParameterList = Sequence[tuple[nn.Module, str]]
Amount = int | float

# Pruning by name: the function for pruning one parameter at a time, the method class for global pruning.
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "ln_structured": torch_prune.ln_structured,
    "l1_unstructured": torch_prune.l1_unstructured,
    "random_structured": torch_prune.random_structured,
    "random_unstructured": torch_prune.random_unstructured,
}
_METHODS: dict[str, type[torch_prune.BasePruningMethod]] = {
    "ln_structured": torch_prune.LnStructured,
    "l1_unstructured": torch_prune.L1Unstructured,
    "random_structured": torch_prune.RandomStructured,
    "random_unstructured": torch_prune.RandomUnstructured,
}
# Modules that only hold other modules: their parameters are pruned through the modules they contain.
_CONTAINERS = (LightningModule, nn.Sequential, nn.ModuleList, nn.ModuleDict)


class ModelPruning(Callback):
    """Prune parameters with PyTorch's pruning utilities at the end of each training epoch (or validation epoch).

    Args:
        pruning_fn: ``"l1_unstructured"``, ``"random_unstructured"``, ``"ln_structured"``, ``"random_structured"``,
            or a ``torch.nn.utils.prune.BasePruningMethod`` subclass (the class, with global pruning).
        parameters_to_prune: ``(module, "weight")`` pairs; empty: every ``parameter_names`` parameter of every
            module that is not a container.
        parameter_names: which parameters to prune when ``parameters_to_prune`` is empty (``"weight"``, ``"bias"``).
        use_global_unstructured: prune across all parameters at once (unstructured methods only).
        amount: the fraction (float) or number (int) of parameters to prune, or ``epoch -> amount``.
        apply_pruning: whether to prune, or ``epoch -> bool``.
        make_pruning_permanent: apply the masks (remove the re-parametrisation) at the end of training, and in the
            weights of every saved checkpoint.
        use_lottery_ticket_hypothesis: after pruning, reset the kept weights to their values at fit start (or
            ``epoch -> bool``).
        resample_parameters: with the lottery ticket, reset to freshly initialised values instead.
        pruning_dim: the dimension structured methods prune along.
        pruning_norm: the norm of ``ln_structured``.
        verbose: 1 logs the overall sparsity after each pruning, 2 also each parameter's.
        prune_on_train_epoch_end: prune at the end of the training epoch; False: at the end of validation.

    Raises:
        MisconfigurationException: for an unknown parameter name or pruning function, a structured method without
            ``pruning_dim`` (or ``pruning_norm`` for ``ln_structured``), a structured method with global pruning, an
            ``amount`` that is not a number or callable, or a ``verbose`` outside (0, 1, 2).

    Example::

        ModelPruning("l1_unstructured", amount=lambda epoch: 0.5 if epoch == 2 else 0.0)
    """

    PARAMETER_NAMES: ClassVar[tuple[str, ...]] = ("weight", "bias")

    def __init__(
        self,
        pruning_fn: Callable[..., Any] | str,
        parameters_to_prune: ParameterList = (),
        parameter_names: list[str] | None = None,
        use_global_unstructured: bool = True,
        amount: Amount | Callable[[int], Amount] = 0.5,
        apply_pruning: bool | Callable[[int], bool] = True,
        make_pruning_permanent: bool = True,
        use_lottery_ticket_hypothesis: bool | Callable[[int], bool] = True,
        resample_parameters: bool = False,
        pruning_dim: int | None = None,
        pruning_norm: int | None = None,
        verbose: int = 0,
        prune_on_train_epoch_end: bool = True,
    ) -> None:
        self._use_global_unstructured = use_global_unstructured
        self._parameters_to_prune = parameters_to_prune
        self._use_lottery_ticket_hypothesis = use_lottery_ticket_hypothesis
        self._resample_parameters = resample_parameters
        self._prune_on_train_epoch_end = prune_on_train_epoch_end
        self._parameter_names = parameter_names or self.PARAMETER_NAMES
        self._global_kwargs: dict[str, Any] = {}
        self._original_layers: dict[int, dict[str, Any]] | None = None
        self._pruning_method_name: str | None = None
        for name in self._parameter_names:
            if name not in self.PARAMETER_NAMES:
                raise MisconfigurationException(
                    f"The provided `parameter_names` name: {name} isn't in {self.PARAMETER_NAMES}"
                )
        self.pruning_fn = self._resolve_pruning_fn(pruning_fn, pruning_dim, pruning_norm)
        if use_global_unstructured and getattr(self.pruning_fn, "PRUNING_TYPE", None) != "unstructured":
            raise MisconfigurationException(
                'Only the "unstructured" PRUNING_TYPE is supported with `use_global_unstructured=True`.'
                f" Found method {self.pruning_fn} of type {getattr(self.pruning_fn, 'PRUNING_TYPE', None)}. "
            )
        self._apply_pruning = apply_pruning
        self._make_pruning_permanent = make_pruning_permanent
        if not (isinstance(amount, (int, float)) or callable(amount)):
            raise MisconfigurationException(
                "`amount` should be provided and be either an int, a float or Callable function."
            )
        self.amount = amount
        if verbose not in (0, 1, 2):
            raise MisconfigurationException("`verbose` must be any of (0, 1, 2)")
        self._verbose = verbose

    def _resolve_pruning_fn(self, pruning_fn: Any, dim: int | None, norm: int | None) -> Any:
        """A name becomes torch's method class (global pruning) or function (per parameter, with its arguments)."""
        if isinstance(pruning_fn, str):
            name = pruning_fn.lower()
            if name not in _FUNCTIONS:
                raise MisconfigurationException(
                    f"The provided `pruning_fn` {name} isn't available in PyTorch's"
                    f" built-in functions: {list(_FUNCTIONS)} "
                )
            return self._create_pruning_fn(name, **_structured_kwargs(name, dim, norm))
        if self._is_pruning_method(pruning_fn):
            if not self._use_global_unstructured:
                raise MisconfigurationException(
                    "PyTorch `BasePruningMethod` is currently only supported with `use_global_unstructured=True`."
                )
            return pruning_fn
        raise MisconfigurationException(
            f"`pruning_fn` is expected to be a str in {list(_FUNCTIONS)} or a PyTorch `BasePruningMethod`."
            f" Found: {pruning_fn}. HINT: if passing a `BasePruningMethod`, pass the class, not an instance"
        )

    def filter_parameters_to_prune(self, parameters_to_prune: ParameterList = ()) -> ParameterList:
        """Override to choose which of the ``(module, name)`` pairs are pruned (called at setup)."""
        return parameters_to_prune

    def _create_pruning_fn(self, pruning_fn: str, **kwargs: Any) -> Any:
        """The method class of `pruning_fn` for global pruning (its arguments kept for later), else its function with
        the arguments bound."""
        if self._use_global_unstructured:
            method = _METHODS[pruning_fn]
            self._global_kwargs = kwargs
            self._pruning_method_name = method.__name__
            return method
        function = _FUNCTIONS[pruning_fn]
        self._pruning_method_name = function.__name__  # kept now: a partial has no __name__
        return self._wrap_pruning_fn(function, **kwargs)

    @staticmethod
    def _wrap_pruning_fn(pruning_fn: Callable[..., Any], **kwargs: Any) -> Callable[..., Any]:
        return partial(pruning_fn, **kwargs)

    def make_pruning_permanent(self, module: nn.Module) -> None:
        """Apply every pruning mask under `module` to its weights and remove the pruning re-parametrisation."""
        for submodule in module.modules():
            for key, hook in list(submodule._forward_pre_hooks.items()):
                if isinstance(hook, torch_prune.BasePruningMethod):
                    hook.remove(submodule)
                    del submodule._forward_pre_hooks[key]

    @staticmethod
    def _copy_param(new: nn.Module, old: nn.Module, name: str) -> None:
        target = getattr(new, name + "_orig") if hasattr(new, name + "_orig") else getattr(new, name)
        source = getattr(old, name)
        if isinstance(target, Tensor) and isinstance(source, Tensor):
            target.data = source.data.to(target.device)

    def apply_lottery_ticket_hypothesis(self) -> None:
        """Reset the weights pruning kept to their values at fit start (or, with ``resample_parameters``, to newly
        initialised values): step 4 of the lottery ticket hypothesis (Frankle & Carbin, 2019)."""
        assert self._original_layers is not None
        for layer in self._original_layers.values():
            original = layer["data"]
            if self._resample_parameters and callable(getattr(original, "reset_parameters", None)):
                original = deepcopy(original)  # the kept copy stays as it was
                original.reset_parameters()
            for index, name in layer["names"]:
                module, _ = self._parameters_to_prune[index]
                self._copy_param(module, original, name)

    def _apply_local_pruning(self, amount: Amount) -> None:
        for module, name in self._parameters_to_prune:
            self.pruning_fn(module, name=name, amount=amount)

    def _resolve_global_kwargs(self, amount: Amount) -> dict[str, Any]:
        self._global_kwargs["amount"] = amount
        accepted = set(inspect.signature(self.pruning_fn).parameters) - {"self"}
        return {key: value for key, value in self._global_kwargs.items() if key in accepted}

    def _apply_global_pruning(self, amount: Amount) -> None:
        torch_prune.global_unstructured(
            self._parameters_to_prune, pruning_method=self.pruning_fn, **self._resolve_global_kwargs(amount)
        )

    @staticmethod
    def _get_pruned_stats(module: nn.Module, name: str) -> tuple[int, int]:
        mask = getattr(module, f"{name}_mask", None)
        if mask is None:
            return 0, 1
        return int((mask == 0).sum().item()), mask.numel()

    def apply_pruning(self, amount: Amount) -> None:
        """Prune ``parameters_to_prune`` by `amount` (globally or per parameter)."""
        before = [self._get_pruned_stats(m, n) for m, n in self._parameters_to_prune] if self._verbose else []
        if self._use_global_unstructured:
            self._apply_global_pruning(amount)
        else:
            self._apply_local_pruning(amount)
        if self._verbose:
            after = [self._get_pruned_stats(m, n) for m, n in self._parameters_to_prune]
            self._log_sparsity_stats(before, after, amount=amount)

    @rank_zero_only
    def _log_sparsity_stats(self, prev: list[tuple[int, int]], curr: list[tuple[int, int]], amount: Amount = 0) -> None:
        total = sum(size for _, size in curr)
        zeros_before = sum(zeros for zeros, _ in prev)
        zeros_after = sum(zeros for zeros, _ in curr)
        log.info(
            f"Applied `{self._pruning_method_name}`. Pruned:"
            f" {zeros_before}/{total} ({zeros_before / total:.2%}) -> {zeros_after}/{total} ({zeros_after / total:.2%})"
        )
        if self._verbose != 2:
            return
        for (module, name), (old, old_size), (new, new_size) in zip(self._parameters_to_prune, prev, curr):
            log.info(
                f"Applied `{self._pruning_method_name}` to `{module!r}.{name}` with amount={amount}. Pruned:"
                f" {old} ({old / old_size:.2%}) -> {new} ({new / new_size:.2%})"
            )

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        chosen = self.sanitize_parameters_to_prune(pl_module, self._parameters_to_prune, self._parameter_names)
        self._parameters_to_prune = self.filter_parameters_to_prune(chosen)
        if self._use_lottery_ticket_hypothesis:
            # One copy of each module's initial weights, with the (index, name) pairs that prune it.
            self._original_layers = {}
            for index, (module, name) in enumerate(self._parameters_to_prune):
                layer = self._original_layers.setdefault(id(module), {"data": deepcopy(module), "names": []})
                layer["names"].append((index, name))

    def _run_pruning(self, current_epoch: int) -> None:
        prune = self._apply_pruning(current_epoch) if callable(self._apply_pruning) else self._apply_pruning
        amount = self.amount(current_epoch) if callable(self.amount) else self.amount
        if not prune or not amount:
            return
        self.apply_pruning(amount)
        lottery = self._use_lottery_ticket_hypothesis
        if lottery(current_epoch) if callable(lottery) else lottery:
            self.apply_lottery_ticket_hypothesis()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._prune_on_train_epoch_end:
            self._run_pruning(pl_module.current_epoch)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking and not self._prune_on_train_epoch_end:
            self._run_pruning(pl_module.current_epoch)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._make_pruning_permanent:
            self.make_pruning_permanent(pl_module)

    def _make_pruning_permanent_on_state_dict(self, pl_module: LightningModule) -> dict[str, Any]:
        """The module's state dict with each pruned ``<name>_orig``/``<name>_mask`` pair replaced by the masked
        ``<name>``, on the CPU (training goes on with the re-parametrisation)."""
        state_dict = pl_module.state_dict()
        for name in {key[: -len("_mask")] for key in state_dict if key.endswith("_mask")}:
            original = state_dict.pop(name + "_orig")
            mask = state_dict.pop(name + "_mask")
            state_dict[name] = mask.to(dtype=original.dtype) * original
        return {key: value.cpu() if isinstance(value, Tensor) else value for key, value in state_dict.items()}

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        if self._make_pruning_permanent:
            checkpoint["state_dict"] = self._make_pruning_permanent_on_state_dict(pl_module)

    @staticmethod
    def sanitize_parameters_to_prune(
        pl_module: LightningModule, parameters_to_prune: ParameterList = (), parameter_names: Sequence[str] = ()
    ) -> ParameterList:
        """Check ``parameters_to_prune`` against the model; when empty, every ``parameter_names`` parameter of every
        non-container module (all weights first, then all biases).

        Raises:
            MisconfigurationException: a module or parameter is not in the model, or the value is not a list or
                tuple of ``(module, name)`` pairs.
        """
        names = parameter_names or ModelPruning.PARAMETER_NAMES
        modules = [m for m in pl_module.modules() if not isinstance(m, _CONTAINERS)]
        if not parameters_to_prune:
            return [(m, p) for p in names for m in modules if isinstance(getattr(m, p, None), nn.Parameter)]
        if not _is_parameter_list(parameters_to_prune):
            raise MisconfigurationException(
                "The provided `parameters_to_prune` should either be list of tuple"
                " with 2 elements: (nn.Module, parameter_name_to_prune) or None"
            )
        missing_modules = [module for module, _ in parameters_to_prune if module not in modules]
        missing_parameters = [n for m, n in parameters_to_prune if m in modules and not hasattr(m, n)]
        if missing_modules or missing_parameters:
            raise MisconfigurationException(
                "Some provided `parameters_to_prune` don't exist in the model."
                f" Found missing modules: {missing_modules} and missing parameters: {missing_parameters}"
            )
        return parameters_to_prune

    @staticmethod
    def _is_pruning_method(method: Any) -> bool:
        return inspect.isclass(method) and issubclass(method, torch_prune.BasePruningMethod)


def _structured_kwargs(name: str, dim: int | None, norm: int | None) -> dict[str, Any]:
    """The extra arguments of a structured method (`dim`, and the norm `n` of `ln_structured`)."""
    if not name.endswith("_structured"):
        return {}
    if dim is None:
        raise MisconfigurationException("When requesting `structured` pruning, the `pruning_dim` should be provided.")
    if name != "ln_structured":
        return {"dim": dim}
    if norm is None:
        raise MisconfigurationException(
            "When requesting `ln_structured` pruning, the `pruning_norm` should be provided."
        )
    return {"n": norm, "dim": dim}


def _is_parameter_list(value: Any) -> bool:
    return (
        isinstance(value, (list, tuple))
        and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in value)
        and all(isinstance(m, nn.Module) and isinstance(n, str) for m, n in value)
    )
