"""TensorBoardLogger: event files read back with tensorboard's EventAccumulator; when tensorboard is imported; the
directory layout, hparams.yaml and scalars compared with Lightning's TensorBoardLogger driven by the same calls and
with a whole Lightning run (one event file per writer, as Lightning leaves)."""

from __future__ import annotations

import importlib.util
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
    # Sorted by step: with several event files (fit then test) the reading order follows their names, whose counter
    # part depends on how many writers the process opened before.
    return {tag: sorted((e.step, round(e.value, 6)) for e in acc.Scalars(tag)) for tag in acc.Tags()["scalars"]}


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
    # Lightning's hparams.yaml: insertion order through OmegaConf.save when omegaconf is installed, else sorted
    lines = ["lr: 0.1\n", "name: x\n", "layers:\n- 1\n- 2\n", "nested:\n  a: 1\n  b:\n    c: 2.5\n"]
    expected = lines if importlib.util.find_spec("omegaconf") else sorted(lines)
    assert (Path(logger.log_dir) / "hparams.yaml").read_text() == "".join(expected)


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
    assert logger._experiment is not None
    clone = pickle.loads(pickle.dumps(logger))
    assert clone._experiment is None
    assert clone.log_dir == logger.log_dir
    logger.finalize("success")


def _event_files(log_dir: str | Path) -> list[Path]:
    return sorted(p for p in Path(log_dir).iterdir() if "tfevents" in p.name)


# ---- when tensorboard is imported: not with fulgor or the logger, only when something is written ----


def _run_script(script: str, cwd: Path) -> dict[str, Any]:
    import json
    import subprocess
    import sys

    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    return result


_IMPORTED = """
import sys
def tensorboard_imported():
    return any(m.split(".")[0] in ("tensorboard", "tensorboardX") or m.startswith("torch.utils.tensorboard")
               for m in sys.modules)
"""

LOGGER_SCRIPT = (
    _IMPORTED
    + """
import json, os
import fulgor
from fulgor.loggers import TensorBoardLogger
seen = {"import fulgor": tensorboard_imported()}
logger = TensorBoardLogger("logs")
seen["constructed"] = tensorboard_imported()
logger._prepare_for_setup()
logger.save()
seen["prepared and saved"] = tensorboard_imported()
files = sorted(os.listdir(logger.log_dir))
logger.log_metrics({"a": 1.0}, step=0)
seen["logged"] = tensorboard_imported()
logger.finalize("success")
print(json.dumps({"seen": seen, "files_before_log": files, "files": sorted(os.listdir(logger.log_dir))}))
"""
)


def test_tensorboard_imported_at_first_log_not_before(tmp_path: Path) -> None:
    out = _run_script(LOGGER_SCRIPT, tmp_path)
    assert out["seen"] == {"import fulgor": False, "constructed": False, "prepared and saved": False, "logged": True}
    assert out["files_before_log"] == ["hparams.yaml"]  # save() wrote it into the prepared directory
    assert len(out["files"]) == 2
    assert out["files"][0].startswith("events.out.tfevents.")
    assert out["files"][1] == "hparams.yaml"


FIT_SCRIPT = (
    _IMPORTED
    + """
import json
import torch
from torch.utils.data import DataLoader, TensorDataset
import fulgor

seen = []

class Model(fulgor.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def setup(self, stage):
        seen.append(["setup", tensorboard_imported()])

    def on_train_batch_start(self, batch, batch_idx):
        seen.append([batch_idx, tensorboard_imported()])

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.log("batch_idx", float(batch_idx))
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

g = torch.Generator().manual_seed(0)
data = DataLoader(TensorDataset(torch.randn(40, 4, generator=g), torch.randn(40, 1, generator=g)), batch_size=8)
trainer = fulgor.Trainer(max_epochs=1, log_every_n_steps=3, enable_progress_bar=False, enable_model_summary=False)
trainer.fit(Model(), data)
print(json.dumps({"log_dir": trainer.logger.log_dir, "seen": seen, "logger": type(trainer.logger).__name__}))
"""
)


def test_default_fit_imports_tensorboard_at_the_first_logged_step(tmp_path: Path) -> None:
    out = _run_script(FIT_SCRIPT, tmp_path)
    assert out["logger"] == "TensorBoardLogger"
    # Batches 0-2 start without tensorboard; the metrics of batch 2 (log_every_n_steps=3) open the writer.
    assert out["seen"] == [["setup", False], [0, False], [1, False], [2, False], [3, True], [4, True]]
    assert len(_event_files(out["log_dir"])) == 1
    assert (Path(out["log_dir"]) / "hparams.yaml").read_text() == "{}\n"
    scalars = _scalars(_load(Path(out["log_dir"])))
    assert scalars == {"batch_idx": [(2, 2.0)], "epoch": [(2, 0.0)]}


