"""Model summary: human-readable counts, the exact table, the ModelSummary callback, and oracle comparisons with
Lightning 2.6.6's `utilities.model_summary.summarize`."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

from fulgor.callbacks.model_summary import ModelSummary as ModelSummaryCallback
from fulgor.summary import ModelSummary, get_human_readable_count, summarize

# ---- model builders: each takes the base class so the same layers can be built as an nn.Module (fulgor) and as a
# pl.LightningModule (oracle), with identical seeds.


def spec_model(base: type[nn.Module], example: bool = True) -> nn.Module:
    """The model of lightning-behavior.md §9.4."""

    class SpecModel(base):  # type: ignore[valid-type,misc]
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 10))
            self.frozen = nn.Linear(10, 10)
            self.frozen.requires_grad_(False)
            self.bn = nn.BatchNorm1d(10)
            if example:
                self.example_input_array = torch.zeros(4, 256)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bn(self.frozen(self.encoder(x)))

    torch.manual_seed(0)
    return SpecModel()


def root_param_model(base: type[nn.Module]) -> nn.Module:
    class RootParam(base):  # type: ignore[valid-type,misc]
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(3, 7))
            self.layer = nn.Linear(7, 2)
            self.example_input_array = torch.ones(5, 7)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # the matmul on the root counts in Total Flops but in no row
            return self.layer(x) + (x @ self.scale.T).sum()

    torch.manual_seed(0)
    return RootParam()


def frozen_and_eval_model(base: type[nn.Module]) -> nn.Module:
    class FrozenEval(base):  # type: ignore[valid-type,misc]
        def __init__(self) -> None:
            super().__init__()
            self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU())
            self.backbone.requires_grad_(False)
            self.dropout = nn.Dropout(0.5)
            self.dropout.eval()
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(8 * 6 * 6, 1200))
            self.head[1].eval()
            self.example_input_array = torch.zeros(2, 3, 8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.dropout(self.backbone(x)))

    torch.manual_seed(0)
    return FrozenEval()


def tuple_input_model(base: type[nn.Module]) -> nn.Module:
    class TwoInputs(base):  # type: ignore[valid-type,misc]
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 3)
            self.b = nn.Bilinear(3, 6, 2)
            self.rnn = nn.LSTM(2, 5, batch_first=True)
            self.unused = nn.Linear(1, 1)
            self.example_input_array = (torch.zeros(2, 9, 4), torch.zeros(2, 9, 6))

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            out, _ = self.rnn(self.b(self.a(x), y))
            return out

    torch.manual_seed(0)
    return TwoInputs()


def dict_input_model(base: type[nn.Module]) -> nn.Module:
    class DictInputs(base):  # type: ignore[valid-type,misc]
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(6, 6)
            self.attn = nn.MultiheadAttention(6, 2, batch_first=True)
            self.example_input_array = {"x": torch.zeros(1, 3, 6), "mask": None}

        def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
            h = self.proj(x)
            return self.attn(h, h, h, need_weights=False)[0]

    torch.manual_seed(0)
    return DictInputs()


def deep_model(base: type[nn.Module]) -> nn.Module:
    class Deep(base):  # type: ignore[valid-type,misc]
        def __init__(self) -> None:
            super().__init__()
            self.block = nn.Sequential(nn.Sequential(nn.Linear(2000, 3000), nn.GELU()), nn.Linear(3000, 1))
            self.example_input_array = torch.zeros(3, 2000)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.block(x)

    torch.manual_seed(0)
    return Deep()


# ---- get_human_readable_count ----


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (0, "0  "),
        (999, "999  "),
        (1000, "1.0 K"),
        (1234, "1.2 K"),
        (132000, "132 K"),
        (1000000, "1.0 M"),
        (12345678, "12.3 M"),
        (2e6, "2.0 M"),
        (3e9, "3.0 B"),
        (4e14, "400 T"),
        (2e12, "2.0 T"),
        (5e15, "5,000 T"),
    ],
)
def test_human_readable_count(number: float, text: str) -> None:
    assert get_human_readable_count(number) == text  # type: ignore[arg-type]


def test_human_readable_count_rejects_negative() -> None:
    with pytest.raises(ValueError, match="got -1"):
        get_human_readable_count(-1)


# ---- the table ----

SPEC_TABLE = "\n".join(
    [
        "  | Name    | Type        | Params | Mode  | FLOPs | In sizes | Out sizes",
        "-------------------------------------------------------------------------------",
        "0 | encoder | Sequential  | 136 K  | train | 1.1 M | [4, 256] | [4, 10]  ",
        "1 | frozen  | Linear      | 110    | train | 800   | [4, 10]  | [4, 10]  ",
        "2 | bn      | BatchNorm1d | 20     | train | 0     | [4, 10]  | [4, 10]  ",
        "-------------------------------------------------------------------------------",
        "136 K     Trainable params",
        "110       Non-trainable params",
        "136 K     Total params",
        "0.547     Total estimated model params size (MB)",
        "6         Modules in train mode",
        "0         Modules in eval mode",
        "1.1 M     Total Flops",
    ]
)


def test_spec_table_exact() -> None:
    assert str(summarize(spec_model(nn.Module))) == SPEC_TABLE


def test_spec_table_without_example_input() -> None:
    text = str(summarize(spec_model(nn.Module, example=False)))
    assert text.splitlines()[:3] == [
        "  | Name    | Type        | Params | Mode  | FLOPs",
        "--------------------------------------------------------",
        "0 | encoder | Sequential  | 136 K  | train | 0    ",
    ]
    assert text.splitlines()[-1] == "0         Total Flops"


def test_properties() -> None:
    summary = ModelSummary(spec_model(nn.Module), max_depth=-1)
    assert summary.layer_names == ["encoder", "encoder.0", "encoder.1", "encoder.2", "frozen", "bn"]
    assert summary.layer_types == ["Sequential", "Linear", "ReLU", "Linear", "Linear", "BatchNorm1d"]
    assert summary.in_sizes == [[4, 256], [4, 256], [4, 512], [4, 512], [4, 10], [4, 10]]
    assert summary.out_sizes == [[4, 10], [4, 512], [4, 512], [4, 10], [4, 10], [4, 10]]
    assert summary.param_nums == [136714, 131584, 0, 5130, 110, 20]
    assert summary.total_parameters == 136844
    assert summary.trainable_parameters == 136734
    assert summary.total_layer_params == 136714 + 131584 + 5130 + 110 + 20
    assert summary.model_size == pytest.approx(136844 * 4e-6)
    assert summary.training_modes == [True] * 6
    assert summary.total_training_modes == {"train": 6, "eval": 0}
    assert summary.total_flops == 2 * 4 * (256 * 512 + 512 * 10 + 10 * 10)


def test_max_depth_validation() -> None:
    with pytest.raises(ValueError, match="`max_depth` can be -1, 0 or > 0, got -2"):
        ModelSummary(nn.Linear(1, 1), max_depth=-2)
    with pytest.raises(ValueError, match=r"`max_depth` can be -1, 0 or > 0, got temp\.$"):  # Lightning's text
        ModelSummary(nn.Linear(1, 1), max_depth="temp")  # type: ignore[arg-type]


def test_summarize_gives_each_layer_with_its_hook_removed() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Sequential(nn.Linear(4, 2)))
    model.example_input_array = torch.zeros(5, 3)  # type: ignore[assignment]
    layers = ModelSummary(model, max_depth=-1).summarize()
    assert list(layers) == ["0", "1", "2", "2.0"]
    assert [(layer.layer_type, layer.num_parameters) for layer in layers.values()] == [
        ("Linear", 16), ("ReLU", 0), ("Sequential", 10), ("Linear", 10)
    ]  # fmt: skip
    assert (layers["2.0"].in_size, layers["2.0"].out_size) == ([5, 4], [5, 2])
    assert all(layer._hook_handle is None for layer in layers.values())
    assert all(not module._forward_hooks for module in model.modules())


def test_forward_restores_modes_and_removes_hooks() -> None:
    model = frozen_and_eval_model(nn.Module)
    before = [m.training for m in model.modules()]
    summarize(model, max_depth=-1)
    assert [m.training for m in model.modules()] == before
    assert all(not m._forward_hooks for m in model.modules())
    assert model.backbone[1].num_batches_tracked.item() == 0  # ran in eval mode: BN statistics untouched


def test_precision_from_attached_trainer() -> None:
    model = spec_model(nn.Module)
    model._trainer = SimpleNamespace(precision="16-true")
    assert summarize(model).model_size == pytest.approx(136844 * 2e-6)
    model._trainer = SimpleNamespace(precision="64-true")
    assert summarize(model).model_size == pytest.approx(136844 * 8e-6)
    model._trainer = SimpleNamespace(precision="16-mixed")
    with pytest.warns(UserWarning, match="Precision 16-mixed is not supported by the model summary"):
        assert summarize(model).model_size == pytest.approx(136844 * 4e-6)


def test_lazy_parameters_count_zero_with_warning() -> None:
    model = nn.Sequential(nn.LazyLinear(3), nn.Linear(3, 2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert summarize(model).param_nums == [0, 8]
    assert any("UninitializedParameter" in str(w.message) for w in caught)


# ---- the callback ----


@pytest.fixture
def fulgor_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    logger = logging.getLogger("fulgor")
    # fulgor's logger stops propagating to the root logger (that caplog watches) when it installs its own handler.
    attach = not logger.propagate
    if attach:
        logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="fulgor")
    yield caplog
    if attach:
        logger.removeHandler(caplog.handler)


def test_callback_logs_table(fulgor_log: pytest.LogCaptureFixture) -> None:
    model = spec_model(nn.Module)
    ModelSummaryCallback().on_fit_start(SimpleNamespace(is_global_zero=True), model)  # type: ignore[arg-type]
    assert [r.getMessage() for r in fulgor_log.records] == ["\n" + SPEC_TABLE]


@pytest.mark.parametrize(("max_depth", "rank_zero"), [(0, True), (1, False)])
def test_callback_silent(max_depth: int, rank_zero: bool, fulgor_log: pytest.LogCaptureFixture) -> None:
    callback = ModelSummaryCallback(max_depth=max_depth)
    callback.on_fit_start(SimpleNamespace(is_global_zero=rank_zero), spec_model(nn.Module))  # type: ignore[arg-type]
    assert fulgor_log.records == []


def test_callback_max_depth(fulgor_log: pytest.LogCaptureFixture) -> None:
    ModelSummaryCallback(max_depth=-1).on_fit_start(SimpleNamespace(is_global_zero=True), deep_model(nn.Module))  # type: ignore[arg-type]
    names = [line.split("|")[1].strip() for line in fulgor_log.records[0].getMessage().splitlines()[3:7]]
    assert names == ["block", "block.0", "block.0.0", "block.0.1"]


# ---- oracle ----

ORACLE_MODELS: dict[str, tuple[Callable[[type[nn.Module]], nn.Module], int]] = {
    "spec": (spec_model, 1),
    "spec_no_example": (lambda base: spec_model(base, example=False), 1),
    "spec_all_depths": (spec_model, -1),
    "spec_depth_0": (spec_model, 0),
    "spec_no_example_all_depths": (lambda base: spec_model(base, example=False), -1),
    "root_param": (root_param_model, 1),
    "frozen_and_eval": (frozen_and_eval_model, 1),
    "frozen_and_eval_all_depths": (frozen_and_eval_model, -1),
    "tuple_inputs": (tuple_input_model, 1),
    "dict_inputs": (dict_input_model, -1),
    "deep_depth_2": (deep_model, 2),
    "deep_all_depths": (deep_model, -1),
}


@pytest.mark.oracle
@pytest.mark.parametrize("case", sorted(ORACLE_MODELS))
def test_matches_lightning(case: str) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    from pytorch_lightning.utilities.model_summary import summarize as pl_summarize

    build, max_depth = ORACLE_MODELS[case]
    ours: Any = summarize(build(nn.Module), max_depth=max_depth)
    theirs: Any = pl_summarize(build(pl.LightningModule), max_depth=max_depth)
    assert str(ours) == str(theirs)
    for name in ("layer_names", "layer_types", "in_sizes", "out_sizes", "param_nums", "training_modes"):
        assert getattr(ours, name) == getattr(theirs, name), name
    for name in ("total_parameters", "trainable_parameters", "total_layer_params", "model_size", "total_flops"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert ours.total_training_modes == theirs.total_training_modes
