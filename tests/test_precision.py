"""Tests for fulgor.precision: flag normalisation (lightning-behavior.md §8.5) and the precision objects' numerics."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import re
import warnings
from collections import OrderedDict, defaultdict
from typing import Any, NamedTuple

import pytest
import torch
from torch import nn

from fulgor.errors import MisconfigurationException
from fulgor.precision import (
    ALLOWED_PRECISIONS,
    DoublePrecision,
    FSDPPrecision,
    HalfPrecision,
    MixedPrecision,
    Precision,
    normalize_precision,
    select_precision,
)

HISTORICAL = (
    "`precision={}` is supported for historical reasons but its usage is discouraged. Please set your precision to {}"
    " instead!"
)
CPU_FP16 = (
    "You passed `Trainer(accelerator='cpu', precision='16-mixed')` but AMP with fp16 is not supported on CPU. Using"
    " `precision='bf16-mixed'` instead."
)
INVALID = "Precision {} is invalid. Allowed precision values: ('transformer-engine', 'transformer-engine-float16', "
INVALID += (
    "'16-true', '16-mixed', 'bf16-true', 'bf16-mixed', '32-true', '64-true', 64, 32, 16, '64', '32', '16', 'bf16')"
)


def normalize_with_warnings(value: Any, accelerator: str) -> tuple[str, list[str]]:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        name = normalize_precision(value, accelerator)
    return name, [str(w.message) for w in record]


# ------------------------------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize(
    ("value", "accelerator", "expected", "warned"),
    [
        (None, "cpu", "32-true", []),
        (32, "cpu", "32-true", []),
        ("32", "cpu", "32-true", []),
        ("32-true", "cpu", "32-true", []),
        (64, "cpu", "64-true", []),
        ("64", "cpu", "64-true", []),
        ("64-true", "cpu", "64-true", []),
        ("16-true", "cpu", "16-true", []),
        ("bf16-true", "cpu", "bf16-true", []),
        ("bf16-mixed", "cpu", "bf16-mixed", []),
        ("16-mixed", "cuda", "16-mixed", []),
        ("16-mixed", "mps", "16-mixed", []),
        ("16-mixed", "cpu", "bf16-mixed", [CPU_FP16]),
        (16, "cuda", "16-mixed", [HISTORICAL.format(16, "16-mixed")]),
        ("16", "cuda", "16-mixed", [HISTORICAL.format(16, "16-mixed")]),
        (16, "cpu", "bf16-mixed", [HISTORICAL.format(16, "16-mixed"), CPU_FP16]),
        ("16", "cpu", "bf16-mixed", [HISTORICAL.format(16, "16-mixed"), CPU_FP16]),
        ("bf16", "cpu", "bf16-mixed", [HISTORICAL.format("bf16", "bf16-mixed")]),
        ("bf16", "cuda", "bf16-mixed", [HISTORICAL.format("bf16", "bf16-mixed")]),
    ],
)
def test_normalize_precision(value: Any, accelerator: str, expected: str, warned: list[str]) -> None:
    assert normalize_with_warnings(value, accelerator) == (expected, warned)


@pytest.mark.parametrize(
    ("value", "shown"),
    [("fp8", "'fp8'"), (True, "True"), (16.0, "16.0"), ("16 ", "'16 '"), ("BF16-MIXED", "'BF16-MIXED'"), (8, "8")],
)
def test_invalid_precision(value: Any, shown: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        normalize_precision(value, "cpu")
    assert str(excinfo.value) == INVALID.format(shown)


@pytest.mark.parametrize("value", ["transformer-engine", "transformer-engine-float16"])
def test_transformer_engine_not_implemented(value: str) -> None:
    with pytest.raises(NotImplementedError) as excinfo:
        normalize_precision(value, "cuda")
    assert str(excinfo.value) == (
        f"`Trainer(precision={value!r})` needs NVIDIA Transformer Engine, which fulgor does not support. Use"
        " `precision='bf16-mixed'` or `'16-mixed'` instead."
    )


@pytest.mark.parametrize(
    ("value", "cls", "name", "bits", "key"),
    [
        (None, Precision, "32-true", 32, "Precision"),
        (32, Precision, "32-true", 32, "Precision"),
        (64, DoublePrecision, "64-true", 64, "DoublePrecision"),
        ("16-true", HalfPrecision, "16-true", 16, "HalfPrecision"),
        ("bf16-true", HalfPrecision, "bf16-true", 16, "HalfPrecision"),
        ("bf16-mixed", MixedPrecision, "bf16-mixed", 32, "MixedPrecision"),
        (16, MixedPrecision, "bf16-mixed", 32, "MixedPrecision"),
    ],
)
def test_select_precision_on_cpu(value: Any, cls: type[Precision], name: str, bits: int, key: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        precision = select_precision(value, "cpu")
    assert (type(precision), precision.name, precision.bits, precision.checkpoint_key) == (cls, name, bits, key)
    assert precision.scaler is None
    assert precision.state_dict() == {}
    assert repr(precision) == f"{key}({name!r})"


@pytest.fixture
def fulgor_log(caplog: pytest.LogCaptureFixture) -> Any:
    logger = logging.getLogger("fulgor")
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(caplog.handler)
    caplog.clear()
    yield caplog
    logger.removeHandler(caplog.handler)
    logger.setLevel(level)
    logger.propagate = propagate


@pytest.mark.parametrize(
    ("value", "accelerator", "messages"),
    [
        ("bf16-mixed", "cpu", ["Using bfloat16 Automatic Mixed Precision (AMP)"]),
        ("16-mixed", "cuda", ["Using 16bit Automatic Mixed Precision (AMP)"]),
        ("32-true", "cpu", []),
        ("64-true", "cpu", []),
        ("bf16-true", "cpu", []),
    ],
)
def test_select_precision_amp_message(fulgor_log: Any, value: str, accelerator: str, messages: list[str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GradScaler("cuda") warns on a machine without CUDA
        select_precision(value, accelerator)
    assert fulgor_log.messages == messages


def test_subclass_names_are_checked() -> None:
    with pytest.raises(
        ValueError, match=re.escape("`HalfPrecision(precision='32-true')`: precision must be '16-true'")
    ):
        HalfPrecision("32-true")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=re.escape("Precision must be '16-mixed' or 'bf16-mixed'.")):
        MixedPrecision("16-true", "cpu")  # type: ignore[arg-type]


def _constructed(build: Any) -> Any:
    """What a precision plugin's constructor gives: its public attributes, or (error type, message)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plugin = build()
    except Exception as error:
        # fulgor's errors that are both Lightning's Trainer type and Fabric's ValueError answer as the Trainer's
        kind = "MisconfigurationException" if isinstance(error, MisconfigurationException) else type(error).__name__
        return (kind, str(error))
    scaler = getattr(plugin, "scaler", None)
    return (type(plugin).__name__, plugin.precision, getattr(plugin, "device", None), type(scaler).__name__)


