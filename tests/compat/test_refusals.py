"""Refused Lightning features (fulgor.unavailable): the names import (projects import them at the top of a file), and
using one raises NotProvidedError (an ImportError) naming what it needs and what fulgor offers instead."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fulgor import unavailable
from fulgor.unavailable import REFUSED, NotProvidedError, refusal_message

ROOT = Path(__file__).resolve().parents[2]

# One message per refused name, spelled out: a changed message is a changed user-facing contract.
MESSAGES = {
    "DeepSpeedStrategy": "fulgor does not provide `DeepSpeedStrategy`: it needs the `deepspeed` package."
    " Use `strategy='fsdp'` (fully sharded data parallel on torch.distributed) instead.",
    "XLAAccelerator": "fulgor does not provide `XLAAccelerator`: it needs TPUs through `torch_xla`."
    " Use run on GPUs or CPUs: `accelerator='gpu'` / `'cpu'` instead.",
    "BitsandbytesPrecision": "fulgor does not provide `BitsandbytesPrecision`: it needs the `bitsandbytes` package"
    " (4/8-bit quantized layers). Use `precision='bf16-true'` or `'16-true'` instead.",
    "TransformerEnginePrecision": "fulgor does not provide `TransformerEnginePrecision`: it needs NVIDIA's"
    " `transformer_engine` package (FP8 layers). Use `precision='bf16-mixed'` or `'16-mixed'` instead.",
    "LitLogger": "fulgor does not provide `LitLogger`: it needs the `litlogger` package and a Lightning AI account."
    " Use CSVLogger, TensorBoardLogger, MLFlowLogger or WandbLogger instead.",
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_every_refused_name_exists_and_raises_its_message(name: str) -> None:
    refused = getattr(unavailable, name)
    message = refusal_message(name)
    assert f"`{name}`" in message
    assert REFUSED[name].needs in message
    assert REFUSED[name].instead in message
    assert refused.__doc__ == message
    with pytest.raises(NotProvidedError) as raised:
        refused(1, key="value")  # any arguments: the refusal comes before they are looked at
    assert str(raised.value) == message
    assert raised.value.name == name
    assert isinstance(raised.value, ImportError)  # code that falls back on ImportError keeps working


@pytest.mark.parametrize(("name", "expected"), sorted(MESSAGES.items()))
def test_messages_name_the_replacement(name: str, expected: str) -> None:
    assert refusal_message(name) == expected


def test_refused_classes_are_classes_that_can_be_subclassed_and_checked() -> None:
    strategy = unavailable.DeepSpeedStrategy  # type: ignore[attr-defined]
    assert isinstance(strategy, type)
    assert strategy.__name__ == "DeepSpeedStrategy"
    assert not isinstance(object(), strategy)  # isinstance checks in user code just say False

    class Custom(strategy):  # type: ignore[misc, valid-type]
        pass

    with pytest.raises(NotProvidedError, match="DeepSpeedStrategy"):
        Custom()


def test_unknown_name_is_a_key_error_listing_the_refused_names() -> None:
    with pytest.raises(KeyError, match="not a refused Lightning name; refused names: \\['BitsandbytesPrecision'"):
        refusal_message("Nope")


def test_refused_names_import_under_every_lightning_path(tmp_path: Path) -> None:
    code = (
        "import fulgor.compat as c; c.install()\n"
        "from pytorch_lightning.strategies import DeepSpeedStrategy, XLAStrategy\n"
        "from lightning.pytorch.strategies.deepspeed import DeepSpeedStrategy as D2\n"
        "from lightning.pytorch.plugins import BitsandbytesPrecision, TransformerEnginePrecision, XLAPrecision\n"
        "from pytorch_lightning.accelerators import XLAAccelerator\n"
        "from pytorch_lightning.loggers import LitLogger\n"
        "from pytorch_lightning.utilities.deepspeed import convert_zero_checkpoint_to_fp32_state_dict\n"
        "assert DeepSpeedStrategy is D2\n"
        "try:\n    DeepSpeedStrategy(stage=3)\nexcept ImportError as e:\n    print(type(e).__name__, e)\n"
        "try:\n    convert_zero_checkpoint_to_fp32_state_dict('a', 'b')\nexcept ImportError as e:\n    print(e)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        f"NotProvidedError {MESSAGES['DeepSpeedStrategy']}",
        refusal_message("convert_zero_checkpoint_to_fp32_state_dict"),
    ]


def test_refused_accelerators_say_they_are_not_available() -> None:
    accelerators = [name for name in REFUSED if name.endswith("Accelerator")]
    assert accelerators == ["XLAAccelerator"]
    assert getattr(unavailable, "XLAAccelerator").is_available() is False  # noqa: B009 (made at import)
    with pytest.raises(NotProvidedError, match="it needs TPUs through `torch_xla`"):
        getattr(unavailable, "XLAAccelerator")()  # noqa: B009
