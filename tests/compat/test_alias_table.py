"""The alias table itself (fulgor.lightning_paths) and the finder around it (fulgor.compat): every source names a fulgor
module that exists (or is declared not written yet), every listed name exists there, aliases are lazy, and
`import fulgor` loads none of it."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fulgor.compat import _is_alias, _module_exists, _parse
from fulgor.lightning_paths import FABRIC, LIGHTNING, NOT_BUILT, PYTORCH

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONWARNINGS": "ignore"}
SOURCES = sorted(
    {source for table in (PYTORCH, FABRIC) for sources in table.values() for source in sources} | set(LIGHTNING)
)


def python(code: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


@pytest.mark.parametrize("source", SOURCES)
def test_every_source_exists_or_is_declared_not_built(source: str) -> None:
    module, names = _parse(source)
    assert module.startswith("fulgor"), source
    if not _module_exists(module):
        assert module in NOT_BUILT, f"{source}: no module {module} (a typo, or add it to NOT_BUILT with its owner)"
        return
    found = importlib.import_module(module)
    missing = [f"{lightning}={fulgor}" for lightning, fulgor in (names or {}).items() if not hasattr(found, fulgor)]
    assert missing == [], f"{source}: {module} has none of {missing}"


@pytest.mark.parametrize("module", sorted(NOT_BUILT))
def test_not_built_is_only_what_is_not_built(module: str) -> None:
    assert not _module_exists(module), f"{module} exists now: remove it from NOT_BUILT"


def test_import_fulgor_loads_no_alias_machinery() -> None:
    code = (
        "import sys, fulgor\n"
        "print(sorted(m for m in sys.modules if m in ('fulgor.compat', 'fulgor.lightning_paths', 'fulgor.unavailable',"
        " 'fulgor.available_packages', 'lightning_utilities', 'pytorch_lightning')))\n"
    )
    assert python(code) == ["[]"]


def test_installing_and_importing_aliases_loads_fulgor_modules_only_on_use() -> None:
    code = (
        "import sys, fulgor.compat as c; c.install()\n"
        "import pytorch_lightning.callbacks.early_stopping as es, lightning.fabric.utilities.data as data\n"
        "print('fulgor.callbacks.early_stopping' in sys.modules, 'fulgor.data.sizes' in sys.modules)\n"
        "es.EarlyStopping; data.has_len\n"
        "print('fulgor.callbacks.early_stopping' in sys.modules, 'fulgor.data.sizes' in sys.modules)\n"
    )
    assert python(code) == ["False False", "True True"]


def test_lightning_top_level_and_package_attributes() -> None:
    code = (
        "import fulgor, fulgor.compat as c; c.install()\n"
        "import lightning as L, lightning_fabric, pytorch_lightning as pl\n"
        "from fulgor.seed import seed_everything\n"
        "print(L.Trainer is fulgor.Trainer, L.LightningModule is fulgor.LightningModule, L.Callback is fulgor.Callback,"
        " L.LightningDataModule is fulgor.LightningDataModule, L.seed_everything is seed_everything)\n"
        "import sys; print(L.pytorch is sys.modules['lightning.pytorch'], L.fabric.__name__, pl.__version__,"
        " lightning_fabric.__version__)\n"
        "from lightning.fabric import seed_everything as s2; print(s2 is seed_everything)\n"
        "from pytorch_lightning.callbacks import *; print(EarlyStopping is fulgor.callbacks.EarlyStopping)\n"
        "print('EarlyStopping' in dir(pl.callbacks), 'DeepSpeedStrategy' in dir(pl.strategies))\n"
        "from pytorch_lightning.utilities.imports import _RICH_AVAILABLE; print(type(_RICH_AVAILABLE).__name__)\n"
        "from pytorch_lightning.utilities.rank_zero import _get_rank  # an internal: imports, raises when used\n"
        "try:\n    _get_rank()\nexcept ImportError as e:\n"
        "    print(type(e).__name__)\n"
    )
    assert python(code) == [
        "True True True True True",
        "True lightning.fabric 2.6.6 2.6.6",
        "True",
        "True",
        "True True",
        "bool",
        "NotProvidedError",
    ]


def test_renamed_and_private_names() -> None:
    code = (
        "import fulgor.compat as c; c.install()\n"
        "from pytorch_lightning.strategies.launchers import _MultiProcessingLauncher, _SubprocessScriptLauncher\n"
        "from fulgor.strategies.launcher import MultiProcessingLauncher, ScriptLauncher\n"
        "print(_MultiProcessingLauncher is MultiProcessingLauncher, _SubprocessScriptLauncher is ScriptLauncher)\n"
        "from lightning_fabric.utilities.logger import _flatten_dict; print(_flatten_dict({'a': {'b': 1}}))\n"
        "from lightning.pytorch.loops.fit_loop import RestartStage; print(RestartStage.RESTARTED_MID_EPOCH)\n"
        "from lightning.pytorch.utilities.testing import _runif_reasons; print(_runif_reasons(tpu=True)[0])\n"
    )
    assert python(code) == ["True True", "{'a/b': 1}", "restarted_mid_epoch", "['TPU']"]


def test_private_lightning_names_are_flags_or_stand_ins_that_raise_on_use() -> None:
    code = (
        "import fulgor.compat as c; c.install()\n"
        "import importlib.util, inspect, torch\n"
        "from lightning.pytorch.loggers.tensorboard import _TENSORBOARD_AVAILABLE\n"
        "print(_TENSORBOARD_AVAILABLE is (importlib.util.find_spec('tensorboard') is not None))\n"
        "from lightning.pytorch.utilities.imports import _DEEPSPEED_AVAILABLE; print(_DEEPSPEED_AVAILABLE)\n"
        "from lightning.fabric.accelerators.cuda import _NOPE_NOT_A_PACKAGE_AVAILABLE as f; print(f)\n"
        "from lightning.pytorch.loops import _TORCH_GREATER_EQUAL_2_0 as new, _TORCH_GREATER_EQUAL_99_1 as future\n"
        "print(new, future)\n"
        "from pytorch_lightning.loops import _FitLoop\n"
        "print(inspect.isclass(_FitLoop), _FitLoop.__module__, hasattr(_FitLoop, '__wrapped__'))\n"
        "for use in (lambda: _FitLoop(trainer=None), lambda: _FitLoop.run):\n"
        "    try:\n"
        "        use()\n"
        "    except ImportError as error:\n"
        "        print(type(error).__name__, str(error).split(':')[0])\n"
        "from lightning.pytorch.utilities._pytree import _tree_flatten\n"
        "print(_tree_flatten.__module__)\n"
        "import lightning.pytorch as L\n"
        "try:\n"
        "    L.NoSuchPublicName\n"
        "except AttributeError as error:\n"
        "    print('AttributeError', 'fulgor does not provide `lightning.pytorch.NoSuchPublicName`' in str(error))\n"
    )
    assert python(code) == [
        "True",
        "False",  # a refused feature is unavailable even where its package is installed
        "False",
        "True False",
        "True pytorch_lightning.loops False",
        "NotProvidedError `pytorch_lightning.loops._FitLoop` is a Lightning internal (a `_`-prefixed name)",
        "NotProvidedError `pytorch_lightning.loops._FitLoop.run` is a Lightning internal (a `_`-prefixed name)",
        "lightning.pytorch.utilities._pytree",  # a private module imports: its names are stand-ins
        "AttributeError True",
    ]


def test_optimization_loop_classes_are_stand_ins() -> None:
    code = (
        "import fulgor.compat as c; c.install()\n"
        "from lightning.pytorch.loops.optimization.automatic import Closure, ClosureResult\n"
        "from pytorch_lightning.loops.optimization.manual import ManualResult\n"
        "for cls in (Closure, ClosureResult, ManualResult):\n"
        "    try:\n"
        "        cls(None)\n"
        "    except ImportError as error:\n"
        "        print(str(error).split(':')[0])\n"
    )
    assert python(code) == [
        "`lightning.pytorch.loops.optimization.automatic.Closure` is a Lightning internal",
        "`lightning.pytorch.loops.optimization.automatic.ClosureResult` is a Lightning internal",
        "`lightning.pytorch.loops.optimization.manual.ManualResult` is a Lightning internal",
    ]


def test_a_process_started_under_the_aliases_installs_them_when_it_imports_fulgor() -> None:
    code = "import fulgor, pytorch_lightning as pl; print(pl.Trainer is fulgor.Trainer)"
    env = {**ENV, "FULGOR_COMPAT": "1"}  # what `compat.install()` leaves for the processes it starts (spawned ranks)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True"]
    assert python("import sys, fulgor; print('fulgor.compat' in sys.modules)") == ["False"]  # not otherwise


def test_is_alias_says_which_lightning_modules_the_finder_answers() -> None:
    assert _is_alias("lightning.pytorch.callbacks.early_stopping")
    assert _is_alias("pytorch_lightning.utilities._pytree")  # private: answered with stand-ins
    assert not _is_alias("lightning.pytorch.nosuchmodule")
    assert _is_alias("lightning_fabric.cli")  # the `fabric run` command
