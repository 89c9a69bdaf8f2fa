"""Automatic optimization: configure_optimizers forms and messages, when LR schedulers step (checked against
hand-written PyTorch loops), accumulation, clipping, LBFGS, overridable steps; oracle runs on pytorch-lightning."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader

import fulgor
import fulgor.rank
from fulgor.errors import MisconfigurationException
from fulgor.optimizer import LRSchedulerConfig, parse_configure_optimizers, validate_schedulers
from fulgor.precision import MixedPrecision
from helpers.boring import XYDataset

QUIET = {
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
}
N_SAMPLES, BATCH = 20, 4  # 5 training batches per epoch


def model_class(
    pl: ModuleType, configure: Callable[[Any], Any], val_loss: Callable[[int], float] | None = None
) -> type:
    """Linear(4, 2) (seed 0) on 20 seeded samples, batch 4; records per batch the LR after the batch, the
    `on_train_batch_end` outputs and the raw training losses. `val_loss(epoch)` adds a validation logging it."""

    class Model(pl.LightningModule):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.layer = torch.nn.Linear(4, 2)
            self.lrs: list[float] = []
            self.outputs: list[Any] = []
            self.raw_losses: list[float] = []

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            loss = F.mse_loss(self.layer(x), y)
            self.raw_losses.append(loss.item())
            return loss

        def configure_optimizers(self) -> Any:
            return configure(self)

        def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
            self.outputs.append(outputs)
            self.lrs.append(self.trainer.optimizers[0].param_groups[0]["lr"])

        def train_dataloader(self) -> Any:
            return DataLoader(XYDataset(N_SAMPLES, seed=1), batch_size=BATCH)

    if val_loss is not None:

        def validation_step(self: Any, batch: Any, batch_idx: int) -> None:
            self.log("val_loss", val_loss(self.current_epoch))

        def val_dataloader(self: Any) -> Any:
            return DataLoader(XYDataset(8, seed=2), batch_size=BATCH)

        Model.validation_step = validation_step
        Model.val_dataloader = val_dataloader
    return Model


def fit(pl: ModuleType, model: Any, root: Path, **flags: Any) -> Any:
    flags = {"max_epochs": 2, "num_sanity_val_steps": 0, "default_root_dir": str(root), **QUIET, **flags}
    trainer = pl.Trainer(**flags)
    trainer.fit(model)
    return trainer


def torch_loop(
    epochs: int, make: Callable[[torch.nn.Module], tuple[Any, Any]], after_batch: Callable[..., None], k: int = 1
) -> tuple[torch.nn.Module, list[float]]:
    """The plain PyTorch loop the Trainer must reproduce: SGD on mse, accumulation `k`, user scheduler logic."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 2)
    optimizer, scheduler = make(layer)
    batches = list(DataLoader(XYDataset(N_SAMPLES, seed=1), batch_size=BATCH))
    lrs = []
    for epoch in range(epochs):
        for i, (x, y) in enumerate(batches):
            if i % k == 0:
                optimizer.zero_grad()
            (F.mse_loss(layer(x), y) / k).backward()
            stepped = (i + 1) % k == 0 or i + 1 == len(batches)
            if stepped:
                optimizer.step()
            after_batch(scheduler, epoch, i, stepped, i + 1 == len(batches))
            lrs.append(optimizer.param_groups[0]["lr"])
    return layer, lrs


def sgd_step_lr(step_size: int = 1, gamma: float = 0.5) -> Callable[[Any], tuple[Any, Any]]:
    def make(module: Any) -> tuple[Any, Any]:
        optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
        return optimizer, torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)

    return make


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q), name


# ---------------------------------------------------------------------------------------------------- schedulers
def test_epoch_step_lr_steps_on_the_last_batch_as_a_torch_loop(tmp_path: Path) -> None:
    def configure(m: Any) -> Any:
        optimizer, scheduler = sgd_step_lr()(m)
        return [optimizer], [scheduler]

    model = model_class(fulgor, configure)()
    trainer = fit(fulgor, model, tmp_path, max_epochs=3)

    def after(scheduler: Any, epoch: int, i: int, stepped: bool, last: bool) -> None:
        if last:
            scheduler.step()

    layer, lrs = torch_loop(3, sgd_step_lr(), after)
    assert model.lrs == lrs
    assert model.lrs == [0.1] * 4 + [0.05] + [0.05] * 4 + [0.025] + [0.025] * 4 + [0.0125]
    assert trainer.global_step == 15
    assert_same_weights(model.layer, layer)


