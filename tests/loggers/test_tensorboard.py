"""TensorBoardLogger: event files read back with tensorboard's EventAccumulator, and the directory layout and
hparams.yaml compared with Lightning's TensorBoardLogger driven by the same calls."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from fulgor.loggers import TensorBoardLogger
from fulgor.loggers.logger import DummyExperiment
from fulgor.rank import rank_zero_only

HPARAMS: dict[str, Any] = {"lr": 0.1, "name": "x", "layers": [1, 2], "nested": {"a": 1, "b": {"c": 2.5}}}


def _drive(logger: Any) -> None:
    logger.log_hyperparams(HPARAMS)
    for step in range(5):
        logger.log_metrics({"train_loss": 1.0 / (step + 1), "acc": torch.tensor(step / 4.0)}, step=step)
    logger.log_metrics({"val_loss": 0.25, "pair": {"a": 1.0, "b": 2.0}}, step=4)
    logger.save()
    logger.finalize("success")


def _load(log_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return acc


def _scalars(acc: EventAccumulator) -> dict[str, list[tuple[int, float]]]:
    return {tag: [(e.step, round(e.value, 6)) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _layout(root: Path) -> list[str]:
    # Event file names hold a timestamp, host and pid: compare their location only.
    names = []
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        names.append(rel.split("events.out.tfevents.")[0] + "events.out.tfevents.*" if "tfevents" in rel else rel)
    return sorted(names)


def test_scalars_steps_and_hparams_read_back(tmp_path: Path) -> None:
    logger = TensorBoardLogger(tmp_path)
    _drive(logger)
    assert logger.log_dir == os.path.join(str(tmp_path), "lightning_logs", "version_0")
    acc = _load(Path(logger.log_dir))
    scalars = _scalars(acc)
    assert scalars["train_loss"] == [(0, 1.0), (1, 0.5), (2, 0.333333), (3, 0.25), (4, 0.2)]
    assert scalars["acc"] == [(0, 0.0), (1, 0.25), (2, 0.5), (3, 0.75), (4, 1.0)]
    assert scalars["val_loss"] == [(4, 0.25)]
    assert scalars["hp_metric"] == [(0, -1.0)]  # step None: the writer's default step
    # HPARAMS plugin: flattened keys, lists as strings, hp_metric registered as the metric.
    content = acc.PluginTagToContent("hparams")
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hp = session.session_start_info.hparams
    assert sorted(hp) == ["layers", "lr", "name", "nested/a", "nested/b/c"]
    assert hp["lr"].number_value == 0.1
    assert hp["layers"].string_value == "[1, 2]"
    assert hp["nested/b/c"].number_value == 2.5
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert [m.name.tag for m in experiment.metric_infos] == ["hp_metric"]
    # add_scalars writes each member in its own sub-run directory.
    assert sorted(p.name for p in Path(logger.log_dir).iterdir() if p.is_dir()) == ["pair_a", "pair_b"]
    assert _scalars(_load(Path(logger.log_dir) / "pair_b"))["pair"] == [(4, 2.0)]
    assert (Path(logger.log_dir) / "hparams.yaml").read_text() == (
        "layers:\n- 1\n- 2\nlr: 0.1\nname: x\nnested:\n  a: 1\n  b:\n    c: 2.5\n"
    )


@pytest.mark.oracle
@pytest.mark.parametrize(
    "kwargs",
    [{}, {"name": None, "version": "run_a"}, {"name": "exp", "sub_dir": "sub", "prefix": "p"}, {"version": 7}],
)
def test_layout_hparams_and_scalars_match_lightning(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    pl_loggers = pytest.importorskip("pytorch_lightning.loggers")
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    for root in (ours, theirs):
        (root / "exp" / "version_2").mkdir(parents=True)  # existing versions count
        (root / "lightning_logs" / "version_0").mkdir(parents=True)
    a = TensorBoardLogger(ours, **kwargs)
    b = pl_loggers.TensorBoardLogger(theirs, **kwargs)
    assert (a.name, a.version, a.sub_dir) == (b.name, b.version, b.sub_dir)
    assert os.path.relpath(a.log_dir, ours) == os.path.relpath(b.log_dir, theirs)
    assert os.path.relpath(a.root_dir, ours) == os.path.relpath(b.root_dir, theirs)
    _drive(a)
    _drive(b)
    assert _layout(ours) == _layout(theirs)
    assert (Path(a.log_dir) / "hparams.yaml").read_bytes() == (Path(b.log_dir) / "hparams.yaml").read_bytes()
    assert _scalars(_load(Path(a.log_dir))) == _scalars(_load(Path(b.log_dir)))


def test_next_version_and_default_hp_metric_off(tmp_path: Path) -> None:
    (tmp_path / "lightning_logs" / "version_3_old").mkdir(parents=True)
    (tmp_path / "lightning_logs" / "version_x").mkdir()
    logger = TensorBoardLogger(tmp_path, default_hp_metric=False)
    assert logger.version == 4
    logger.log_hyperparams({"lr": 0.1})  # no metric: nothing written to the HPARAMS tab
    logger.log_metrics({"m": 2.0}, step=3)
    logger.finalize("success")
    acc = _load(Path(logger.log_dir))
    assert _scalars(acc) == {"m": [(3, 2.0)]}
    with pytest.raises(KeyError, match="hparams"):
        acc.PluginTagToContent("hparams")
    assert (Path(logger.log_dir) / "hparams.yaml").read_text() == "lr: 0.1\n"


def test_hyperparams_with_explicit_metric(tmp_path: Path) -> None:
    logger = TensorBoardLogger(tmp_path)
    logger.log_hyperparams({"lr": 0.1}, metrics=0.75, step=2)
    logger.finalize("success")
    assert _scalars(_load(Path(logger.log_dir))) == {"hp_metric": [(2, 0.75)]}


def test_unsupported_value_names_it(tmp_path: Path) -> None:
    logger = TensorBoardLogger(tmp_path)
    with pytest.raises(ValueError, match="you tried to log \\[1, 2\\] which is currently not supported"):
        logger.log_metrics({"bad": [1, 2]}, step=0)
    logger.finalize("failed")


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(3, 2)
        self.example_input_array = torch.zeros(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


@pytest.mark.filterwarnings("ignore:`torch.jit.trace")
def test_log_graph_uses_example_input_array(tmp_path: Path) -> None:
    logger = TensorBoardLogger(tmp_path, log_graph=True)
    logger.log_graph(_Net())
    logger.finalize("success")
    acc = _load(Path(logger.log_dir))
    assert acc.Tags()["graph"] is True
    nodes = [node.name for node in acc.Graph().node]
    assert any("layer" in name for name in nodes)


def test_log_graph_off_or_without_input(tmp_path: Path) -> None:
    silent = TensorBoardLogger(tmp_path, name="off")
    silent.log_graph(_Net())  # log_graph=False: no writer, no files
    assert not (tmp_path / "off").exists()
    logger = TensorBoardLogger(tmp_path, log_graph=True)
    net = _Net()
    net.example_input_array = None  # type: ignore[assignment]
    with pytest.warns(UserWarning, match="example_input_array` attribute is not set"):
        logger.log_graph(net)
    with pytest.warns(UserWarning, match="has type <class 'list'> which can't be traced"):
        logger.log_graph(net, [torch.zeros(1, 3)])


def test_other_ranks_write_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    logger = TensorBoardLogger(tmp_path, version=0)
    assert isinstance(logger.experiment, DummyExperiment)
    logger.log_hyperparams({"lr": 0.1})
    logger.log_metrics({"m": 1.0}, step=0)
    logger.save()
    logger.finalize("success")
    assert list(tmp_path.iterdir()) == []


def test_pickles_without_writer(tmp_path: Path) -> None:
    import pickle

    logger = TensorBoardLogger(tmp_path)
    logger.log_metrics({"m": 1.0}, step=0)
    clone = pickle.loads(pickle.dumps(logger))
    assert clone._experiment is None
    assert clone.log_dir == logger.log_dir
    logger.finalize("success")
