"""The polynomial feature maps of Based and ReBased: φ(q)·φ(k) is a polynomial of q·k, so linear
attention through φ is a kernel attention of constant state.

Arora et al., "Simple linear attention language models balance the recall-throughput tradeoff"
(Based, arXiv:2402.18668): the 2nd-order Taylor expansion of exp,
φ(q)·φ(k) = 1 + q·k/√d + (q·k)²/(2d). Aksenov et al., "Linear Transformers with Learnable Kernel
Functions are Better In-Context Models" (ReBased, arXiv:2402.10644): φ(q)·φ(k) = (q·k)²/d after a
learnable affine normalisation of q and k. The quadratic part is stored once per unordered channel
pair (d(d+1)/2 features, the diagonal scaled by 1/√2), not as the full d² outer product.
"""

from __future__ import annotations

import math

import torch


def _pairs(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_i² for every i, x_i x_j for every i < j) over the last dimension."""
    d = x.shape[-1]
    i, j = torch.triu_indices(d, d, offset=1, device=x.device)
    return x * x, x[..., i] * x[..., j]


def taylor_features(x: torch.Tensor) -> torch.Tensor:
    """Based's φ ``[..., d] -> [..., 1 + d + d(d+1)/2]`` with φ(q)·φ(k) = 1 + q·k/√d + (q·k)²/(2d)."""
    d = x.shape[-1]
    square, cross = _pairs(x)
    return torch.cat([torch.ones_like(x[..., :1]), x / d ** 0.25, square / math.sqrt(2 * d), cross / math.sqrt(d)],
                     dim=-1)


def rebased_features(x: torch.Tensor) -> torch.Tensor:
    """ReBased's φ (after its normalisation) ``[..., d] -> [..., d(d+1)/2]`` with φ(q)·φ(k) = (q·k)²/d."""
    d = x.shape[-1]
    square, cross = _pairs(x)
    return torch.cat([square / math.sqrt(d), cross * math.sqrt(2 / d)], dim=-1)