def test_prepare_for_setup_makes_the_directory_and_finalize_the_event_file(tmp_path: Path) -> None:
    logger = TensorBoardLogger(tmp_path, version=3, sub_dir="sub")
    logger._prepare_for_setup()  # the Trainer's call before the setup hooks: the directory, no writer yet
    log_dir = tmp_path / "lightning_logs" / "version_3" / "sub"
    assert logger.log_dir == str(log_dir)
    assert log_dir.is_dir()
    assert logger._experiment is None
    logger.save()
    assert sorted(p.name for p in log_dir.iterdir()) == ["hparams.yaml"]
    logger.finalize("failed")  # nothing was logged: the event file Lightning's writer would have left
    assert len(_event_files(log_dir)) == 1
    assert _scalars(_load(log_dir)) == {}


def test_finalize_of_an_unused_logger(tmp_path: Path) -> None:
    TensorBoardLogger(tmp_path, name="failed").finalize("failed")
    assert not (tmp_path / "failed").exists()  # like Lightning: no writer was opened, nothing to close
    ok = TensorBoardLogger(tmp_path, name="ok")
    ok.finalize("success")  # Lightning's save() opens the writer here
    assert len(_event_files(ok.log_dir)) == 1
    assert (Path(ok.log_dir) / "hparams.yaml").read_text() == "{}\n"


# ---- one SummaryWriter, one event file ----


def test_dict_scalars_and_hparams_share_one_event_file(tmp_path: Path) -> None:
    logger = TensorBoardLogger(tmp_path)
    logger.log_metrics({"a": 1.0}, step=0)
    logger.log_hyperparams({"lr": 0.1})
    logger.log_metrics({"a": 2.0, "pair": {"x": 1.0, "y": 2.0}}, step=1)
    logger.experiment.add_text("note", "hello", 1)
    logger.finalize("success")
    assert len(_event_files(logger.log_dir)) == 1
    acc = _load(Path(logger.log_dir))
    assert _scalars(acc) == {"a": [(0, 1.0), (1, 2.0)], "hp_metric": [(0, -1.0)]}
    assert "note/text_summary" in acc.Tags()["tensors"]
    assert _scalars(_load(Path(logger.log_dir) / "pair_y")) == {"pair": [(1, 2.0)]}


def test_writer_options_reach_the_summary_writer(tmp_path: Path) -> None:
    logger = TensorBoardLogger(tmp_path, filename_suffix=".x", max_queue=5, flush_secs=30)
    logger.log_metrics({"loss": 1.0}, step=0)
    writer = logger.experiment
    assert (writer.max_queue, writer.flush_secs, writer.filename_suffix) == (5, 30, ".x")
    logger.finalize("success")
    (file,) = _event_files(logger.log_dir)
    assert file.name.endswith(".x")
    assert _scalars(_load(Path(logger.log_dir))) == {"loss": [(0, 1.0)]}


def test_memory_filesystem(tmp_path: Path) -> None:
    pytest.importorskip("fsspec")
    from fulgor import fs

    memory = fs.get_filesystem("memory://")
    fs.makedirs("memory://tb-logger/lightning_logs/version_1")
    try:
        logger = TensorBoardLogger("memory://tb-logger")
        assert logger.log_dir == "memory://tb-logger/lightning_logs/version_2"
        logger._prepare_for_setup()
        logger.log_hyperparams({"lr": 0.5})
        logger.log_metrics({"loss": 0.5}, step=1)
        logger.finalize("success")
        names = fs.listdir(logger.log_dir)
        assert len(names) == 2
        assert names[0].startswith("events.out.tfevents.")
        assert names[1] == "hparams.yaml"
        with fs.open(fs.join(logger.log_dir, "hparams.yaml"), "r") as file:
            assert file.read() == "lr: 0.5\n"
        acc = EventAccumulator(logger.log_dir)
        acc.Reload()
        assert _scalars(acc) == {"hp_metric": [(0, -1.0)], "loss": [(1, 0.5)]}
    finally:
        memory.rm("memory://tb-logger", recursive=True)


# ---- a whole run, fulgor against Lightning ----


class _Boom(Exception):
    pass


