"""Patching a Lightning module path (`mock.patch`, `monkeypatch.setattr`) reaches the fulgor module behind the alias and
is undone with the patch; reloading a Lightning package applies `POSSIBLE_USER_WARNINGS` again."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONWARNINGS": "ignore"}


def _run(code: str, **env: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**ENV, **env}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_mock_patch_of_a_lightning_path_reaches_fulgor_and_is_undone() -> None:
    out = _run(
        "import fulgor.compat as c; c.install()\n"
        "from unittest import mock\n"
        "import fulgor.callbacks.throughput_monitor as ours\n"
        "import lightning.pytorch.callbacks.throughput_monitor as theirs\n"
        "original = ours.get_available_flops\n"
        "with mock.patch('lightning.pytorch.callbacks.throughput_monitor.get_available_flops', return_value=7) as m:\n"
        "    print(ours.get_available_flops is m, ours.get_available_flops(None, None))\n"
        "print(ours.get_available_flops is original, theirs.get_available_flops is original)\n"
        "theirs.get_available_flops = len\n"  # a plain assignment forwards too ...
        "print(ours.get_available_flops is len)\n"
        "theirs.get_available_flops = original\n"  # ... and giving the original back restores it
        "print(ours.get_available_flops is original)\n"
        "with mock.patch('lightning.pytorch.callbacks.throughput_monitor.no_such_name', 1, create=True):\n"
        "    print(hasattr(ours, 'no_such_name'))\n"
    )
    assert out.split() == ["True", "7", "True", "True", "True", "True", "False"]


def test_private_names_and_submodules_are_not_forwarded() -> None:
    out = _run(
        "import fulgor.compat as c; c.install()\n"
        "import fulgor.callbacks.throughput_monitor as ours\n"
        "import lightning.pytorch.callbacks.throughput_monitor as theirs\n"
        "theirs._private = 1\n"
        "print(hasattr(ours, '_private'))\n"
    )
    assert out.split() == ["False"]


def test_reloading_a_lightning_package_applies_possible_user_warnings_again() -> None:
    out = _run(
        "import importlib, os, warnings\n"
        "import fulgor.compat as c; c.install()\n"
        "import lightning.fabric\n"
        "from fulgor.errors import PossibleUserWarning\n"
        "def shown():\n"
        "    with warnings.catch_warnings(record=True) as caught:\n"
        "        warnings.warn('x', PossibleUserWarning)\n"
        "    return len(caught)\n"
        "warnings.simplefilter('always')\n"
        "print(shown())\n"
        "os.environ['POSSIBLE_USER_WARNINGS'] = 'off'\n"
        "importlib.reload(lightning.fabric)\n"
        "print(shown())\n",
        POSSIBLE_USER_WARNINGS="1",
        PYTHONWARNINGS="default",
    )
    assert out.split() == ["1", "0"]


def test_a_patch_also_reaches_the_fulgor_module_that_defines_and_calls_the_function() -> None:
    out = _run(
        "import fulgor.compat as c; c.install()\n"
        "from unittest import mock\n"
        "import fulgor.hardware as defining\n"
        "from lightning.fabric.accelerators.cuda import find_usable_cuda_devices\n"
        "original = defining.num_cuda_devices\n"
        "for count in (0, 1):\n"
        "    with mock.patch('lightning.fabric.accelerators.cuda.num_cuda_devices', return_value=count):\n"
        "        try:\n"
        "            find_usable_cuda_devices(2)\n"
        "        except ValueError as error:\n"
        "            print(str(error).split(' but ')[1].replace(' ', '_'))\n"
        "print(defining.num_cuda_devices is original)\n"
    )
    assert out.split() == [
        "there_are_no_visible_CUDA_devices_on_this_machine.",
        "this_machine_only_has_1_GPUs.",
        "True",
    ]


def test_importing_fulgor_or_reloading_lightning_asks_torch_for_nvml_based_cuda_checks() -> None:
    out = _run(
        "import importlib, os\n"
        "import fulgor\n"
        "print(os.environ.get('PYTORCH_NVML_BASED_CUDA_CHECK'))\n"
        "import fulgor.compat as c; c.install()\n"
        "import lightning.fabric\n"
        "del os.environ['PYTORCH_NVML_BASED_CUDA_CHECK']\n"
        "importlib.reload(lightning.fabric)\n"
        "print(os.environ.get('PYTORCH_NVML_BASED_CUDA_CHECK'))\n"
    )
    assert out.split() == ["1", "1"]