def test_step_interval_with_frequency_2_counts_batches_within_the_epoch(tmp_path: Path) -> None:
    make = sgd_step_lr(gamma=0.9)

    def configure(m: Any) -> Any:
        optimizer, scheduler = make(m)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 2}}

    model = model_class(fulgor, configure)()
    fit(fulgor, model, tmp_path)

    def after(scheduler: Any, epoch: int, i: int, stepped: bool, last: bool) -> None:
        if (i + 1) % 2 == 0:  # batch index in the epoch, not global_step: batches 1 and 3 of each epoch
            scheduler.step()

    layer, lrs = torch_loop(2, make, after)
    assert model.lrs == pytest.approx(lrs, abs=0, rel=0)
    assert model.lrs == pytest.approx([0.1, 0.09, 0.09, 0.081, 0.081, 0.081, 0.0729, 0.0729, 0.06561, 0.06561])
    assert_same_weights(model.layer, layer)


def test_accumulation_2_steps_the_step_scheduler_only_on_optimizer_steps(tmp_path: Path) -> None:
    make = sgd_step_lr(gamma=0.9)

    def configure(m: Any) -> Any:
        optimizer, scheduler = make(m)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    model = model_class(fulgor, configure)()
    trainer = fit(fulgor, model, tmp_path, max_epochs=1, accumulate_grad_batches=2)

    def after(scheduler: Any, epoch: int, i: int, stepped: bool, last: bool) -> None:
        if stepped:
            scheduler.step()

    layer, lrs = torch_loop(1, make, after, k=2)
    # 5 batches, k=2: optimizer steps after batches 1, 3 and 4 (the incomplete last window still steps).
    assert trainer.global_step == 3
    assert model.lrs == lrs == pytest.approx([0.1, 0.09, 0.09, 0.081, 0.0729])
    assert_same_weights(model.layer, layer)
    # on_train_batch_end receives the loss divided by accumulate_grad_batches, also for the last, incomplete window.
    assert [o["loss"].item() for o in model.outputs] == pytest.approx([r / 2 for r in model.raw_losses])


def test_accumulation_suppresses_step_logging_while_accumulating(tmp_path: Path) -> None:
    from fulgor.loggers import CSVLogger

    class Logged(model_class(fulgor, lambda m: torch.optim.SGD(m.parameters(), lr=0.1))):  # type: ignore[misc]
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            loss = super().training_step(batch, batch_idx)
            self.log("loss", loss)
            return loss

    trainer = fit(
        fulgor,
        Logged(),
        tmp_path,
        max_epochs=1,
        accumulate_grad_batches=2,
        log_every_n_steps=1,
        logger=CSVLogger(tmp_path),
    )
    lines = (Path(trainer.log_dir) / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,loss,step") or lines[0].split(",")[:3] == ["epoch", "loss", "step"]
    assert [line.split(",")[-1] for line in lines[1:]] == ["0", "1", "2"]  # one row per optimizer step


@pytest.mark.parametrize("val_losses", [(1.0, 1.0, 1.0, 1.0)])
def test_reduce_on_plateau_reads_the_validation_metric_at_epoch_end(tmp_path: Path, val_losses: tuple) -> None:
    def configure(m: Any) -> Any:
        optimizer = torch.optim.SGD(m.parameters(), lr=0.1)
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=0)
        return {"optimizer": optimizer, "lr_scheduler": plateau, "monitor": "val_loss"}

    model = model_class(fulgor, configure, val_loss=lambda epoch: val_losses[epoch])()
    fit(fulgor, model, tmp_path, max_epochs=4)
    # Constant val_loss: epoch 0 sets the best; every later epoch is "bad" (patience 0) and halves the LR, which
    # shows from the next epoch's batches on.
    assert model.lrs[::5] == [0.1, 0.1, 0.05, 0.025]


