"""Talking-heads attention (Shazeer et al. 2020, "Talking-Heads Attention", arXiv:2003.02436): learned
linear maps across the heads, on the logits before the softmax and on the weights after it.

Layout as ``trevo.ops.attention``: q ``[B, H, Tq, D]``, k, v ``[B, H, Tk, D]``, the queries at the last Tq
positions; ``bias`` an additive score bias of the output heads.
"""

from __future__ import annotations

import math

import torch

from trevo.ops.attention import attention_mask


def talking_heads_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, logits_mix: torch.Tensor,
                            weights_mix: torch.Tensor, *, causal: bool, bias: torch.Tensor | None = None,
                            key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """L = P_l · (q kᵀ/√d) mixed over heads, W = softmax(L + mask), U = P_w · W mixed over heads, out = U v
    (the paper's Algorithm: ``logits_mix`` P_l ``[H, H]`` maps the key heads' logits to the softmax heads,
    ``weights_mix`` P_w ``[H, H]`` the softmax heads' weights to the value heads). The mask is added after
    the logits are mixed, so a masked key stays masked in every head."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    logits = torch.einsum("bhij,hg->bgij", scores, logits_mix)
    mask = attention_mask(q.shape[-2], k.shape[-2], causal=causal, bias=bias, key_padding_mask=key_padding_mask,
                          device=q.device, dtype=q.dtype)
    weights = torch.softmax(logits if mask is None else logits + mask, dim=-1)
    return torch.einsum("bgij,gh->bhij", weights, weights_mix) @ v
