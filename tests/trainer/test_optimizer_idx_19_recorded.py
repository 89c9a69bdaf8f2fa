"""Lightning 1.x automatic optimization with several optimizers (`training_step(batch, batch_idx, optimizer_idx)`),
differential against pytorch-lightning 1.9.5: optimizer_idx_1_9_5.json holds what 1.9.5 itself printed for the
module below (pip-installed beside torch 2.x): the hook trace (which optimizer, which parameters trainable at each
`training_step`, what `on_train_batch_end` received, `global_step` after each batch), the final weights and LRs."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import fulgor as pl
from fulgor.lightning_errors import LightningDeprecationWarning

RECORDED: dict[str, Any] = json.loads((Path(__file__).parent / "optimizer_idx_1_9_5.json").read_text())


class GAN(pl.LightningModule):
    """Two optimizers, each over its own sub-network; 1.x hook signatures with `optimizer_idx`."""

    def __init__(self, case: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.g = torch.nn.Linear(4, 4)
        self.d = torch.nn.Linear(4, 1)
        self.case = case
        self.trace: list[Any] = []

    def training_step(self, batch: Any, batch_idx: int, optimizer_idx: int) -> Any:
        (x,) = batch
        self.trace.append(["training_step", batch_idx, optimizer_idx, [p.requires_grad for p in self.parameters()]])
        if optimizer_idx == 0:
            loss = -self.d(self.g(x)).mean()
        else:
            loss = self.d(x).mean() - self.d(self.g(x).detach()).mean()
        if self.case == "none1" and optimizer_idx == 1 and batch_idx % 2:
            return None  # this optimizer skips the batch
        return {"loss": loss, "tag": optimizer_idx}

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        rows = [sorted((k, round(float(v), 5) if k == "loss" else v) for k, v in o.items()) for o in outputs]
        self.trace.append(
            ["batch_end", batch_idx, [[list(kv) for kv in row] for row in rows], self.trainer.global_step]
        )

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_idx: int) -> None:  # type: ignore[override]
        self.trace.append(["zero_grad", batch_idx, optimizer_idx])
        optimizer.zero_grad()

    def optimizer_step(  # type: ignore[override]
        self,
        epoch: int,
        batch_idx: int,
        optimizer: Any,
        optimizer_idx: int,
        optimizer_closure: Any,
        on_tpu: bool = False,
        using_native_amp: bool = False,
        using_lbfgs: bool = False,
    ) -> None:
        self.trace.append(["optimizer_step", epoch, batch_idx, optimizer_idx])
        optimizer.step(closure=optimizer_closure)

    def configure_optimizers(self) -> Any:
        og = torch.optim.SGD(self.g.parameters(), lr=0.1)
        od = torch.optim.SGD(self.d.parameters(), lr=0.05)
        if self.case == "freq":
            sg = torch.optim.lr_scheduler.StepLR(og, 1, gamma=0.5)
            sd = torch.optim.lr_scheduler.StepLR(od, 1, gamma=0.9)
            return [
                {"optimizer": og, "frequency": 2, "lr_scheduler": {"scheduler": sg, "interval": "step"}},
                {"optimizer": od, "frequency": 1, "lr_scheduler": sd},
            ]
        if self.case == "sched":
            steps = [
                torch.optim.lr_scheduler.StepLR(og, 1, gamma=0.5),
                torch.optim.lr_scheduler.StepLR(od, 1, gamma=0.9),
            ]
            return [og, od], steps
        return [og, od]


def run_case(case: str) -> dict[str, Any]:
    torch.manual_seed(1)
    data = DataLoader(TensorDataset(torch.randn(24, 4)), batch_size=4)
    flags: dict[str, Any] = {
        "max_epochs": 2,
        "limit_train_batches": 5,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
    }
    if case == "accum":
        flags["accumulate_grad_batches"] = 2
    if case == "maxsteps":
        flags["max_steps"] = 5
    model = GAN(case)
    trainer = pl.Trainer(**flags)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, data)
    return {
        "trace": model.trace,
        "global_step": trainer.global_step,
        "epoch": trainer.current_epoch,
        "params": [round(float(v), 6) for v in torch.cat([p.detach().flatten() for p in model.parameters()])],
        "lrs": [[round(g["lr"], 8) for g in o.param_groups] for o in trainer.optimizers],
    }


@pytest.mark.parametrize("case", sorted(RECORDED))
def test_runs_as_1_9_5_ran_it(case: str) -> None:
    got = run_case(case)
    expected = RECORDED[case]
    assert got["trace"] == expected["trace"]
    assert (got["global_step"], got["epoch"]) == (expected["global_step"], expected["epoch"])
    assert got["lrs"] == expected["lrs"]
    assert got["params"] == pytest.approx(expected["params"], abs=2e-6)


def test_the_cases_differ_from_each_other() -> None:  # the recording would catch a loop that ignores the options
    assert RECORDED["freq"]["global_step"] == 10
    assert RECORDED["plain"]["global_step"] == 20
    assert RECORDED["freq"]["lrs"] != RECORDED["plain"]["lrs"]
    assert RECORDED["accum"]["global_step"] == 12


def test_one_line_note_that_2_x_removed_it() -> None:
    model = GAN("plain")
    trainer = pl.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    data = DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=4)
    with pytest.warns(LightningDeprecationWarning) as record:
        trainer.fit(model, data)
    notes = [str(w.message) for w in record if "optimizer_idx" in str(w.message)]
    assert len(notes) == 1
    assert "\n" not in notes[0]
    assert "Lightning 2.0 removed this" in notes[0]


def test_frequency_missing_for_some_optimizers_is_1_9_5s_error() -> None:
    class Partial(GAN):
        def configure_optimizers(self) -> Any:
            og = torch.optim.SGD(self.g.parameters(), lr=0.1)
            return [{"optimizer": og, "frequency": 1}, {"optimizer": torch.optim.SGD(self.d.parameters(), lr=0.1)}]

    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    data = DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=4)
    with pytest.raises(ValueError, match=r"^A frequency must be given to each optimizer\.$"):
        trainer.fit(Partial("plain"), data)


class OneOptimizer(GAN):
    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class ManualWithIdx(GAN):
    def __init__(self, case: str) -> None:
        super().__init__(case)
        self.automatic_optimization = False


@pytest.mark.parametrize("module_cls", [OneOptimizer, ManualWithIdx])
def test_2_6_6s_error_where_neither_version_ran_it(module_cls: type[GAN]) -> None:
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    data = DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=4)
    with pytest.raises(RuntimeError, match=r"^Training with multiple optimizers is only supported with manual"):
        trainer.fit(module_cls("plain"), data)


def test_several_optimizers_without_optimizer_idx_keeps_2_6_6s_error() -> None:
    class NoIdx(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = torch.nn.Linear(4, 1), torch.nn.Linear(4, 1)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            return self.a(batch[0]).sum()

        def configure_optimizers(self) -> Any:
            return [torch.optim.SGD(self.a.parameters(), lr=0.1), torch.optim.SGD(self.b.parameters(), lr=0.1)]

    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    data = DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=4)
    with pytest.raises(RuntimeError, match=r"^Training with multiple optimizers is only supported with manual"):
        trainer.fit(NoIdx(), data)


def test_resuming_between_epochs_continues_the_schedule_exactly(tmp_path: Path) -> None:
    def data() -> DataLoader[Any]:
        torch.manual_seed(1)
        return DataLoader(TensorDataset(torch.randn(24, 4)), batch_size=4)

    flags: dict[str, Any] = {
        "limit_train_batches": 5,
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
    }
    whole, first, rest = GAN("freq"), GAN("freq"), GAN("freq")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pl.Trainer(max_epochs=2, enable_checkpointing=False, **flags).fit(whole, data())
        pl.Trainer(max_epochs=1, default_root_dir=str(tmp_path), **flags).fit(first, data())
        (ckpt,) = tmp_path.rglob("*.ckpt")
        trainer = pl.Trainer(max_epochs=2, enable_checkpointing=False, **flags)
        trainer.fit(rest, data(), ckpt_path=str(ckpt))
    assert trainer.global_step == RECORDED["freq"]["global_step"]
    for a, b in zip(whole.parameters(), rest.parameters()):
        assert torch.equal(a, b)
    assert [[round(g["lr"], 8) for g in o.param_groups] for o in trainer.optimizers] == RECORDED["freq"]["lrs"]


# 1.9.5, for the module and callback below (2 batches of 4, two optimizers): the calls of the hooks whose 1.x
# signatures take the optimizer index, and the final weights (optimizer 0's gradients clipped to 0.01 by value).
_ONE_BATCH = [
    ["backward", 0], ["cb_before_step", 0], ["before_step", 0], ["clip", 0, None, None],
    ["backward", 1], ["cb_before_step", 1], ["before_step", 1], ["clip", 1, None, None],
]  # fmt: skip
HOOKS_TRACE_1_9_5 = _ONE_BATCH * 2
HOOKS_PARAMS_1_9_5 = [
    -0.003743, 0.268222, -0.413523, -0.369969, -0.192577, 0.134079, -0.011907, 0.394445, -0.044372, 0.132306,
    -0.149107, -0.096283, -0.477674, -0.331141, -0.208112, 0.016522, 0.199668, 0.302011, -0.340971, -0.215731,
    0.256654, 0.443103, -0.05918, 0.421747, -0.080592,
]  # fmt: skip


def test_1_x_hook_signatures_with_the_optimizer_index() -> None:
    trace: list[Any] = []

    class IndexCallback(pl.Callback):
        def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any, opt_idx: int) -> None:  # type: ignore[override]
            trace.append(["cb_before_step", opt_idx])

    class Model(GAN):
        def training_step(self, batch: Any, batch_idx: int, optimizer_idx: int) -> Any:
            (x,) = batch
            if optimizer_idx == 0:
                return -self.d(self.g(x)).mean()
            return self.d(x).mean() - self.d(self.g(x).detach()).mean()

        def on_before_optimizer_step(self, optimizer: Any, optimizer_idx: int) -> None:  # type: ignore[override]
            trace.append(["before_step", optimizer_idx])

        def configure_gradient_clipping(  # type: ignore[override]
            self, optimizer: Any, optimizer_idx: int, gradient_clip_val: Any = None, gradient_clip_algorithm: Any = None
        ) -> None:
            trace.append(["clip", optimizer_idx, gradient_clip_val, gradient_clip_algorithm])
            if optimizer_idx == 0:
                self.clip_gradients(optimizer, gradient_clip_val=0.01, gradient_clip_algorithm="value")

        def backward(self, loss: Any, optimizer: Any, optimizer_idx: int, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
            trace.append(["backward", optimizer_idx])
            loss.backward(*args, **kwargs)

        optimizer_step = pl.LightningModule.optimizer_step  # the 2.x defaults: only the hooks above are 1.x
        optimizer_zero_grad = pl.LightningModule.optimizer_zero_grad

    torch.manual_seed(1)
    data = DataLoader(TensorDataset(torch.randn(12, 4)), batch_size=4)
    model = Model("plain")
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[IndexCallback()],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, data)
    assert trace == HOOKS_TRACE_1_9_5
    params = [float(v) for v in torch.cat([p.detach().flatten() for p in model.parameters()])]
    assert params == pytest.approx(HOOKS_PARAMS_1_9_5, abs=2e-6)


def test_frequency_key_is_not_called_unsupported_when_the_1_x_loop_uses_it() -> None:
    trainer = pl.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    data = DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=4)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        trainer.fit(GAN("freq"), data)
    assert not [w for w in record if "unsupported keys" in str(w.message)]
    assert [w for w in record if "optimizer_idx" in str(w.message)]  # the note that 2.x removed the loop