def test_reduce_on_plateau_step_interval_strict_raises_when_the_metric_is_missing(tmp_path: Path) -> None:
    def configure(m: Any) -> Any:
        optimizer = torch.optim.SGD(m.parameters(), lr=0.1)
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": plateau, "monitor": "missing", "interval": "step"},
        }

    with pytest.raises(MisconfigurationException) as error:
        fit(fulgor, model_class(fulgor, configure)(), tmp_path)
    assert str(error.value) == (
        "ReduceLROnPlateau conditioned on metric missing which is not available. Available metrics are: []."
        " Condition can be set using `monitor` key in lr scheduler dict"
    )


def test_reduce_on_plateau_not_strict_warns_and_skips(tmp_path: Path) -> None:
    def configure(m: Any) -> Any:
        optimizer = torch.optim.SGD(m.parameters(), lr=0.1)
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=0)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": plateau, "monitor": "missing", "strict": False}}

    model = model_class(fulgor, configure)()
    with pytest.warns(RuntimeWarning) as record:
        fit(fulgor, model, tmp_path)
    messages = [str(w.message) for w in record if "ReduceLROnPlateau" in str(w.message)]
    assert (
        messages
        == [
            "ReduceLROnPlateau conditioned on metric missing which is not available but strict is set to `False`."
            " Skipping learning rate update."
        ]
        * 2
    )
    assert set(model.lrs) == {0.1}


