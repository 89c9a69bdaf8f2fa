"""Lightning features fulgor refuses (XLA/TPU, DeepSpeed, bitsandbytes, transformer-engine, Lightning AI's services,
...): the classes and functions exist, so a project importing them at the top of a file still loads, and constructing
or calling one raises `NotProvidedError` naming what it needs and what fulgor offers instead. Generated from
`REFUSED`."""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["REFUSED", "NotProvidedError", "Refusal", "refusal_message"]


class Refusal(NamedTuple):
    """Why a Lightning name is refused and what to use instead."""

    needs: str  # what the feature needs that fulgor does not support
    instead: str  # what fulgor offers for the same job
    kind: str = "class"  # "class" (construction raises) or "function" (a call raises)


_XLA = "TPUs through `torch_xla`"
_NO_TPU = "run on GPUs or CPUs: `accelerator='gpu'` / `'cpu'`"
_DEEPSPEED = "the `deepspeed` package"
_FSDP = "`strategy='fsdp'` (fully sharded data parallel on torch.distributed)"
_FULL_CHECKPOINTS = "`strategy='fsdp'`, whose checkpoints already hold the full state dict (nothing to convert)"
_SUMMARY = "the ModelSummary callback (or `summarize(model)` from `utilities.model_summary`)"
_REGISTRY = "Lightning AI's model registry (the `litmodels` package and an account)"
_SERVE = "a FastAPI/uvicorn server started at the end of fit (the `fastapi`, `uvicorn` and `requests` packages)"
_EXPORT = "`model.to_torchscript()` or `model.to_onnx()`, then test the exported model with your serving stack"
_LOCAL_CKPT = "a local path or fsspec URL as `ckpt_path=` / `load_from_checkpoint(path)`"

REFUSED: dict[str, Refusal] = {
    # DeepSpeed
    "DeepSpeedStrategy": Refusal(_DEEPSPEED, _FSDP),
    "DeepSpeedPrecision": Refusal(_DEEPSPEED, "`precision='bf16-mixed'` or `'16-mixed'` with `strategy='fsdp'`"),
    "remove_module_hooks": Refusal(_DEEPSPEED, _FSDP, "function"),
    "convert_zero_checkpoint_to_fp32_state_dict": Refusal(_DEEPSPEED, _FULL_CHECKPOINTS, "function"),
    "ds_checkpoint_dir": Refusal(_DEEPSPEED, _FULL_CHECKPOINTS, "function"),
    "DeepSpeedSummary": Refusal(_DEEPSPEED, _SUMMARY),
    "DeepSpeedLayerSummary": Refusal(_DEEPSPEED, _SUMMARY),
    "deepspeed_param_size": Refusal(_DEEPSPEED, _SUMMARY, "function"),
    # XLA / TPU
    "XLAAccelerator": Refusal(_XLA, _NO_TPU),
    "XLAPrecision": Refusal(_XLA, "`precision='bf16-mixed'` or `'bf16-true'` on GPUs"),
    "XLACheckpointIO": Refusal(_XLA, "the default checkpoint saving (`fulgor.checkpoint_io.TorchCheckpointIO`)"),
    "XLAEnvironment": Refusal(_XLA, "the cluster environments fulgor detects (torchrun, SLURM, its own launcher)"),
    "XLAProfiler": Refusal(_XLA, "`profiler='pytorch'` (PyTorchProfiler)"),
    "XLAStrategy": Refusal(_XLA, "`strategy='ddp'` on GPUs or CPUs"),
    "SingleDeviceXLAStrategy": Refusal(_XLA, "one GPU or the CPU (`devices=1`)"),
    "XLAFSDPStrategy": Refusal(_XLA, _FSDP),
    "_XLALauncher": Refusal(_XLA, "`strategy='ddp'` (its launchers start the processes)"),
    # quantized / FP8 precision
    "BitsandbytesPrecision": Refusal(
        "the `bitsandbytes` package (4/8-bit quantized layers)", "`precision='bf16-true'` or `'16-true'`"
    ),
    "TransformerEnginePrecision": Refusal(
        "NVIDIA's `transformer_engine` package (FP8 layers)", "`precision='bf16-mixed'` or `'16-mixed'`"
    ),
    # parallelism fulgor does not implement
    "ModelParallelStrategy": Refusal(
        "tensor parallelism through DTensor device meshes", f"{_FSDP}, which shards parameters, gradients and states"
    ),
    # serving checks
    "ServableModule": Refusal(_SERVE, _EXPORT),
    "ServableModuleValidator": Refusal(_SERVE, _EXPORT),
    # Lightning AI's services
    "LitLogger": Refusal(
        "the `litlogger` package and a Lightning AI account",
        "CSVLogger, TensorBoardLogger, MLFlowLogger or WandbLogger",
    ),
    "download_model_from_registry": Refusal(_REGISTRY, _LOCAL_CKPT, "function"),
    "find_model_local_ckpt_path": Refusal(_REGISTRY, _LOCAL_CKPT, "function"),
}


class NotProvidedError(ImportError):
    """A Lightning feature fulgor does not provide was used. An ImportError, as Lightning raises when the package a
    feature needs is missing, so code that falls back on ImportError keeps working."""


def refusal_message(name: str) -> str:
    """What using the refused Lightning name `name` says: what it needs and what to use instead.

    Args:
        name: a key of `REFUSED`.

    Returns:
        The message.

    Raises:
        KeyError: `name` is not refused (the message lists the refused names).
    """
    if name not in REFUSED:
        raise KeyError(f"refusal_message({name!r}): not a refused Lightning name; refused names: {sorted(REFUSED)}")
    refusal = REFUSED[name]
    return f"fulgor does not provide `{name}`: it needs {refusal.needs}. Use {refusal.instead} instead."


def _refused_class(name: str) -> type:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        raise NotProvidedError(refusal_message(name), name=name)

    namespace = {"__init__": __init__, "__module__": __name__, "__qualname__": name, "__doc__": refusal_message(name)}
    if name.endswith("Accelerator"):  # code asks `XLAAccelerator.is_available()` before choosing: it is not
        namespace["is_available"] = staticmethod(lambda: False)
    return type(name, (), namespace)


def _refused_function(name: str) -> Any:
    def refused(*args: Any, **kwargs: Any) -> Any:
        raise NotProvidedError(refusal_message(name), name=name)

    refused.__name__ = refused.__qualname__ = name
    refused.__doc__ = refusal_message(name)
    return refused


# The names themselves, made once from the table (no per-name code to keep in step with it).
globals().update(
    {
        name: _refused_function(name) if refusal.kind == "function" else _refused_class(name)
        for name, refusal in REFUSED.items()
    }
)
