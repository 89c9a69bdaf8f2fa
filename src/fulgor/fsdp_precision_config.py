"""The dtypes FSDP computes and reduces in for a precision: Lightning's `mixed_precision_config` (torch's FSDP
`MixedPrecision`), its translation to FSDP2's `MixedPrecisionPolicy`, and the loss scaler of a sharded "16-mixed"."""

from __future__ import annotations

from typing import Any

import torch

from fulgor.rank import rank_zero_warn

__all__ = ["mixed_precision_config", "sharded_scaler", "to_fsdp2_policy"]

_DTYPES = {"16": torch.float16, "bf16": torch.bfloat16, "32": torch.float32}


def mixed_precision_config(precision: str) -> Any:
    """torch's FSDP `MixedPrecision` with parameters, gradient reduction and buffers in the precision's dtype (the
    object Lightning's `FSDPPrecision.mixed_precision_config` returns); warns for "16-true"/"bf16-true", whose
    sharded full-precision copy of the weights stays in memory."""
    from torch.distributed.fsdp import MixedPrecision

    if precision in ("16-true", "bf16-true"):
        rank_zero_warn(
            f"FSDP with `{precision}` enables computation in lower precision. FSDP will always retain a"
            " full-precision copy of the model parameters for sharding."
        )
    dtype = _DTYPES.get(precision.split("-")[0])
    if dtype is None:
        raise ValueError(f"Was unable to infer precision type, received {precision!r}.")
    return MixedPrecision(param_dtype=dtype, reduce_dtype=dtype, buffer_dtype=dtype)


def to_fsdp2_policy(config: Any) -> Any:
    """`config` as the `mp_policy` of FSDP2's `fully_shard`: a `MixedPrecisionPolicy` is used as it is; an FSDP1
    `MixedPrecision` gives its parameter and reduction dtypes and `cast_forward_inputs` (FSDP2 has no buffer dtype:
    buffers keep theirs).

    Raises:
        TypeError: `config` is neither.
    """
    from torch.distributed.fsdp import MixedPrecision, MixedPrecisionPolicy

    if isinstance(config, MixedPrecisionPolicy):
        return config
    if not isinstance(config, MixedPrecision):
        raise TypeError(
            f"`FSDPStrategy(mixed_precision={config!r})` is invalid: pass a"
            " `torch.distributed.fsdp.MixedPrecision` or a `torch.distributed.fsdp.MixedPrecisionPolicy`."
        )
    return MixedPrecisionPolicy(
        param_dtype=config.param_dtype, reduce_dtype=config.reduce_dtype, cast_forward_inputs=True
    )


def sharded_scaler(device: str) -> Any:
    """torch's `ShardedGradScaler` for `device`: it finds inf/nan in sharded gradients across every rank."""
    from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

    return ShardedGradScaler(device=device)