class CustomScheduler:
    """Not a torch scheduler: halves the LR on `step()`."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer

    def step(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] /= 2

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def custom_configure(m: Any) -> Any:
    optimizer = torch.optim.SGD(m.parameters(), lr=0.1)
    return [optimizer], [CustomScheduler(optimizer)]


def test_custom_scheduler_needs_lr_scheduler_step(tmp_path: Path) -> None:
    with pytest.raises(MisconfigurationException) as error:
        fit(fulgor, model_class(fulgor, custom_configure)(), tmp_path)
    assert str(error.value) == (
        "The provided lr scheduler `CustomScheduler` doesn't follow PyTorch's LRScheduler API. You should override"
        " the `LightningModule.lr_scheduler_step` hook with your own logic if you are using a custom LR scheduler."
    )

    class Stepped(model_class(fulgor, custom_configure)):  # type: ignore[misc]
        calls: list[Any] = []

        def lr_scheduler_step(self, scheduler: Any, metric: Any) -> None:
            self.calls.append((type(scheduler).__name__, metric))
            scheduler.step()

    model = Stepped()
    fit(fulgor, model, tmp_path)
    assert model.calls == [("CustomScheduler", None)] * 2
    assert model.lrs == [0.1] * 4 + [0.05] * 5 + [0.025]


# ------------------------------------------------------------------------------------------ forms and messages
def _sgd() -> torch.optim.SGD:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)


UNKNOWN = (
    "Unknown configuration for model optimizers. Output from `model.configure_optimizers()` should be one of:\n"
    " * `Optimizer`\n * [`Optimizer`]\n * ([`Optimizer`], [`LRScheduler`])\n"
    ' * {"optimizer": `Optimizer`, (optional) "lr_scheduler": `LRScheduler`}\n'
)


def test_every_configure_optimizers_form() -> None:
    a, b = _sgd(), _sgd()
    sa = torch.optim.lr_scheduler.StepLR(a, 1)
    assert parse_configure_optimizers(a) == ([a], [], None)
    assert parse_configure_optimizers([a, b]) == ([a, b], [], None)
    assert parse_configure_optimizers((a,)) == ([a], [], None)
    assert parse_configure_optimizers(([a], [sa])) == ([a], [LRSchedulerConfig(sa)], None)
    assert parse_configure_optimizers(([a], sa)) == ([a], [LRSchedulerConfig(sa)], None)
    assert parse_configure_optimizers({"optimizer": a}) == ([a], [], None)
    config = {"scheduler": sa, "interval": "step", "frequency": 3, "name": "x"}
    assert parse_configure_optimizers({"optimizer": a, "lr_scheduler": config, "monitor": "m"}) == (
        [a],
        [LRSchedulerConfig(sa, name="x", interval="step", frequency=3)],
        "m",
    )
    opts, configs, monitor = parse_configure_optimizers([{"optimizer": a, "lr_scheduler": sa}, {"optimizer": b}])
    assert (opts, configs, monitor) == ([a, b], [LRSchedulerConfig(sa)], None)
    with pytest.warns(UserWarning, match="returned `None`, this fit will run with no optimizer"):
        (mock,), configs, _ = parse_configure_optimizers(None)
    assert repr(mock) == "No Optimizer"
    assert mock.step(lambda: 3) == 3
    assert mock.state_dict() == {}
    with pytest.raises(KeyError, match=r"^'optimizer': the dict `configure_optimizers` returned has no"):
        parse_configure_optimizers({"lr_scheduler": sa})  # Lightning's type (KeyError), its text first
    for bad in ("adam", [a, "x"], (a, [sa]), []):
        if bad == []:
            continue  # Lightning accepts an empty list here and fails later
        with pytest.raises(MisconfigurationException) as error:
            parse_configure_optimizers(bad)
        assert str(error.value) == UNKNOWN


def test_scheduler_dict_messages() -> None:
    a = _sgd()
    sa = torch.optim.lr_scheduler.StepLR(a, 1)
    with pytest.warns(RuntimeWarning) as record:
        parse_configure_optimizers({"optimizer": a, "lr_scheduler": {"scheduler": sa, "foo": 1}, "bar": 2})
    assert [str(w.message) for w in record] == [
        "Found unsupported keys in the optimizer configuration: {'bar'}",
        "Found unsupported keys in the lr scheduler dict: {'foo'}. HINT: remove them from the output of"
        " `configure_optimizers`.",
    ]
    with pytest.raises(MisconfigurationException, match='must have the key "scheduler" with its item being an lr'):
        parse_configure_optimizers({"optimizer": a, "lr_scheduler": {"interval": "step"}})
    with pytest.raises(MisconfigurationException) as error:
        parse_configure_optimizers({"optimizer": a, "lr_scheduler": {"scheduler": sa, "interval": "batch"}})
    assert str(error.value) == 'The "interval" key in lr scheduler dict must be "step" or "epoch" but is "batch"'


def _module(automatic: bool = True) -> Any:
    return SimpleNamespace(automatic_optimization=automatic)


def test_plateau_monitor_one_cycle_and_attachment_messages() -> None:
    a = _sgd()
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(a)
    for output, message in [
        (([a], [plateau]), "`configure_optimizers` must include a monitor when a `ReduceLROnPlateau` scheduler is"),
        ({"optimizer": a, "lr_scheduler": {"scheduler": plateau}}, "The lr scheduler dict must include a monitor"),
        # As in Lightning: the outer "monitor" does not reach a scheduler given as a dict, nor any in a list of dicts.
        ({"optimizer": a, "lr_scheduler": {"scheduler": plateau}, "monitor": "m"}, "The lr scheduler dict must"),
        ([{"optimizer": a, "lr_scheduler": plateau, "monitor": "m"}], "The lr scheduler dict must include"),
    ]:
        opts, configs, _ = parse_configure_optimizers(output)
        with pytest.raises(MisconfigurationException, match=message.replace("(", r"\(").replace("`", "`")):
            validate_schedulers(opts, configs, _module())
    opts, configs, _ = parse_configure_optimizers({"optimizer": a, "lr_scheduler": plateau, "monitor": "m"})
    validate_schedulers(opts, configs, _module())
    assert (configs[0].reduce_on_plateau, configs[0].monitor, configs[0].strict) == (True, "m", True)

    one_cycle = torch.optim.lr_scheduler.OneCycleLR(a, max_lr=1.0, total_steps=10)
    opts, configs, _ = parse_configure_optimizers(([a], [one_cycle]))
    with pytest.warns(RuntimeWarning) as record:
        validate_schedulers(opts, configs, _module())
    assert [str(w.message) for w in record] == [
        "A `OneCycleLR` scheduler is using 'interval': 'epoch'. Are you sure you didn't mean 'interval': 'step'?"
    ]
    other = torch.optim.lr_scheduler.StepLR(_sgd(), 1)
    with pytest.raises(MisconfigurationException, match="attached with an optimizer that wasn't returned"):
        validate_schedulers([a], [LRSchedulerConfig(other)], _module())
    with pytest.raises(TypeError) as error:
        validate_schedulers([a], [LRSchedulerConfig(SimpleNamespace(optimizer=a))], _module())
    assert str(error.value) == (
        "The provided lr scheduler `SimpleNamespace` is invalid. It should have `state_dict` and `load_state_dict`"
        " methods defined."
    )


def test_manual_optimization_ignores_plateau_keys_with_a_warning() -> None:
    a = _sgd()
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(a)
    opts, configs, _ = parse_configure_optimizers(
        {"optimizer": a, "lr_scheduler": {"scheduler": plateau, "monitor": "m", "strict": False}}
    )
    with pytest.warns(RuntimeWarning) as record:
        validate_schedulers(opts, configs, _module(automatic=False))
    assert [str(w.message) for w in record] == [
        "The lr scheduler dict contains the key(s) ['monitor', 'strict'], but the keys will be ignored. You need to"
        " call `lr_scheduler.step()` manually in manual optimization."
    ]
    assert (configs[0].reduce_on_plateau, configs[0].monitor, configs[0].strict) == (False, None, True)
    # A custom scheduler needs no lr_scheduler_step in manual optimization: the user steps it.
    validate_schedulers([a], [LRSchedulerConfig(CustomScheduler(a))], _module(automatic=False))


# ---------------------------------------------------------------------------------------------------- steps
def test_lbfgs_converges_on_a_quadratic_through_the_closure(tmp_path: Path) -> None:
    class Quadratic(fulgor.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.x = torch.nn.Parameter(torch.tensor([3.0, -1.0]))
            self.evaluations = 0

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            self.evaluations += 1
            return ((self.x - torch.tensor([2.0, 0.5])) ** 2).sum()

        def configure_optimizers(self) -> Any:
            return torch.optim.LBFGS(self.parameters(), lr=1.0, max_iter=20)

        def train_dataloader(self) -> Any:
            return DataLoader(torch.zeros(1, 1), batch_size=1)

    model = Quadratic()
    trainer = fit(fulgor, model, tmp_path, max_epochs=1)
    assert model.x.tolist() == pytest.approx([2.0, 0.5], abs=1e-5)
    assert model.evaluations > 1  # LBFGS re-evaluated training_step through the closure
    assert trainer.global_step == 1


def test_optimizer_step_zero_grad_and_backward_overrides(tmp_path: Path) -> None:
    calls: list[str] = []

    class Overridden(model_class(fulgor, lambda m: torch.optim.SGD(m.parameters(), lr=0.1))):  # type: ignore[misc]
        def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
            for group in optimizer.param_groups:  # linear warm-up over the first 4 steps
                group["lr"] = 0.1 * min(1.0, (self.trainer.global_step + 1) / 4)
            calls.append(f"step {type(optimizer).__name__}")
            optimizer.step(closure=optimizer_closure)

        def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: Any) -> None:
            calls.append("zero_grad")
            optimizer.zero_grad(set_to_none=False)

        def backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
            calls.append("backward")
            loss.backward()

    model = Overridden()
    fit(fulgor, model, tmp_path, max_epochs=1, accumulate_grad_batches=2)
    # The warm-up LR is set in optimizer_step, so batch 0 (accumulating, no optimizer_step) still shows 0.1.
    assert model.lrs == [0.1, 0.1 * 1 / 4, 0.1 * 1 / 4, 0.1 * 2 / 4, 0.1 * 3 / 4]
    # zero_grad at batch_idx % 2 == 0 (inside the closure, before backward); optimizer_step at 1, 3 and 4 (last).
    assert calls == [
        "zero_grad", "backward",
        "step LightningSGD", "backward",
        "zero_grad", "backward",
        "step LightningSGD", "backward",
        "step LightningSGD", "zero_grad", "backward",
    ]  # fmt: skip


def test_training_step_outputs_dict_extra_keys_none_and_bad_types(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(fulgor.rank, "_warned", set())  # the warning is emitted once per process

    class Outputs(model_class(fulgor, lambda m: torch.optim.SGD(m.parameters(), lr=0.1))):  # type: ignore[misc]
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            loss = super().training_step(batch, batch_idx)
            if batch_idx == 2:
                return None
            return {"loss": loss, "extra": batch_idx}

    model = Outputs()
    with pytest.warns(UserWarning, match="returned `None`") as record:
        trainer = fit(fulgor, model, tmp_path, max_epochs=1)
    assert [str(w.message) for w in record if "returned `None`" in str(w.message)] == [
        "`training_step` returned `None`. If this was on purpose, ignore this warning..."
    ]
    assert [sorted(o) for o in model.outputs] == [["extra", "loss"]] * 2 + [[]] + [["extra", "loss"]] * 2
    assert [o.get("extra") for o in model.outputs] == [0, 1, None, 3, 4]
    assert trainer.global_step == 5

    for returned, message in [
        (
            {"x": 1},
            "In automatic_optimization, when `training_step` returns a dict, the 'loss' key needs to be present",
        ),
        (1.5, "In automatic optimization, `training_step` must return a Tensor, a dict, or None (where the step will"),
    ]:

        class Bad(model_class(fulgor, lambda m: torch.optim.SGD(m.parameters(), lr=0.1))):  # type: ignore[misc]
            def training_step(self, batch: Any, batch_idx: int, out: Any = returned) -> Any:
                return out

        with pytest.raises(MisconfigurationException) as error:
            fit(fulgor, Bad(), tmp_path)
        assert str(error.value).startswith(message)


# ---------------------------------------------------------------------------------------------------- clipping
class SeenSGD(torch.optim.SGD):
    """Records the gradients the update uses (after the closure: clipping included)."""

    seen: list[list[torch.Tensor]]

    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        with torch.enable_grad():
            loss = closure() if closure is not None else None
        self.seen.append([p.grad.clone() for g in self.param_groups for p in g["params"] if p.grad is not None])
        super().step()
        return loss


def clipping_model(pl: ModuleType) -> type:
    def configure(m: Any) -> Any:
        optimizer = SeenSGD(m.parameters(), lr=0.1)
        optimizer.seen = []
        return optimizer

    class Clipped(model_class(pl, configure)):  # type: ignore[misc]
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            return super().training_step(batch, batch_idx) * 100  # large gradients

        def on_before_optimizer_step(self, optimizer: Any) -> None:
            self.pre_clip = [*getattr(self, "pre_clip", []), total_norm(self.parameters())]

    return Clipped


def total_norm(params: Any) -> float:
    norms = [torch.linalg.vector_norm(p.grad) for p in params if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0


def test_clip_by_norm_and_by_value_after_on_before_optimizer_step(tmp_path: Path) -> None:
    model = clipping_model(fulgor)()
    fit(fulgor, model, tmp_path, max_epochs=1, gradient_clip_val=1.0)
    optimizer = model.trainer.optimizers[0]
    seen_norms = [float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))) for grads in optimizer.seen]
    assert min(model.pre_clip) > 10  # on_before_optimizer_step sees the gradients before clipping
    assert seen_norms == pytest.approx([1.0] * 5, abs=1e-5)

    model = clipping_model(fulgor)()
    fit(fulgor, model, tmp_path, max_epochs=1, gradient_clip_val=0.25, gradient_clip_algorithm="value")
    for grads in model.trainer.optimizers[0].seen:
        assert max(float(g.abs().max()) for g in grads) == pytest.approx(0.25)


def test_configure_gradient_clipping_override_and_clip_gradients_errors(tmp_path: Path) -> None:
    received: list[Any] = []

    class Custom(clipping_model(fulgor)):  # type: ignore[misc]
        # Lightning passes the two values by keyword, so an override must use these names.
        def configure_gradient_clipping(
            self, optimizer: Any, gradient_clip_val: Any = None, gradient_clip_algorithm: Any = None
        ) -> None:
            received.append((gradient_clip_val, gradient_clip_algorithm))
            self.clip_gradients(optimizer, gradient_clip_val=0.01, gradient_clip_algorithm="value")

    model = Custom()
    fit(fulgor, model, tmp_path, max_epochs=1)
    assert received == [(None, None)] * 5  # the Trainer's raw flags
    assert max(float(g.abs().max()) for g in model.trainer.optimizers[0].seen[-1]) == pytest.approx(0.01)

    with pytest.raises(MisconfigurationException) as error:
        fit(fulgor, Custom(), tmp_path, max_epochs=1, gradient_clip_val=0.5)
    assert str(error.value) == (
        "You have set `Trainer(gradient_clip_val=0.5)` and have passed `clip_gradients(gradient_clip_val=0.01)`."
        " Please use only one of them."
    )
    with pytest.raises(MisconfigurationException) as error:
        fit(fulgor, Custom(), tmp_path, max_epochs=1, gradient_clip_algorithm="norm")
    assert str(error.value) == (
        "You have set `Trainer(gradient_clip_algorithm='norm')` and have passed"
        " `clip_gradients(gradient_clip_algorithm='value') Please use only one of them."
    )

    module = clipping_model(fulgor)()
    module.trainer = SimpleNamespace(  # type: ignore[assignment]
        gradient_clip_val=None, gradient_clip_algorithm=None, precision_plugin=MixedPrecision("bf16-mixed", "cpu")
    )
    with pytest.raises(TypeError, match=r"`gradient_clip_val` should be an int or a float. Got 1\."):
        module.clip_gradients(_sgd(), "1", None)  # type: ignore[arg-type]
    with pytest.raises(MisconfigurationException) as error:
        module.clip_gradients(_sgd(), 1.0, "max")
    assert str(error.value) == "`gradient_clip_algorithm` max is invalid. Allowed algorithms: ['value', 'norm']."


def test_16_mixed_unscales_before_on_before_optimizer_step_and_clipping(tmp_path: Path) -> None:
    """fp16 AMP on CPU (GradScaler("cpu")): the hook and the clipping see unscaled gradients."""
    reference = clipping_model(fulgor)()
    fit(fulgor, reference, tmp_path, max_epochs=1, gradient_clip_val=1.0)

    model = clipping_model(fulgor)()
    trainer = fulgor.Trainer(max_epochs=1, default_root_dir=str(tmp_path), gradient_clip_val=1.0, **QUIET)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.precision_plugin = MixedPrecision("16-mixed", "cpu")
        trainer.precision_plugin.scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
    trainer.fit(model)
    assert model.pre_clip[0] == pytest.approx(reference.pre_clip[0], rel=1e-2)  # not 4 times larger
    for grads in model.trainer.optimizers[0].seen:
        assert float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))) == pytest.approx(1.0, abs=1e-4)
    assert trainer.global_step == 5


# ---------------------------------------------------------------------------------------------------- oracle
SCENARIOS: dict[str, tuple[Callable[[Any], Any], dict[str, Any], Callable[[int], float] | None]] = {
    "step_lr_epoch": (lambda m: (lambda o, s: ([o], [s]))(*sgd_step_lr()(m)), {"max_epochs": 3}, None),
    "step_interval_freq2_accumulate2": (
        lambda m: (
            lambda o: {
                "optimizer": o,
                "lr_scheduler": {
                    "scheduler": torch.optim.lr_scheduler.StepLR(o, 1, 0.9),
                    "interval": "step",
                    "frequency": 2,
                },
            }
        )(torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)),
        {"accumulate_grad_batches": 2, "max_epochs": 3},
        None,
    ),
    "plateau_val": (
        lambda m: (
            lambda o: {
                "optimizer": o,
                "lr_scheduler": torch.optim.lr_scheduler.ReduceLROnPlateau(o, factor=0.5, patience=0),
                "monitor": "val_loss",
            }
        )(torch.optim.Adam(m.parameters(), lr=0.1)),
        {"max_epochs": 4},
        lambda epoch: [1.0, 0.5, 0.6, 0.7][epoch],
    ),
    "plateau_step_interval": (
        lambda m: (
            lambda o: {
                "optimizer": o,
                "lr_scheduler": {
                    "scheduler": torch.optim.lr_scheduler.ReduceLROnPlateau(o, factor=0.5, patience=0),
                    "monitor": "val_loss",
                    "strict": False,  # batch 0 steps before the first validation (batch 1)
                    "interval": "step",
                },
            }
        )(torch.optim.SGD(m.parameters(), lr=0.1)),
        {"max_epochs": 2, "val_check_interval": 2},
        lambda epoch: 1.0,
    ),
    "clip_norm_accumulate3": (
        lambda m: torch.optim.SGD(m.parameters(), lr=0.5),
        {"gradient_clip_val": 0.1, "accumulate_grad_batches": 3},
        None,
    ),
}


@pytest.mark.oracle
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_same_learning_rates_steps_and_weights_as_lightning(name: str, tmp_path: Path) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    configure, flags, val_loss = SCENARIOS[name]
    results = []
    for package in (fulgor, pl):
        torch.manual_seed(0)
        model = model_class(package, configure, val_loss)()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer = fit(package, model, tmp_path / package.__name__, **flags)
        results.append((model, trainer))
    (ours, our_trainer), (theirs, their_trainer) = results
    assert ours.lrs == theirs.lrs
    assert our_trainer.global_step == their_trainer.global_step
    assert [o["loss"].item() for o in ours.outputs] == [o["loss"].item() for o in theirs.outputs]
    assert_same_weights(ours.layer, theirs.layer)


@pytest.mark.oracle
def test_training_step_none_and_clipping_match_lightning(tmp_path: Path) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    results = []
    for package in (fulgor, pl):

        class Skipping(clipping_model(package)):  # type: ignore[misc]
            def training_step(self, batch: Any, batch_idx: int) -> Any:
                loss = super().training_step(batch, batch_idx)
                return None if batch_idx == 1 else loss

        model = Skipping()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer = fit(package, model, tmp_path / package.__name__, gradient_clip_val=0.5)
        results.append((model, trainer))
    (ours, our_trainer), (theirs, their_trainer) = results
    assert our_trainer.global_step == their_trainer.global_step
    assert ours.pre_clip == pytest.approx(theirs.pre_clip)
    assert ours.outputs[1] == theirs.outputs[1] == {}
    assert_same_weights(ours.layer, theirs.layer)


# ---------------------------------------------------------------------------------------------------- direct steps
class _SubclassedSGD(torch.optim.SGD):
    """A user's optimizer class: its `step` may use the closure differently, so the closure contract stays."""