def _fit_model(lib: Any, hparams: bool, logs: bool, fails: bool) -> Any:
    class Model(lib.LightningModule):  # type: ignore[misc,name-defined]
        def __init__(self, lr: float = 0.1, width: int = 4) -> None:
            super().__init__()
            if hparams:
                self.save_hyperparameters()
            torch.manual_seed(0)
            self.layer = nn.Linear(4, 1)

        def _loss(self, batch: Any) -> torch.Tensor:
            x, y = batch
            return nn.functional.mse_loss(self.layer(x), y)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            if fails:
                raise _Boom
            loss = self._loss(batch)
            if logs:
                self.log("train_loss", loss)
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            if logs:
                self.log("val_loss", self._loss(batch))

        def test_step(self, batch: Any, batch_idx: int) -> None:
            self.log("test_loss", self._loss(batch))

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Model()


def _tiny_loader() -> Any:
    from torch.utils.data import DataLoader, TensorDataset

    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(40, 4, generator=g), torch.randn(40, 1, generator=g)), batch_size=8)


def _tiny_run(lib: Any, root: Path, fn: str, hparams: bool, logs: bool) -> str:
    import warnings

    (root / "lightning_logs" / "version_0").mkdir(parents=True)  # the run takes version_1
    model = _fit_model(lib, hparams, logs, fails=fn == "fails")
    trainer = lib.Trainer(
        default_root_dir=root,
        max_epochs=2,
        log_every_n_steps=2,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if fn == "validate":
            trainer.validate(model, _tiny_loader())
        elif fn == "fails":
            with pytest.raises(_Boom):
                trainer.fit(model, _tiny_loader())
        else:
            trainer.fit(model, _tiny_loader(), _tiny_loader())
            if fn == "fit+test":
                trainer.test(model, _tiny_loader())
    assert type(trainer.logger).__name__ == "TensorBoardLogger"  # the default logger with tensorboard installed
    return str(trainer.logger.log_dir)


def _hparams_tab(acc: EventAccumulator) -> tuple[dict[str, Any], list[str]]:
    content = acc.PluginTagToContent("hparams")
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    values = {k: v.number_value for k, v in session.session_start_info.hparams.items()}
    return values, [m.name.tag for m in experiment.metric_infos]


@pytest.mark.oracle
@pytest.mark.parametrize(
    ("fn", "hparams", "logs"),
    [
        ("fit", True, True),
        ("fit", False, True),
        ("fit+test", False, True),
        ("validate", False, False),  # nothing logged: the event file still exists
        ("fails", True, True),  # finalize("failed") after the hparams were logged
        ("fit+test", True, True),
        ("validate", True, True),
    ],
)
def test_run_leaves_the_files_and_scalars_lightning_leaves(tmp_path: Path, fn: str, hparams: bool, logs: bool) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    import fulgor

    ours = _tiny_run(fulgor, tmp_path / "ours", fn, hparams, logs)
    theirs = _tiny_run(pl, tmp_path / "theirs", fn, hparams, logs)
    assert os.path.relpath(ours, tmp_path / "ours") == os.path.relpath(theirs, tmp_path / "theirs")
    layout = _layout(tmp_path / "ours")
    assert layout == _layout(tmp_path / "theirs")
    events = ["lightning_logs/version_1/events.out.tfevents.*"] * (2 if fn == "fit+test" else 1)
    assert layout == ["lightning_logs", "lightning_logs/version_0", "lightning_logs/version_1", *events,
                      "lightning_logs/version_1/hparams.yaml"]  # fmt: skip
    assert Path(ours, "hparams.yaml").read_bytes() == Path(theirs, "hparams.yaml").read_bytes()
    ours_acc, theirs_acc = _load(Path(ours)), _load(Path(theirs))
    scalars = _scalars(ours_acc)
    assert scalars == _scalars(theirs_acc)
    if hparams:
        assert _hparams_tab(ours_acc) == _hparams_tab(theirs_acc) == ({"lr": 0.1, "width": 4.0}, ["hp_metric"])
        assert scalars["hp_metric"] == [(0, -1.0)] * (2 if fn == "fit+test" else 1)  # logged as each stage starts
    if fn == "fit":
        assert sorted(scalars) == ["epoch", *(["hp_metric"] if hparams else []), "train_loss", "val_loss"]
        assert [step for step, _ in scalars["train_loss"]] == [1, 3, 5, 7, 9]
        assert [step for step, _ in scalars["val_loss"]] == [4, 9]
