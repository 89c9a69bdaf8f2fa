"""LearningRateMonitor: metric names, values and steps sent to the loggers, compared with pytorch-lightning 2.6.6."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import fulgor
from fulgor.callbacks.lr_monitor import LearningRateMonitor
from fulgor.errors import MisconfigurationException


def recording_logger(lib: Any) -> Any:
    """A logger of `lib` that records every `log_metrics` call as (step, {name: value}) for the lr-* keys."""

    class Recording(lib.loggers.Logger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.rows: list[tuple[int | None, dict[str, float]]] = []

        @property
        def name(self) -> str:
            return "rec"

        @property
        def version(self) -> int:
            return 0

        def log_metrics(self, metrics: Any, step: int | None = None) -> None:
            rows = {k: round(float(v), 8) for k, v in metrics.items() if k.startswith("lr") or "-" in k}
            if rows:
                self.rows.append((step, rows))

        def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
            pass

    return Recording()


def model_class(lib: Any, optimizers: str) -> type:
    class Model(lib.LightningModule):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.a = torch.nn.Linear(2, 2)
            self.b = torch.nn.Linear(2, 1)
            self.automatic_optimization = optimizers not in ("two",)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            loss = self.b(self.a(batch[0])).pow(2).mean()
            if self.automatic_optimization:
                return loss
            for opt in self.optimizers():
                opt.zero_grad()
            self.manual_backward(loss)
            for opt in self.optimizers():
                opt.step()
            return None

        def configure_optimizers(self) -> Any:
            if optimizers == "sgd_step":
                opt = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
                sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
                return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
            if optimizers == "adam_epoch_groups":
                opt = torch.optim.Adam([{"params": self.a.parameters()}, {"params": self.b.parameters(), "lr": 0.01}])
                return [opt], [torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.1)]
            if optimizers == "named":
                opt = torch.optim.SGD(
                    [{"params": self.a.parameters(), "name": "enc"}, {"params": self.b.parameters(), "name": "head"}],
                    lr=0.2,
                )
                sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9)
                return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "name": "my-lr"}}
            if optimizers == "two":
                return torch.optim.SGD(self.a.parameters(), lr=0.3), torch.optim.Adagrad(self.b.parameters(), lr=0.4)
            return torch.optim.Adam(self.parameters(), lr=0.05)

    return Model


def run(lib: Any, root: Path, optimizers: str, monitor: Any, **kw: Any) -> list[tuple[int | None, dict[str, float]]]:
    logger = recording_logger(lib)
    trainer = lib.Trainer(default_root_dir=str(root), max_epochs=2, callbacks=[monitor], logger=logger,
                          enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                          **{"log_every_n_steps": 1, **kw})  # fmt: skip
    trainer.fit(model_class(lib, optimizers)(), DataLoader(TensorDataset(torch.randn(6, 2)), batch_size=2))
    return logger.rows


def test_step_scheduler_logs_every_step_with_momentum_and_weight_decay(tmp_path: Path) -> None:
    rows = run(fulgor, tmp_path, "sgd_step", LearningRateMonitor(log_momentum=True, log_weight_decay=True))
    lrs = [(step, r["lr-SGD"]) for step, r in rows]
    assert lrs == [(0, 0.1), (1, 0.05), (2, 0.025), (3, 0.0125), (4, 0.00625), (5, 0.003125)]
    assert rows[0][1] == {"lr-SGD": 0.1, "lr-SGD-momentum": 0.9, "lr-SGD-weight_decay": 0.01}


def test_epoch_scheduler_with_param_groups_logs_at_epoch_start(tmp_path: Path) -> None:
    monitor = LearningRateMonitor()
    rows = run(fulgor, tmp_path, "adam_epoch_groups", monitor)
    assert rows == [
        (0, {"lr-Adam/pg1": 0.001, "lr-Adam/pg2": 0.01}),
        (3, {"lr-Adam/pg1": 0.0001, "lr-Adam/pg2": 0.001}),
    ]
    assert monitor.lrs == {"lr-Adam/pg1": [0.001, 0.0001], "lr-Adam/pg2": [0.01, 0.001]}


def test_interval_step_logs_epoch_schedulers_every_step(tmp_path: Path) -> None:
    rows = run(fulgor, tmp_path, "named", LearningRateMonitor(logging_interval="step"))
    assert [step for step, _ in rows] == [0, 1, 2, 3, 4, 5]
    assert rows[3] == (3, {"my-lr/enc": 0.18, "my-lr/head": 0.18})


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(MisconfigurationException, match=r"logging_interval should be `step` or `epoch` or `None`\."):
        LearningRateMonitor(logging_interval="batch")
    trainer = fulgor.Trainer(default_root_dir=str(tmp_path), max_epochs=1, logger=False,
                             callbacks=[LearningRateMonitor()], enable_progress_bar=False)  # fmt: skip
    with pytest.raises(MisconfigurationException, match="Cannot use `LearningRateMonitor` callback with `Trainer`"):
        trainer.fit(model_class(fulgor, "adam")(), DataLoader(TensorDataset(torch.randn(6, 2)), batch_size=2))


def test_momentum_warning_for_optimizers_without_momentum(tmp_path: Path) -> None:
    with pytest.warns(RuntimeWarning, match="You have set log_momentum=True, but some optimizers do not"):
        rows = run(fulgor, tmp_path, "two", LearningRateMonitor(log_momentum=True))
    # Optimizers without a scheduler are logged at each epoch start and each logged step.
    assert rows[:2] == [(0, {"lr-SGD": 0.3, "lr-SGD-momentum": 0, "lr-Adagrad": 0.4, "lr-Adagrad-momentum": 0})] * 2
    assert [step for step, _ in rows] == [0, 0, 1, 2, 3, 3, 4, 5]


CASES = [
    ("sgd_step", {"log_momentum": True, "log_weight_decay": True}),
    ("adam_epoch_groups", {}),
    ("adam_epoch_groups", {"logging_interval": "step", "log_momentum": True}),
    ("named", {"logging_interval": "epoch"}),
    ("named", {}),
    ("two", {}),
    ("adam", {"log_momentum": True}),
]


@pytest.mark.oracle
@pytest.mark.parametrize(("optimizers", "kwargs"), CASES)
def test_matches_lightning(tmp_path: Path, optimizers: str, kwargs: dict[str, Any]) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    expected = run(pl, tmp_path / "pl", optimizers, pl.callbacks.LearningRateMonitor(**kwargs))
    assert run(fulgor, tmp_path / "f", optimizers, LearningRateMonitor(**kwargs)) == expected


@pytest.mark.oracle
def test_log_every_n_steps_matches_lightning(tmp_path: Path) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    expected = run(pl, tmp_path / "pl", "two", pl.callbacks.LearningRateMonitor(), log_every_n_steps=2)
    assert run(fulgor, tmp_path / "f", "two", LearningRateMonitor(), log_every_n_steps=2) == expected
    assert [step for step, _ in expected] == [0, 1, 3, 3, 5]