def _adam_with_pre_hook(events: list[str]) -> Callable[[Any], Any]:
    def make(module: Any) -> Any:
        optimizer = torch.optim.Adam(module.parameters(), lr=0.01)
        optimizer.register_step_pre_hook(lambda *args: events.append("pre_hook"))
        return optimizer

    return make


@pytest.mark.parametrize(
    ("make", "direct"),
    [
        (lambda m: torch.optim.SGD(m.parameters(), lr=0.1), True),
        (lambda m: torch.optim.AdamW(m.parameters(), lr=0.01), True),
        (lambda m: torch.optim.LBFGS(m.parameters(), lr=0.1), False),
        (lambda m: _SubclassedSGD(m.parameters(), lr=0.1), False),
        (_adam_with_pre_hook([]), False),
    ],
    ids=["sgd", "adamw", "lbfgs", "subclass", "pre_hook"],
)
def test_only_torchs_one_call_optimizers_step_after_the_closure(tmp_path: Path, make: Any, direct: bool) -> None:
    """`closure(); optimizer.step()` replaces `optimizer.step(closure)` only for torch's own optimizers that call the
    closure once, first (not LBFGS, not a subclass, not with step pre-hooks), and the weights are a torch loop's."""
    model = model_class(fulgor, make)()
    trainer = fit(fulgor, model, tmp_path, max_epochs=1)
    run = trainer._run
    assert run is not None
    assert run.plain.direct_step is direct
    if direct:
        layer, _ = torch_loop(1, lambda m: (make(m), None), lambda *a: None)
        assert_same_weights(model.layer, layer)


def test_a_step_pre_hook_still_runs_before_training_step(tmp_path: Path) -> None:
    """With a step pre-hook the closure contract stays, so the hook runs before `training_step`, as in Lightning."""
    events: list[str] = []

    class Recording(model_class(fulgor, _adam_with_pre_hook(events))):  # type: ignore[misc]
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            events.append("training_step")
            return super().training_step(batch, batch_idx)

    fit(fulgor, Recording(), tmp_path, max_epochs=1, limit_train_batches=2)
    assert events == ["pre_hook", "training_step"] * 2


def test_a_profiled_run_keeps_the_closure_inside_the_optimizer_step(tmp_path: Path) -> None:
    model = model_class(fulgor, lambda m: torch.optim.SGD(m.parameters(), lr=0.1))()
    trainer = fit(fulgor, model, tmp_path, max_epochs=1, profiler="simple")
    assert trainer._run is not None
    assert trainer._run.plain.direct_step is False