_SCALER = torch.amp.GradScaler("cpu")
PLUGIN_CONSTRUCTORS = [
    ("Precision", (), {}),
    ("DoublePrecision", (), {}),
    ("HalfPrecision", (), {}),
    ("HalfPrecision", ("bf16-true",), {}),
    ("MixedPrecision", ("16-mixed", "cpu"), {}),
    ("MixedPrecision", ("bf16-mixed", "cuda"), {}),
    ("MixedPrecision", ("bf16-mixed", "cpu"), {"scaler": _SCALER}),
    ("MixedPrecision", ("16-mixed",), {"device": "cpu", "scaler": _SCALER}),
    ("MixedPrecision", ("32-true", "cpu"), {}),
    ("MixedPrecision", ("16",), {"device": "cpu"}),
    ("FSDPPrecision", ("bf16-mixed",), {}),
    ("FSDPPrecision", ("32-true",), {}),
    ("FSDPPrecision", ("bf16-true",), {}),
    ("FSDPPrecision", ("64-true",), {}),
    ("FSDPPrecision", ("bf16-mixed",), {"scaler": _SCALER}),
]


@pytest.mark.oracle
@pytest.mark.parametrize(("name", "args", "kwargs"), PLUGIN_CONSTRUCTORS, ids=lambda v: repr(v)[:30])
def test_oracle_plugin_constructors(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    lightning = pytest.importorskip("pytorch_lightning.plugins")
    import fulgor.precision

    expected = _constructed(lambda: getattr(lightning, name)(*args, **kwargs))
    actual = _constructed(lambda: getattr(fulgor.precision, name)(*args, **kwargs))
    if name == "FSDPPrecision" and len(expected) == 4:
        # Lightning's FSDPPrecision has no `device` (it autocasts on CUDA only); fulgor's runs FSDP on CPU as well.
        assert actual[:2] + actual[3:] == expected[:2] + expected[3:]
        assert actual[2] == ("cuda" if torch.cuda.is_available() else "cpu")
    else:
        assert actual == expected
    for cls_name in ("Precision", "DoublePrecision", "HalfPrecision", "MixedPrecision", "FSDPPrecision"):
        ours, theirs = getattr(fulgor.precision, cls_name), getattr(lightning, cls_name)
        ours_params = list(inspect.signature(ours).parameters)
        assert ours_params[: len(inspect.signature(theirs).parameters)] == list(inspect.signature(theirs).parameters)


def test_fsdp_precision_behaves_as_its_name() -> None:
    true16 = FSDPPrecision("bf16-true", device="cpu")
    assert (true16.scaler, true16.converts_input, true16.changes_compute) == (None, True, True)
    assert true16.convert_input(torch.ones(2)).dtype == torch.bfloat16
    full = FSDPPrecision("32-true", device="cpu")
    assert (full.converts_input, full.changes_compute, full.state_dict()) == (False, False, {})
    mixed = FSDPPrecision("16-mixed", device="cpu")
    assert isinstance(mixed.scaler, torch.amp.GradScaler)
    assert mixed.checkpoint_key == "FSDPPrecision"
    with mixed.autocast():
        assert torch.get_autocast_dtype("cpu") == torch.float16
    config = mixed.mixed_precision_config  # Lightning's FSDP `MixedPrecision`, as its FSDPPrecision returns
    assert type(config).__name__ == "MixedPrecision"
    assert (config.param_dtype, config.reduce_dtype, config.buffer_dtype) == (torch.float16,) * 3
    assert select_precision("bf16-mixed", "cpu", sharded=True).precision == "bf16-mixed"


# ------------------------------------------------------------------------------------------------------- numerics


# ------------------------------------------------------------------------------------------------------- numerics


def test_32_true_is_free() -> None:
    precision = select_precision("32-true", "cpu")
    assert precision.autocast() is precision.autocast()  # one shared nullcontext: nothing allocated per step
    assert precision.forward_context() is precision.autocast()
    batch = {"x": torch.ones(2, dtype=torch.float64)}
    assert precision.convert_input(batch) is batch
    module = nn.Linear(2, 2)
    assert precision.convert_module(module) is module
    loss = torch.tensor(3.0)
    assert precision.scale_loss(loss) is loss


def test_bf16_mixed_autocast_on_cpu() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(4, 3)
    x = torch.randn(2, 4)
    with select_precision("bf16-mixed", "cpu").autocast():
        out = layer(x)
    assert out.dtype == torch.bfloat16
    assert layer.weight.dtype == torch.float32  # mixed precision keeps fp32 weights
    assert torch.allclose(out.float(), layer(x), atol=0.05)
    assert layer(x).dtype == torch.float32  # autocast ends with the block


class Pair(NamedTuple):
    a: torch.Tensor
    b: Any


@dataclasses.dataclass
class Batch:
    x: torch.Tensor
    label: torch.Tensor
    name: str = "b"


def nested_batch() -> dict[str, Any]:
    return {
        "list": [torch.ones(2), torch.arange(3)],
        "tuple": (torch.zeros(1, dtype=torch.float16),),
        "pair": Pair(torch.ones(1), [torch.ones(1, dtype=torch.bfloat16), 7]),
        "ordered": OrderedDict(y=torch.ones(1)),
        "default": defaultdict(list, z=torch.ones(1)),
        "dataclass": Batch(torch.ones(1), torch.tensor([1])),
        "mask": torch.tensor([True]),
        "text": "hello",
    }


def test_64_true_converts_module_and_inputs() -> None:
    precision = select_precision(64, "cpu")
    layer = precision.convert_module(nn.Linear(2, 2))
    assert {p.dtype for p in layer.parameters()} == {torch.float64}
    batch = precision.convert_input(nested_batch())
    assert batch["list"][0].dtype == torch.float64
    assert batch["list"][1].dtype == torch.int64  # integer tensors keep their dtype
    assert batch["tuple"][0].dtype == torch.float64
    assert isinstance(batch["tuple"], tuple)
    assert isinstance(batch["pair"], Pair)
    assert batch["pair"].a.dtype == torch.float64
    assert batch["pair"].b[0].dtype == torch.float64
    assert batch["pair"].b[1] == 7
    assert type(batch["ordered"]) is OrderedDict
    assert batch["ordered"]["y"].dtype == torch.float64
    assert type(batch["default"]) is defaultdict
    assert batch["default"].default_factory is list
    assert batch["default"]["z"].dtype == torch.float64
    assert isinstance(batch["dataclass"], Batch)
    assert (batch["dataclass"].x.dtype, batch["dataclass"].label.dtype) == (torch.float64, torch.int64)
    assert batch["mask"].dtype == torch.bool
    assert batch["text"] == "hello"
    out = layer(batch["list"][0])
    assert out.dtype == torch.float64


@pytest.mark.parametrize(
    ("value", "dtype"), [("64-true", torch.float64), ("16-true", torch.float16), ("bf16-true", torch.bfloat16)]
)
def test_true_precisions_set_default_dtype_in_forward(value: str, dtype: torch.dtype) -> None:
    precision = select_precision(value, "cpu")
    context = precision.autocast()
    with context:
        assert torch.zeros(1).dtype == dtype
        with context:  # the shared context nests
            assert torch.get_default_dtype() == dtype
        assert torch.get_default_dtype() == dtype
    assert torch.get_default_dtype() == torch.float32
    with pytest.raises(RuntimeError, match="boom"), context:
        raise RuntimeError("boom")
    assert torch.get_default_dtype() == torch.float32


@pytest.mark.parametrize(("value", "dtype"), [("16-true", torch.float16), ("bf16-true", torch.bfloat16)])
def test_half_true_converts_module_and_inputs(value: str, dtype: torch.dtype) -> None:
    precision = select_precision(value, "cpu")
    layer = precision.convert_module(nn.Linear(2, 2))
    assert layer.weight.dtype == dtype
    assert precision.convert_input([torch.ones(1), torch.tensor([1])])[0].dtype == dtype
    assert precision.convert_input([torch.ones(1), torch.tensor([1])])[1].dtype == torch.int64


def quadratic_step(precision: Precision, optimizer: torch.optim.Optimizer, weight: nn.Parameter) -> Any:
    """One step on loss = weight**2 (grad 2*weight) with a closure like the loop's: scale, backward, unscale."""
    seen_grads: list[float] = []

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = (weight**2).sum()
        precision.scale_loss(loss).backward()
        precision.unscale_gradients(optimizer)
        assert weight.grad is not None
        seen_grads.append(float(weight.grad))
        return loss

    precision.optimizer_step(optimizer, closure)
    return seen_grads


def test_optimizer_step_without_scaler() -> None:
    weight = nn.Parameter(torch.tensor([1.0]))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    grads = quadratic_step(select_precision("32-true", "cpu"), optimizer, weight)
    assert grads == [2.0]
    assert weight.item() == pytest.approx(0.8)


def test_optimizer_step_passes_closure_to_lbfgs_without_scaler() -> None:
    weight = nn.Parameter(torch.tensor([1.0]))
    optimizer = torch.optim.LBFGS([weight], lr=1.0, max_iter=5)
    quadratic_step(select_precision("bf16-mixed", "cpu"), optimizer, weight)
    assert abs(weight.item()) < 1e-4  # LBFGS solves the quadratic: it called the closure itself


def fp16_scaler_on_cpu() -> MixedPrecision:
    """A real fp16 GradScaler on CPU (torch supports it) to exercise the scaler path without CUDA."""
    return MixedPrecision("16-mixed", "cpu")


def test_scaler_step_unscales_before_hooks_and_steps() -> None:
    precision = fp16_scaler_on_cpu()
    assert precision.scaler is not None
    assert precision.scale_loss(torch.tensor(1.0)).item() == 65536.0
    weight = nn.Parameter(torch.tensor([1.0]))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    grads = quadratic_step(precision, optimizer, weight)
    assert grads == [2.0]  # the closure saw unscaled gradients (for clipping / on_before_optimizer_step)
    assert weight.item() == pytest.approx(0.8)
    assert precision.state_dict()["_growth_tracker"] == 1
    grads = quadratic_step(precision, optimizer, weight)  # unscale_ again next step: the per-step state was reset
    assert grads == [pytest.approx(1.6)]
    assert weight.item() == pytest.approx(0.64)


def test_scaler_skips_step_on_inf_and_backs_off() -> None:
    precision = fp16_scaler_on_cpu()
    weight = nn.Parameter(torch.tensor([1.0]))
    optimizer = torch.optim.SGD([weight], lr=0.1)

    def closure() -> torch.Tensor:
        loss = (weight * float("inf")).sum()
        precision.scale_loss(loss).backward()
        return loss

    precision.optimizer_step(optimizer, closure)
    assert weight.item() == 1.0
    assert precision.state_dict()["scale"] == 32768.0


def test_scaler_skips_step_when_closure_returns_none() -> None:
    precision = fp16_scaler_on_cpu()
    weight = nn.Parameter(torch.tensor([1.0]))
    weight.grad = torch.tensor([5.0])
    optimizer = torch.optim.SGD([weight], lr=0.1)
    assert precision.optimizer_step(optimizer, lambda: None) is None
    assert weight.item() == 1.0
    assert precision.state_dict()["_growth_tracker"] == 0


def test_scaler_manual_optimization_steps_with_none_closure() -> None:
    precision = fp16_scaler_on_cpu()
    weight = nn.Parameter(torch.tensor([1.0]))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    precision.scale_loss((weight**2).sum()).backward()  # manual_backward
    precision.optimizer_step(optimizer, lambda: None, automatic_optimization=False)
    assert weight.item() == pytest.approx(0.8)  # unscaled by optimizer_step itself
    assert precision.state_dict()["_growth_tracker"] == 1


def test_scaler_rejects_lbfgs() -> None:
    precision = fp16_scaler_on_cpu()
    optimizer = torch.optim.LBFGS([nn.Parameter(torch.tensor([1.0]))])
    with pytest.raises(MisconfigurationException) as excinfo:
        precision.optimizer_step(optimizer, lambda: None)
    assert str(excinfo.value) == "AMP and the LBFGS optimizer are not compatible."


def test_scaler_state_round_trip() -> None:
    precision = fp16_scaler_on_cpu()
    weight = nn.Parameter(torch.tensor([1.0]))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    quadratic_step(precision, optimizer, weight)
    state = precision.state_dict()
    assert state == {
        "scale": 65536.0,
        "growth_factor": 2.0,
        "backoff_factor": 0.5,
        "growth_interval": 2000,
        "_growth_tracker": 1,
    }
    restored = fp16_scaler_on_cpu()
    restored.load_state_dict(state)
    assert restored.state_dict() == state


def test_scaler_leaves_fused_style_optimizers_alone() -> None:
    precision = fp16_scaler_on_cpu()
    weight = nn.Parameter(torch.tensor([1.0]))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    optimizer._step_supports_amp_scaling = True  # type: ignore[attr-defined]
    weight.grad = torch.tensor([65536.0 * 2])
    precision.unscale_gradients(optimizer)
    assert weight.grad.item() == 65536.0 * 2  # such optimizers unscale inside their own step


@pytest.mark.parametrize("value", ["16-mixed", "bf16-mixed"])
def test_fused_optimizers_cannot_clip_under_amp(value: str) -> None:
    precision = MixedPrecision(value, "cpu")
    optimizer = torch.optim.SGD([nn.Parameter(torch.tensor([1.0]))], lr=0.1)
    precision.check_gradient_clipping(optimizer, 1.0)  # a plain optimizer is fine
    optimizer._step_supports_amp_scaling = True  # type: ignore[attr-defined]
    precision.check_gradient_clipping(optimizer, 0.0)  # no clipping requested: fine
    with pytest.raises(RuntimeError) as excinfo:
        precision.check_gradient_clipping(optimizer, 1.0)
    assert str(excinfo.value) == (
        "The current optimizer, SGD, does not allow for gradient clipping because it performs unscaling of gradients"
        " internally. HINT: Are you using a 'fused' optimizer?"
    )
    select_precision("32-true", "cpu").check_gradient_clipping(optimizer, 1.0)  # only AMP cares


# ------------------------------------------------------------------------------------------------------------ gpu

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@requires_cuda
def test_16_mixed_on_cuda() -> None:
    precision = select_precision("16-mixed", "cuda")
    assert isinstance(precision.scaler, torch.amp.GradScaler)
    layer = nn.Linear(4, 3).cuda()
    with precision.autocast():
        out = layer(torch.randn(2, 4, device="cuda"))
    assert out.dtype == torch.float16
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        with precision.autocast():
            loss = layer(torch.ones(2, 4, device="cuda")).float().pow(2).mean()
        precision.scale_loss(loss).backward()
        precision.unscale_gradients(optimizer)
        return loss

    precision.optimizer_step(optimizer, closure)
    state = precision.state_dict()
    assert state["_growth_tracker"] == 1
    restored = select_precision("16-mixed", "cuda")
    restored.load_state_dict(state)
    assert restored.state_dict() == state


@pytest.mark.gpu
@requires_cuda
def test_bf16_mixed_on_cuda_has_no_scaler() -> None:
    precision = select_precision("bf16-mixed", "cuda")
    assert precision.scaler is None
    with precision.autocast():
        out = nn.Linear(4, 3).cuda()(torch.randn(2, 4, device="cuda"))
    assert out.dtype == torch.bfloat16


# -------------------------------------------------------------------------------------- oracle: pytorch-lightning

ORACLE_VALUES = [v for v in ALLOWED_PRECISIONS if not str(v).startswith("transformer")] + [None, "fp8", True, "BF16"]


@pytest.mark.oracle
@pytest.mark.parametrize("value", ORACLE_VALUES, ids=repr)
def test_oracle_precision_on_cpu(value: Any) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    kwargs = {} if value is None else {"precision": value}
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        try:
            trainer = pl.Trainer(
                accelerator="cpu",
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                **kwargs,
            )
        except Exception as error:
            expected: Any = (type(error).__name__, str(error))
        else:
            expected = (trainer.precision, type(trainer.precision_plugin).__qualname__)
    expected_warnings = [str(w.message) for w in record if "precision" in str(w.message)]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        try:
            precision = select_precision(value, "cpu")
        except Exception as error:
            actual: Any = (type(error).__name__, str(error))
        else:
            actual = (precision.name, precision.checkpoint_key)
    assert actual == expected
    assert [str(w.message) for w in record] == expected_warnings


@pytest.mark.oracle
def test_oracle_amp_info_message(fulgor_log: Any, caplog: pytest.LogCaptureFixture) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    with caplog.at_level(logging.INFO), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pl.Trainer(accelerator="cpu", precision="bf16-mixed", logger=False, enable_progress_bar=False)
    assert "Using bfloat16 Automatic Mixed Precision (AMP)" in caplog.messages
    caplog.clear()
    select_precision("bf16-mixed", "cpu")
    assert caplog.messages == ["Using bfloat16 Automatic Mixed Precision (AMP)"]


@pytest.mark.oracle
def test_oracle_scaler_state_layout() -> None:
    pytest.importorskip("pytorch_lightning")
    from pytorch_lightning.plugins.precision import MixedPrecision as LightningMixedPrecision

    expected = LightningMixedPrecision("16-mixed", "cpu")
    actual = fp16_scaler_on_cpu()
    assert actual.state_dict() == expected.state_dict()
    actual.load_state_dict(expected.state_dict())  # a Lightning checkpoint's "MixedPrecision" entry loads
    assert actual.checkpoint_key == type(expected).__qualname__


@pytest.mark.gpu
@pytest.mark.oracle
@requires_cuda
@pytest.mark.parametrize("value", ORACLE_VALUES, ids=repr)
def test_oracle_precision_on_cuda(value: Any) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    kwargs = {} if value is None else {"precision": value}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            trainer = pl.Trainer(accelerator="cuda", devices=1, logger=False, enable_progress_bar=False, **kwargs)
        except Exception as error:
            expected: Any = (type(error).__name__, str(error))
        else:
            plugin = trainer.precision_plugin
            expected = (trainer.precision, type(plugin).__qualname__, type(getattr(plugin, "scaler", None)))
        try:
            precision = select_precision(value, "cuda")
        except Exception as error:
            actual: Any = (type(error).__name__, str(error))
        else:
            actual = (precision.name, precision.checkpoint_key, type(precision.scaler))
    assert actual == expected


@pytest.mark.oracle
@pytest.mark.parametrize(
    ("name", "args"),
    [("Precision", ()), ("DoublePrecision", ()), ("HalfPrecision", ("bf16-true",)), ("HalfPrecision", ()),
     ("MixedPrecision", ("bf16-mixed", "cpu")), ("FSDPPrecision", ("bf16-true",)), ("FSDPPrecision", ("bf16-mixed",))],
)  # fmt: skip
def test_oracle_init_contexts(name: str, args: tuple[Any, ...]) -> None:
    lightning = pytest.importorskip("pytorch_lightning.plugins")
    import fulgor.precision

    dtypes = []
    for plugin in (getattr(lightning, name)(*args), getattr(fulgor.precision, name)(*args)):
        with plugin.tensor_init_context():
            tensor_dtype = torch.zeros(1).dtype
        with plugin.module_init_context():
            module_dtype = nn.Linear(2, 2).weight.dtype
        dtypes.append((tensor_dtype, module_dtype, torch.get_default_dtype()))
    assert dtypes[1] == dtypes[0]
    assert dtypes[1][2] == torch.float32  # restored on exit


def test_a_scaler_with_bf16_mixed_is_refused_as_both_lightning_apis_refuse_it() -> None:
    for kind in (ValueError, MisconfigurationException):  # Lightning Fabric's type, Lightning's Trainer's type
        with pytest.raises(kind, match=r"`precision='bf16-mixed'` does not use a scaler, found"):
            MixedPrecision("bf16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))
    assert MixedPrecision("bf16-mixed", "cpu").scaler is None


def test_clip_gradients_by_lightnings_names_and_defaults() -> None:
    layer = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)

    def fresh_grads() -> None:
        for param in layer.parameters():
            param.grad = torch.full_like(param, 2.0)

    precision = Precision()
    fresh_grads()
    precision.clip_gradients(optimizer)  # clip_val defaults to 0: nothing is clipped, as in Lightning
    assert all(torch.all(p.grad == 2.0) for p in layer.parameters())
    precision.clip_gradients(optimizer, clip_val=0.5, gradient_clip_algorithm="value")
    assert all(torch.all(p.grad == 0.5) for p in layer.parameters())
    fresh_grads()
    precision.clip_grad_by_norm(optimizer, 1.0)
    total = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in layer.parameters()]))
    assert total.item() == pytest.approx(1.0, rel=1e-5)
    with MixedPrecision("bf16-mixed", "cpu").autocast_context_manager():
        assert layer(torch.ones(1, 3)).dtype == torch.bfloat16
