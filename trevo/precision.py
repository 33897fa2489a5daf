"""Mixed precision (``train.precision``): bf16 or fp16 compute under ``torch.autocast``, float32 weights.

Micikevicius et al. 2018, "Mixed Precision Training" (arXiv 1710.03740): the weights and the optimizer
state stay in float32 (the master copy every update is applied to), the matrix products run in 16 bits,
and with float16, whose range is narrow, the loss is multiplied by a scale before the backward pass so
that small gradients do not underflow (the scale is divided out before clipping and the update, and
halved whenever a step's gradients overflow: ``torch.amp.GradScaler``). bfloat16 has float32's range
and needs no scaling.

What stays in float32: autocast runs only the matrix products (linear, matmul, bmm, convolutions,
scaled dot-product attention) in 16 bits; the loss is computed from float32 logits
(``task_loss_fp32``), and the optimizer step, gradient clipping and norm of the gradients are
float32 by construction (they act on the float32 master weights).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from trevo.dtypes import AUTOCAST_DTYPES
from trevo.validation import ConfigError


def check_precision(precision: str, dtype: str, device: str) -> None:
    """Refuse the combinations that are not mixed precision: autocast over weights that are not
    float32 (there is then no float32 master copy), and fp16 autocast on a CPU torch build lacking it."""
    if precision == "fp32":
        return
    if dtype != "float32":
        raise ConfigError(f"train.precision={precision} keeps float32 master weights, so it needs train.dtype=float32, "
                          f"got train.dtype={dtype}; for pure {dtype} training set train.precision=fp32")
    kind = torch.device(device).type
    if not torch.amp.is_autocast_available(kind):
        raise ConfigError(f"train.precision={precision}: torch {torch.__version__} has no autocast on {kind}; use "
                          f"train.precision=fp32")


def autocast(device: str, precision: str) -> contextlib.AbstractContextManager:
    """The context the forward pass runs in: autocast to the precision's type, or nothing for fp32."""
    dtype = AUTOCAST_DTYPES[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def grad_scaler(device: str, precision: str) -> torch.amp.GradScaler | None:
    """A loss scaler for fp16 (None otherwise: bf16 and fp32 gradients do not underflow)."""
    return torch.amp.GradScaler(torch.device(device).type) if precision == "fp16" else None


def scaler_state(scaler: torch.amp.GradScaler | None) -> dict[str, Any] | None:
    """The scaler's state as JSON numbers (the scale and its growth tracker), for the checkpoint."""
    if scaler is None:
        return None
    return {k: float(v) if isinstance(v, float) else int(v) for k, v in scaler.state_dict().items()}


def widened(logits: torch.Tensor) -> torch.Tensor:
    """16-bit logits (autocast's) as float32; float32 and float64 ones as they are."""
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


def task_loss_fp32(task: Any, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The task's loss from float32 logits, outside autocast: log-softmax over a vocabulary in 16 bits
    loses the small probabilities the loss is made of."""
    with torch.autocast(device_type=logits.device.type, enabled=False):
        return task.loss(widened(logits), batch)
