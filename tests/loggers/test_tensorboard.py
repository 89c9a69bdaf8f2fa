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
    assert logger._scalars is not None
    clone = pickle.loads(pickle.dumps(logger))
    assert clone._experiment is None
    assert clone._scalars is None
    assert clone.log_dir == logger.log_dir
    logger.finalize("success")


# ---- fulgor's own scalar writer: scalars without importing tensorboard ----


def _event_files(log_dir: str | Path) -> list[Path]:
    return sorted(p for p in Path(log_dir).iterdir() if "tfevents" in p.name)


FIT_SCRIPT = """
import json, os, shutil, sys
import torch
from torch.utils.data import DataLoader, TensorDataset
import fulgor

class Model(fulgor.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.log("batch_idx", float(batch_idx))
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

g = torch.Generator().manual_seed(0)
data = DataLoader(TensorDataset(torch.randn(80, 4, generator=g), torch.randn(80, 1, generator=g)), batch_size=8)
trainer = fulgor.Trainer(max_epochs=1, log_every_n_steps=3, enable_progress_bar=False, enable_model_summary=False)
trainer.fit(Model(), data)
log_dir = trainer.logger.log_dir
# What finalize() left on disk while the process still runs (no help from exit-time flushing):
os.makedirs("snapshot")
for name in os.listdir(log_dir):
    if "tfevents" in name:
        shutil.copy(os.path.join(log_dir, name), "snapshot")
tb = ("tensorboard", "tensorboardX", "torch.utils.tensorboard")
modules = [m for m in sys.modules if m.split(".")[0] in tb or m.startswith(tb[2])]
print(json.dumps({"log_dir": log_dir, "modules": sorted(modules), "logger": type(trainer.logger).__name__}))
"""


def test_default_fit_logs_scalars_without_importing_tensorboard(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(
        [sys.executable, "-c", FIT_SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["logger"] == "TensorBoardLogger"
    assert out["modules"] == []
    files = _event_files(out["log_dir"])
    assert len(files) == 1
    assert (Path(out["log_dir"]) / "hparams.yaml").read_text() == "{}\n"
    for run_dir in (out["log_dir"], tmp_path / "snapshot"):
        scalars = _scalars(_load(Path(run_dir)))
        assert scalars["batch_idx"] == [(2, 2.0), (5, 5.0), (8, 8.0)]  # every log_every_n_steps=3 of 10 batches
        assert scalars["epoch"] == [(2, 0.0), (5, 0.0), (8, 0.0)]


def test_prepare_and_save_use_own_writer(tmp_path: Path) -> None:
    logger = TensorBoardLogger(tmp_path)
    logger._prepare_for_setup()  # the Trainer's call before the setup hooks: directory and event file
    (file,) = _event_files(logger.log_dir)
    logger.log_metrics({"a": 1.0, "b": torch.tensor(2.0)}, step=3)
    logger.log_metrics({"a": 0.5}, step=4)
    logger.save()
    assert logger._experiment is None  # no SummaryWriter was needed
    assert _scalars(_load(Path(logger.log_dir))) == {"a": [(3, 1.0), (4, 0.5)], "b": [(3, 2.0)]}
    assert (Path(logger.log_dir) / "hparams.yaml").read_text() == "{}\n"
    logger.log_metrics({"a": 0.25}, step=5)
    logger.finalize("success")
    assert _scalars(_load(Path(logger.log_dir)))["a"] == [(3, 1.0), (4, 0.5), (5, 0.25)]
    logger.save()  # after finalize: no new file
    assert _event_files(logger.log_dir) == [file]
    logger.log_metrics({"a": 0.125}, step=6)  # logging on (e.g. trainer.test after fit): a new file, as SummaryWriter
    logger.finalize("success")
    assert len(_event_files(logger.log_dir)) == 2
    assert _scalars(_load(Path(logger.log_dir)))["a"][-1] == (6, 0.125)


def test_experiment_after_scalars_switches_writer(tmp_path: Path) -> None:
    logger = TensorBoardLogger(tmp_path, filename_suffix=".x", flush_secs=30, max_queue=5)
    logger.log_metrics({"loss": 1.0}, step=0)
    own = logger._scalars
    assert own is not None
    assert own.path.endswith(".x")
    logger.log_metrics({"loss": 0.5}, step=1)
    experiment = logger.experiment  # the user asks for the SummaryWriter: ours is closed
    assert own.closed
    assert logger._scalars is None
    experiment.add_text("note", "hello", 1)
    tb_index = experiment.file_writer.event_writer._file_name.removesuffix(".x").rsplit(".", 1)[1]
    logger.log_metrics({"loss": 0.25}, step=2)
    logger.finalize("success")
    files = _event_files(logger.log_dir)
    assert len(files) == 2  # same second, but never the same name: tensorboard's counter skips ours
    assert all(f.name.endswith(".x") for f in files)
    assert int(tb_index) > own.index
    assert tb_index > str(own.index)  # and sorts after it: TensorBoard reads ours first
    assert files[0].name == os.path.basename(own.path) or files[0].name < files[1].name
    acc = _load(Path(logger.log_dir))
    assert _scalars(acc) == {"loss": [(0, 1.0), (1, 0.5), (2, 0.25)]}
    assert "note/text_summary" in acc.Tags()["tensors"]


def test_dict_hparams_and_graph_go_through_summary_writer(tmp_path: Path) -> None:
    logger = TensorBoardLogger(tmp_path)
    logger.log_metrics({"a": 1.0}, step=0)
    logger.log_metrics({"a": 2.0, "pair": {"x": 1.0, "y": 2.0}}, step=1)  # add_scalars: switches for the whole call
    assert logger._experiment is not None
    logger.finalize("success")
    assert _scalars(_load(Path(logger.log_dir))) == {"a": [(0, 1.0), (1, 2.0)]}
    assert _scalars(_load(Path(logger.log_dir) / "pair_y")) == {"pair": [(1, 2.0)]}
    hp = TensorBoardLogger(tmp_path, name="hp")
    hp.log_hyperparams({"lr": 0.1})  # hp_metric and the HPARAMS summaries share the SummaryWriter's file
    assert hp._scalars is None
    hp.finalize("success")
    assert len(_event_files(hp.log_dir)) == 1


@pytest.mark.parametrize("kwargs", [{"comment": "c"}, {"purge_step": 0}])
def test_other_writer_options_use_summary_writer(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    logger = TensorBoardLogger(tmp_path, **kwargs)
    logger.log_metrics({"a": 1.0}, step=0)
    assert logger._scalars is None
    assert logger._experiment is not None
    logger.finalize("success")
    assert _scalars(_load(Path(logger.log_dir))) == {"a": [(0, 1.0)]}


def test_remote_log_dir_uses_summary_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fulgor.loggers import tensorboard

    monkeypatch.setattr(tensorboard.fs, "is_remote", lambda path: True)
    logger = TensorBoardLogger(tmp_path)
    logger.log_metrics({"a": 1.0}, step=0)
    assert logger._scalars is None
    assert logger._experiment is not None
    logger.finalize("failed")
