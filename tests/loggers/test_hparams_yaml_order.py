"""hparams.yaml as Lightning writes it: with omegaconf installed, `OmegaConf.save` keeps the insertion order and
resolves OmegaConf containers (interpolations included), and reading gives a `DictConfig`; without it (or with
`use_omegaconf=False`) the plain writer sorts the keys. Differential against the real Lightning where installed."""

from __future__ import annotations

import enum
import threading
import warnings
from argparse import Namespace
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fulgor.hparams import AttributeDict, load_hparams_from_yaml, save_hparams_to_yaml
from fulgor.loggers import CSVLogger


class Color(enum.Enum):
    RED = 1


def _cases() -> list[Callable[[], Any]]:
    return [
        lambda: Namespace(batch_size=32, learning_rate=0.001, data_root="./any/path/here"),
        lambda: AttributeDict(b=[1, 2], a={"x": 1.5}, c=Color.RED),
        lambda: {"z": 1, "a": (1, 2), "m": {"y": 2, "b": 1}},
        lambda: {},
    ]


def test_plain_writer_sorts_keys(tmp_path: Path) -> None:
    path = tmp_path / "hparams.yaml"
    save_hparams_to_yaml(path, {"z": 1, "a": 2, "m": {"y": 1, "b": 2}}, use_omegaconf=False)
    assert path.read_text() == "a: 2\nm:\n  b: 2\n  y: 1\nz: 1\n"
    assert load_hparams_from_yaml(path, use_omegaconf=False) == {"z": 1, "a": 2, "m": {"y": 1, "b": 2}}


def test_omegaconf_writer_keeps_insertion_order_and_resolves(tmp_path: Path) -> None:
    omegaconf = pytest.importorskip("omegaconf")
    path = tmp_path / "hparams.yaml"
    cfg = omegaconf.OmegaConf.create({"q": "${z2}", "z2": 3})
    save_hparams_to_yaml(path, {"z": 1, "cfg": cfg, "a": 2})
    assert path.read_text() == "z: 1\ncfg:\n  q: 3\n  z2: 3\na: 2\n"
    assert cfg._get_node("q")._value() == "${z2}"  # the user's config is not resolved in place
    loaded = load_hparams_from_yaml(path)
    assert isinstance(loaded, omegaconf.DictConfig)
    assert list(loaded) == ["z", "cfg", "a"]
    # a whole DictConfig as the hparams
    save_hparams_to_yaml(path, omegaconf.OmegaConf.create({"b": 1, "a": {"c": 2}}))
    assert path.read_text() == "b: 1\na:\n  c: 2\n"


def test_uncopyable_value_is_skipped_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "hparams.yaml"
    with pytest.warns(UserWarning, match="Skipping 'lock' parameter because it is not possible to safely dump"):
        save_hparams_to_yaml(path, {"lock": threading.Lock(), "a": 1})
    assert path.read_text() == "a: 1\n"


def test_csv_logger_hparams_in_lightnings_order(tmp_path: Path) -> None:
    logger = CSVLogger(tmp_path)
    logger.log_hyperparams({"lr": 0.1, "name": "x"})
    logger.log_hyperparams({"bs": 4})
    text = Path(logger.log_dir, "hparams.yaml").read_text()
    try:
        import omegaconf  # noqa: F401
    except ImportError:
        assert text == "bs: 4\nlr: 0.1\nname: x\n"
    else:
        assert text == "lr: 0.1\nname: x\nbs: 4\n"


@pytest.mark.oracle
@pytest.mark.parametrize("use_omegaconf", [True, False])
@pytest.mark.parametrize("case", range(len(_cases())))
def test_same_file_and_loaded_value_as_lightning(tmp_path: Path, case: int, use_omegaconf: bool) -> None:
    saving = pytest.importorskip("pytorch_lightning.core.saving")
    results = []
    for name, save, load in (
        ("lightning", saving.save_hparams_to_yaml, saving.load_hparams_from_yaml),
        ("fulgor", save_hparams_to_yaml, load_hparams_from_yaml),
    ):
        path = tmp_path / f"{name}.yaml"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                save(path, _cases()[case](), use_omegaconf=use_omegaconf)
            except ValueError:  # Lightning's OmegaConf path refuses an AttributeDict holding an Enum
                results.append(None)
                continue
            loaded = load(path, use_omegaconf=use_omegaconf)
        results.append((path.read_text(), type(loaded).__name__, repr(loaded)))
    if results[0] is None:
        # where Lightning fails, fulgor writes what Lightning's plain writer would (a deliberate difference)
        assert results[1] is not None
        assert load_hparams_from_yaml(tmp_path / "fulgor.yaml", use_omegaconf=False) == {
            "a": {"x": 1.5},
            "b": [1, 2],
            "c": "RED",
        }
        return
    assert results[0] == results[1]
